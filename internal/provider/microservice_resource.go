package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/bluegreen"
	"github.com/microswarm/terraform-provider-microswarm/internal/swarmservice"
)

var (
	_ resource.Resource                   = &microserviceResource{}
	_ resource.ResourceWithConfigure      = &microserviceResource{}
	_ resource.ResourceWithImportState    = &microserviceResource{}
	_ resource.ResourceWithValidateConfig = &microserviceResource{}
	_ resource.ResourceWithModifyPlan     = &microserviceResource{}
)

func NewMicroserviceResource() resource.Resource { return &microserviceResource{} }

type microserviceResource struct {
	data *providerData
}

func (r *microserviceResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_microservice"
}

func (r *microserviceResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig checks what spans attributes: the active color is deployed with a
// task, min_healthy fits its replicas, a canary has somewhere to go, and no color's
// labels set a key the provider owns.
func (r *microserviceResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m microserviceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	port := int(defaultMicroservicePort)
	if !m.Port.IsNull() && !m.Port.IsUnknown() {
		port = int(m.Port.ValueInt64())
	}
	for _, c := range bluegreen.Colors {
		obj := m.colorObject(c)
		if obj.IsNull() || obj.IsUnknown() {
			continue
		}
		labels, _ := obj.Attributes()["labels"].(types.Map)
		for key := range labels.Elements() {
			if bluegreen.IsOwnedLabel(key, port) {
				attrError(&resp.Diagnostics, path.Root(string(c)).AtName("labels"), "Label Owned by the Provider", fmt.Sprintf(
					"%q is set by the provider on every task of the service (its registrator keys for port %d and the microswarm.* labels); "+
						"use port and health_path instead, or another key.", key, port))
			}
		}
	}
	if m.Active.IsUnknown() || m.Active.IsNull() {
		return
	}
	active := bluegreen.Color(m.Active.ValueString())
	block := m.colorObject(active)
	if block.IsNull() {
		attrError(&resp.Diagnostics, path.Root(string(active)), "Active Color Not Deployed",
			fmt.Sprintf("active = %q, but there is no %s block: the active color needs an image.", active, active))
		return
	}
	if block.IsUnknown() {
		return
	}
	var c colorModel
	resp.Diagnostics.Append(block.As(ctx, &c, objectAsOptions)...)
	replicas := int64(1)
	if !c.Replicas.IsNull() && !c.Replicas.IsUnknown() {
		replicas = c.Replicas.ValueInt64()
	}
	if replicas < 1 {
		attrError(&resp.Diagnostics, path.Root(string(active)).AtName("replicas"), "Active Color Has No Task",
			fmt.Sprintf("%s takes the traffic, so it needs at least one replica.", active))
	}
	if !m.MinHealthy.IsNull() && !m.MinHealthy.IsUnknown() && m.MinHealthy.ValueInt64() > replicas && !c.Replicas.IsUnknown() {
		attrError(&resp.Diagnostics, path.Root("min_healthy"), "Minimum Healthy Above Replicas",
			fmt.Sprintf("min_healthy = %d, but %s has %d replicas: no switch to it could ever pass the gate.", m.MinHealthy.ValueInt64(), active, replicas))
	}
	if w := m.CanaryWeight; !w.IsNull() && !w.IsUnknown() && w.ValueInt64() > 0 && m.colorObject(active.Other()).IsNull() {
		attrError(&resp.Diagnostics, path.Root("canary_weight"), "Canary Without a Second Color",
			fmt.Sprintf("canary_weight = %d sends requests to %s, which has no block.", w.ValueInt64(), active.Other()))
	}
}

// ModifyPlan plans live_color as what the update leaves: the active color. So a health data source that follows live_color (its `tag`) is
// read at plan time even while the service updates, and its token is known. When the
// last refresh found the proxies routing to different colors (an interrupted switch, a
// proxy restarted from an old map), it plans an update even though the configuration
// did not change: the update converges them.
func (r *microserviceResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.State.Raw.IsNull() || req.Plan.Raw.IsNull() {
		return
	}
	var state, plan microserviceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if state.LiveColor.ValueString() == liveMixed {
		// An update with no configuration change: what it observes is known after it.
		for _, attr := range []string{"live_color", "live_version"} {
			resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(attr), types.StringUnknown())...)
		}
		for _, attr := range []string{"blue_running", "green_running", "blue_passing", "green_passing"} {
			resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(attr), types.Int64Unknown())...)
		}
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("endpoints"), types.ListUnknown(types.StringType))...)
		return
	}
	if state.LiveColor.IsNull() {
		// Just imported: the apply reads the route from the proxies.
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("live_color"), types.StringUnknown())...)
		return
	}
	if plan.Active.IsUnknown() {
		return
	}
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("live_color"), types.StringValue(plan.Active.ValueString()))...)
}

func (r *microserviceResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan microserviceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Create, 10*time.Minute, &resp.Diagnostics)
	defer cancel()
	if plan.Network.IsUnknown() || plan.Network.IsNull() {
		plan.Network = types.StringValue(plan.Name.ValueString() + "-net")
	}
	plan.ID = plan.Name
	d := r.reach(ctx, nil, &plan, mustReach, withHealth, &resp.Diagnostics)
	if d == nil || resp.Diagnostics.HasError() {
		return
	}
	mgr := d.mgr
	target := plan.route()
	want := desired(ctx, &plan, target, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	changed, err := bluegreen.Deploy(ctx, mgr, d.nodes, want)
	d.changed = changed
	// Saved whatever happened after the network: a failed wait taints rather than orphans.
	d.observe(ctx, &plan)
	if err != nil {
		deployDiag(plan.Name.ValueString(), err, &resp.Diagnostics)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := d.awaitGate(ctx, target.Active, int(plan.MinHealthy.ValueInt64())); err != nil {
		resp.Diagnostics.AddError("Active Color Not Healthy", fmt.Sprintf("Service %s: %s.", plan.Name.ValueString(), err))
		return
	}
	// Fresh proxies loaded the route from their map; one that kept an older map (a
	// retried create) is brought to it.
	if err := bluegreen.Repair(ctx, d.proxies(), target, bluegreen.SwitchOptions{Persist: d.mapFiles().Persist}); err != nil {
		resp.Diagnostics.AddError("Could Not Route the Proxies", fmt.Sprintf("Service %s: %s. The next apply routes them.", plan.Name.ValueString(), err))
		return
	}
	d.awaitStandby(ctx, &plan, &resp.Diagnostics)
	d.observe(ctx, &plan)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *microserviceResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state microserviceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Update, 15*time.Minute, &resp.Diagnostics)
	defer cancel()
	name := plan.Name.ValueString()
	d := r.reach(ctx, nil, &plan, mayBeUnreachable, withHealth, &resp.Diagnostics)
	if d == nil || resp.Diagnostics.HasError() {
		return
	}
	mgr := d.mgr
	for _, host := range d.unreachable {
		resp.Diagnostics.AddWarning("Proxy Node Unreachable", fmt.Sprintf("Service %s: %s does not answer; this apply routes the other proxies. "+
			"That node's proxy keeps its last route until an apply reaches it again, and the refresh of that apply plans to converge it.", name, host))
	}
	// The route the state records as live. After an import there is none yet: the one
	// the proxies agree on, or, on fresh proxies, the configuration's. (Otherwise the
	// routes are read after the deployment only.)
	recorded := state.route()
	if state.Active.IsNull() || state.Active.IsUnknown() {
		recorded = plan.route()
		if routes := bluegreen.Summarise(ctx, d.proxies()); routes.OK {
			recorded = routes.Agreed
		}
	}
	want := desired(ctx, &plan, recorded, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	changed, err := bluegreen.Deploy(ctx, mgr, d.nodes, want)
	if err != nil {
		// The state keeps what it had: the next plan shows the same change again.
		deployDiag(name, err, &resp.Diagnostics)
		return
	}
	d.changed = changed
	// Read the routes now: a proxy this apply started loaded its route from the map file.
	routes := bluegreen.Summarise(ctx, d.proxies())
	to := plan.route()
	switch {
	case to != recorded:
		r.doSwitch(ctx, d, &plan, recorded, to, &resp.Diagnostics)
	case len(routes.Stray) > 0 || (routes.OK && routes.Agreed != to):
		// The state's route is the configuration's, but some proxies stray from it.
		opts := bluegreen.SwitchOptions{Persist: d.mapFiles().Persist}
		if err := bluegreen.Repair(ctx, d.proxies(), to, opts); err != nil {
			resp.Diagnostics.AddError("Could Not Converge the Proxies", fmt.Sprintf("Service %s: the proxies routed %s; bringing them to %s: %s. "+
				"The next apply tries again.", name, routes.Describe(), to.Active, err))
		}
	}
	d.awaitStandby(ctx, &plan, &resp.Diagnostics)
	d.observe(ctx, &plan)
	if !resp.Diagnostics.HasError() && plan.LiveColor.ValueString() != plan.Active.ValueString() {
		// The plan promised the active color live; the proxies say otherwise.
		resp.Diagnostics.AddError("Proxies Not on the Active Color", fmt.Sprintf("Service %s: after the apply the proxies route %s, not %s: %s. "+
			"The next apply converges them.", name, plan.LiveColor.ValueString(), plan.Active.ValueString(), bluegreen.Summarise(ctx, d.proxies()).Describe()))
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// doSwitch gates, switches and watches. On any failure the state keeps the route every
// reachable proxy was sent back to, so the next plan shows the switch again.
func (r *microserviceResource) doSwitch(ctx context.Context, d *deployment, plan *microserviceModel, from, to bluegreen.Route, diags *diag.Diagnostics) {
	name := plan.Name.ValueString()
	minHealthy := int(plan.MinHealthy.ValueInt64())
	if d.changed[to.Active] && to.Active != from.Active {
		// Just deployed: give its checks time to pass before judging it.
		_ = d.awaitGate(ctx, to.Active, minHealthy)
	}
	d.reopenHealth(ctx)
	opts := bluegreen.SwitchOptions{MinHealthy: minHealthy, Persist: d.mapFiles().Persist}
	opts.DrainTimeout, _ = parsePositiveDuration(plan.DrainTimeout.ValueString())
	if !plan.AutoRollback.IsNull() {
		window, _ := parsePositiveDuration(plan.AutoRollback.ValueString())
		opts.Watch = bluegreen.WatchPolicy{Window: window, Every: 500 * time.Millisecond, MinHealthy: minHealthy,
			MaxErrorRate: autoRollbackMaxErrorRate, MinRequests: autoRollbackMinRequests}
	}
	res, err := bluegreen.Switch(ctx, d.health, d.proxies(), from, to, opts)
	if err != nil {
		plan.Active, plan.CanaryWeight = types.StringValue(string(from.Active)), types.Int64Value(int64(from.Canary))
	}
	var (
		gate *bluegreen.GateError
		back *bluegreen.RolledBackError
		flip *bluegreen.FlipError
		room *bluegreen.NoRoomError
	)
	switch {
	case errors.As(err, &gate):
		attrError(diags, path.Root("active"), "Switch Refused: Target Not Healthy", fmt.Sprintf(
			"Service %s: %s\n\nFix or wait for %s, or lower min_healthy.", name, err, gate.Target))
	case errors.As(err, &room):
		attrError(diags, path.Root("timeouts").AtName("update"), "Switch Refused: Not Enough Time for the Watch", fmt.Sprintf(
			"Service %s: %s. Raise timeouts.update or shorten auto_rollback.", name, err))
	case errors.As(err, &back):
		attrError(diags, path.Root("active"), "Switch Rolled Back", fmt.Sprintf("Service %s: %s.%s", name, err, notRestoredHint(back.NotRestored)))
	case errors.As(err, &flip):
		attrError(diags, path.Root("active"), "Switch Failed", fmt.Sprintf("Service %s: %s.%s\n\nApply again to retry the switch.", name, err, notRestoredHint(flip.NotRestored)))
	case err != nil:
		diags.AddError("Switch Failed", fmt.Sprintf("Service %s: %s. Traffic stays on %s; apply again to retry.", name, err, from.Active))
	default:
		tflog.Info(ctx, "switched", map[string]any{"service": name, "from": string(from.Active), "to": string(to.Active), "canary": to.Canary, "flip": res.Flip.String()})
		if res.DrainErr != nil {
			diags.AddWarning("Old Color Still Busy", fmt.Sprintf("Service %s switched to %s, but %s", name, to.Active, res.DrainErr))
		}
	}
}

func notRestoredHint(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf(" Proxies not confirmed on the old route: %s; the next refresh reads them and the next apply converges them.", strings.Join(names, ", "))
}

func (r *microserviceResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state microserviceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	ctx, done := withReadTimeout(ctx, state.Timeouts, &resp.Diagnostics)
	defer done()
	if resp.Diagnostics.HasError() || r.data == nil {
		return
	}
	mgr := r.data.reachDocker(ctx, path.Root("host"), state.Host.ValueString(), &state.HostKey, refreshing, "the service", &resp.Diagnostics)
	if mgr == nil {
		return
	}
	name := state.Name.ValueString()
	svc := serviceOf(state)
	anything := false
	for _, c := range bluegreen.Colors {
		live, err := swarmservice.Get(ctx, mgr, svc.ServiceName(c))
		switch {
		case errors.Is(err, swarmservice.ErrNotFound):
			state.setColorObject(c, types.ObjectNull(colorAttrTypes))
		case err != nil:
			resp.Diagnostics.AddError("Could Not Read Service", fmt.Sprintf("%s: %s", svc.ServiceName(c), err))
			return
		default:
			anything = true
			spec := bluegreen.ColorFromServiceSpec(live.Spec)
			was := state.colorObject(c)
			if !was.IsNull() && !was.IsUnknown() {
				if img, ok := was.Attributes()["image"].(types.String); ok && bluegreen.SameImage(img.ValueString(), spec.Image) {
					spec.Image = img.ValueString() // the configuration's spelling of the same image
				}
			}
			state.setColorObject(c, keepDurationSpelling(was, colorValue(ctx, spec, &resp.Diagnostics), &resp.Diagnostics))
			fillServiceSettings(&state, live.Spec)
		}
	}
	proxy, err := swarmservice.Get(ctx, mgr, name+"-proxy")
	switch {
	case errors.Is(err, swarmservice.ErrNotFound):
		state.ProxyImage = types.StringNull()
	case err == nil && proxy.Spec.TaskTemplate.ContainerSpec != nil:
		anything = true
		if live := proxy.Spec.TaskTemplate.ContainerSpec.Image; !bluegreen.SameImage(state.ProxyImage.ValueString(), live) {
			state.ProxyImage = types.StringValue(live)
		}
		if ep := proxy.Spec.EndpointSpec; ep != nil && len(ep.Ports) > 0 {
			state.ListenPort = types.Int64Value(int64(ep.Ports[0].PublishedPort))
		}
	}
	if !anything {
		tflog.Warn(ctx, "microservice is gone; planning to create it again", map[string]any{"service": name})
		resp.State.RemoveResource(ctx)
		return
	}
	if state.ProxyHosts.IsNull() {
		// Just imported: the proxy hosts come from the configuration, and the apply that
		// follows reads the route from them.
		resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
		return
	}
	d := r.reach(ctx, mgr, &state, refreshing, withHealth, &resp.Diagnostics)
	if d != nil {
		routes := bluegreen.Summarise(ctx, d.proxies())
		switch {
		case routes.OK && len(routes.Unread) == 0:
			// A switch made out of band shows as drift in active.
			state.Active, state.CanaryWeight = types.StringValue(string(routes.Agreed.Active)), types.Int64Value(int64(routes.Agreed.Canary))
		case len(routes.Stray) > 0:
			resp.Diagnostics.AddWarning("Proxies Disagree", fmt.Sprintf("Service %s: %s. The next apply brings every proxy to the configured route.", name, routes.Describe()))
		default:
			resp.Diagnostics.AddWarning("Proxy Routes Unreadable", fmt.Sprintf("Service %s: %s. The next apply that reaches them converges them.", name, routes.Describe()))
		}
		d.awaitHealth()
		if h, ok := d.health.(*bluegreen.ConsulHealth); ok {
			h.Stale = true // a refresh must not wait for a leader Consul may have lost
		}
		d.observe(ctx, &state)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// Delete removes everything the service deployed. A manager that cannot be reached is an
// error, not a silent success: the services may still run and answer on every proxy
// node, and the state must not forget them.
func (r *microserviceResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state microserviceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, state.Timeouts.Delete, 5*time.Minute, &resp.Diagnostics)
	defer cancel()
	name := state.Name.ValueString()
	mgr := r.data.reachDocker(ctx, path.Root("host"), state.Host.ValueString(), &state.HostKey, mayBeUnreachable, "the service", &resp.Diagnostics)
	if mgr == nil {
		attrError(&resp.Diagnostics, path.Root("host"), "Could Not Remove the Microservice", fmt.Sprintf(
			"Service %s: the manager %s does not answer, so its services, proxies and network may still run. Bring the manager back (or "+
				"point host at another manager of the swarm) and destroy again; if the whole cluster is gone for good, `terraform state rm` this resource.",
			name, state.Host.ValueString()))
		return
	}
	var nodes []bluegreen.ProxyNode
	if !state.ProxyHosts.IsNull() {
		if d := r.reach(ctx, mgr, &state, mayBeUnreachable, withoutHealth, &resp.Diagnostics); d != nil {
			nodes = d.nodes
			if len(d.unreachable) > 0 {
				// A proxy this delete cannot ask may have requests in flight: no task is
				// killed, all stop the graceful way.
				for i := range nodes {
					nodes[i].Tasks = nil
				}
			}
			for _, host := range d.unreachable {
				resp.Diagnostics.AddWarning("Proxy Directory Left Behind", fmt.Sprintf(
					"%s does not answer: its directory %s (the routing map, no service) stays until the node is gone.", host, bluegreen.ProxyDeployment{Service: serviceOf(state)}.NodeDir()))
			}
		}
	}
	if err := bluegreen.Undeploy(ctx, mgr, serviceOf(state), nodes, microserviceOwner); err != nil {
		resp.Diagnostics.AddError("Could Not Remove the Microservice", fmt.Sprintf("Service %s: %s. Destroy again to finish.", name, err))
	}
}

// ImportState takes `HOST,NAME`: a manager's Docker host and the service's name. What
// lives in the swarm is read back; the proxy hosts, and so the live route, come from the
// configuration at the next apply.
func (r *microserviceResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	host, name, ok := strings.Cut(req.ID, ",")
	if !ok || host == "" || !microserviceNamePattern.MatchString(name) {
		resp.Diagnostics.AddError("Invalid Import ID", fmt.Sprintf("Expected HOST,NAME (e.g. ssh://root@203.0.113.10,web), got %q.", req.ID))
		return
	}
	for attr, v := range map[string]string{"host": host, "name": name, "id": name, "network": name + "-net", "drain_timeout": defaultDrainTimeout} {
		resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root(attr), v)...)
	}
	// Settings that live only in the configuration take their defaults until it says more.
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("min_healthy"), int64(1))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("canary_weight"), int64(0))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("proxy_hosts"), types.ListNull(types.ObjectType{AttrTypes: proxyHostAttrTypes}))...)
}
