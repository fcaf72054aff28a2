package provider

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/swarm"
)

// ValidateConfig checks what spans entries: a manager, and one entry per node.
func (r *swarmClusterResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var nodes types.Map
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("nodes"), &nodes)...)
	if resp.Diagnostics.HasError() || nodes.IsNull() || nodes.IsUnknown() {
		return
	}
	entries := map[string]swarmNodeModel{}
	resp.Diagnostics.Append(nodes.ElementsAs(ctx, &entries, false)...)
	if resp.Diagnostics.HasError() {
		return
	}
	managers, rolesKnown := 0, true
	hosts, addrs := map[string]string{}, map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(entries)) {
		e := entries[key]
		switch {
		case e.Role.IsUnknown():
			rolesKnown = false
		case e.Role.ValueString() == string(swarm.RoleManager):
			managers++
		}
		entry := path.Root("nodes").AtMapKey(key)
		if ep, err := conn.ParseEndpoint(e.Host.ValueString()); err == nil && !e.Host.IsUnknown() {
			if other, dup := hosts[ep.String()]; dup {
				attrError(&resp.Diagnostics, entry.AtName("host"), "Duplicate Swarm Node Host",
					fmt.Sprintf("entries %q and %q both name %s; each entry is one node.", other, key, e.Host.ValueString()))
			}
			hosts[ep.String()] = key
		}
		checkHostKeyBeside(entry.AtName("host_key"), e.Host, e.HostKey, &resp.Diagnostics)
		if a := e.AdvertiseAddr; !a.IsUnknown() && !a.IsNull() {
			if other, dup := addrs[a.ValueString()]; dup {
				attrError(&resp.Diagnostics, entry.AtName("advertise_addr"), "Duplicate Advertise Address",
					fmt.Sprintf("entries %q and %q both advertise %s; each node needs its own address.", other, key, a.ValueString()))
			}
			addrs[a.ValueString()] = key
		}
	}
	var pools types.List
	var subnetSize types.Int64
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("default_addr_pool"), &pools)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("subnet_size"), &subnetSize)...)
	if !subnetSize.IsNull() && !subnetSize.IsUnknown() {
		poolList, known := []string{"10.0.0.0/8"}, true // Docker's default pool
		if !pools.IsNull() {
			poolList, known = knownStrings(ctx, pools)
		}
		if err := swarm.CheckSubnetSize(poolList, int(subnetSize.ValueInt64())); known && err != nil {
			attrError(&resp.Diagnostics, path.Root("subnet_size"), "Invalid Subnet Size", err.Error()+".")
		}
	}
	if rolesKnown && managers == 0 {
		attrError(&resp.Diagnostics, path.Root("nodes"), "No Swarm Manager",
			`A swarm needs at least one manager: set role = "manager" on one entry (three tolerate the loss of one).`)
	}
}

// ModifyPlan warns about an even number of managers when a plan sets it, and fails the
// plan, rather than the apply, when ssh:// hosts meet a provider without an SSH key.
func (r *swarmClusterResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	if r.data != nil {
		var nodes types.Map
		resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("nodes"), &nodes)...)
		for key, e := range nodeEntries(ctx, nodes, &resp.Diagnostics) {
			r.data.checkTCPHost(path.Root("nodes").AtMapKey(key).AtName("host"), e.Host, &resp.Diagnostics)
		}
	}
	if r.data != nil && r.data.sshPublicKey == "" {
		var nodes types.Map
		resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("nodes"), &nodes)...)
		for key, e := range nodeEntries(ctx, nodes, &resp.Diagnostics) {
			if ep, err := conn.ParseEndpoint(e.Host.ValueString()); err == nil && ep.Scheme == conn.SchemeSSH {
				attrError(&resp.Diagnostics, path.Root("nodes").AtMapKey(key).AtName("host"), "Missing SSH Private Key",
					fmt.Sprintf("Entry %q reaches its node over SSH (%s), but the provider has no ssh_private_key or ssh_private_key_file.", key, e.Host.ValueString()))
				break
			}
		}
	}
	planned, known := managerCount(ctx, req.Plan.GetAttribute)
	if !known {
		return
	}
	prior := -1
	if !req.State.Raw.IsNull() {
		prior, _ = managerCount(ctx, req.State.GetAttribute)
	}
	if msg := swarm.ManagerCountWarning(planned); msg != "" && planned != prior {
		attrWarning(&resp.Diagnostics, path.Root("nodes"), "Even Number of Swarm Managers", msg)
	}
}

func managerCount(ctx context.Context, get func(context.Context, path.Path, any) diag.Diagnostics) (int, bool) {
	var nodes types.Map
	if get(ctx, path.Root("nodes"), &nodes).HasError() || nodes.IsNull() || nodes.IsUnknown() {
		return 0, false
	}
	entries := map[string]swarmNodeModel{}
	if nodes.ElementsAs(ctx, &entries, false).HasError() {
		return 0, false
	}
	count := 0
	for _, e := range entries {
		if e.Role.IsUnknown() {
			return 0, false
		}
		if e.Role.ValueString() == string(swarm.RoleManager) {
			count++
		}
	}
	return count, true
}

// sameNodeModifier keeps a node entry's node_id and hostname from state while the
// entry names the same host, advertise address and host key and its node was ready:
// anything else may re-join the node, which gives it a new ID. The host key matters
// because a replaced droplet can come back on the same addresses (before swarm even
// notices the old one is down) and joins as a new node.
type sameNodeModifier struct{}

func (sameNodeModifier) Description(context.Context) string {
	return "keeps the value while the entry's node stays the same swarm node"
}

func (m sameNodeModifier) MarkdownDescription(ctx context.Context) string { return m.Description(ctx) }

func (sameNodeModifier) PlanModifyString(ctx context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if req.StateValue.IsNull() || req.State.Raw.IsNull() || req.Plan.Raw.IsNull() {
		return
	}
	entry := req.Path.ParentPath()
	var priorHost, plannedHost, priorAddr, plannedAddr, priorState, priorKey, plannedKey types.String
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, entry.AtName("host_key"), &priorKey)...)
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, entry.AtName("host_key"), &plannedKey)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, entry.AtName("host"), &priorHost)...)
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, entry.AtName("host"), &plannedHost)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, entry.AtName("advertise_addr"), &priorAddr)...)
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, entry.AtName("advertise_addr"), &plannedAddr)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, entry.AtName("state"), &priorState)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if priorHost.Equal(plannedHost) && priorAddr.Equal(plannedAddr) && priorKey.Equal(plannedKey) && priorState.ValueString() == swarm.StateReady {
		resp.PlanValue = req.StateValue
		return
	}
	// Unknown even when nothing in the configuration changed: a node refresh found down
	// or gone may come back as a new node.
	resp.PlanValue = types.StringUnknown()
}

// recordedHostKeyModifier plans a node entry's host_key when the config sets none: the
// key recorded for the same host, pinned from then on; for a new entry or another host,
// the key the policy will accept on first contact (unknown until then).
type recordedHostKeyModifier struct{}

func (recordedHostKeyModifier) Description(context.Context) string {
	return "keeps the host key recorded for the entry's host"
}

func (m recordedHostKeyModifier) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (recordedHostKeyModifier) PlanModifyString(ctx context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if !req.ConfigValue.IsNull() || req.Plan.Raw.IsNull() {
		return
	}
	entry := req.Path.ParentPath()
	var priorHost, plannedHost types.String
	if !req.State.Raw.IsNull() {
		resp.Diagnostics.Append(req.State.GetAttribute(ctx, entry.AtName("host"), &priorHost)...)
	}
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, entry.AtName("host"), &plannedHost)...)
	if resp.Diagnostics.HasError() {
		return
	}
	switch {
	case !priorHost.IsNull() && priorHost.Equal(plannedHost):
		resp.PlanValue = req.StateValue // recorded (or, for an entry from before, recorded by a refresh that reaches it)
	case plannedHost.IsUnknown():
		resp.PlanValue = types.StringUnknown()
	default:
		if ep, err := conn.ParseEndpoint(plannedHost.ValueString()); err == nil && ep.Scheme == conn.SchemeSSH {
			resp.PlanValue = types.StringUnknown() // recorded on first contact
		} else {
			resp.PlanValue = types.StringNull() // no SSH, no host key
		}
	}
}

// readyStateModifier plans every node as ready: that is what an apply converges to, so
// a node that refresh found down or gone shows as a change to apply.
type readyStateModifier struct{}

func (readyStateModifier) Description(context.Context) string {
	return "plans the node as ready"
}

func (m readyStateModifier) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (readyStateModifier) PlanModifyString(_ context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	resp.PlanValue = types.StringValue(swarm.StateReady)
}

// reachabilityModifier plans managers as reachable and workers with no reachability.
type reachabilityModifier struct{}

func (reachabilityModifier) Description(context.Context) string {
	return "plans managers as reachable, workers as null"
}

func (m reachabilityModifier) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (reachabilityModifier) PlanModifyString(ctx context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var role types.String
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, req.Path.ParentPath().AtName("role"), &role)...)
	switch {
	case role.IsUnknown():
		resp.PlanValue = types.StringUnknown()
	case role.ValueString() == string(swarm.RoleManager):
		resp.PlanValue = types.StringValue(swarm.Reachable)
	default:
		resp.PlanValue = types.StringNull()
	}
}

// advertiseAddrValidator accepts what `docker swarm init --advertise-addr` does: an IP
// or a network interface name, optionally with a port.
func advertiseAddrValidator() validator.String {
	const desc = `must be an IP address or interface name, optionally with a port ("10.10.0.5", "10.10.0.5:2377", "eth1")`
	return stringCheck{"Invalid Advertise Address", desc, func(s string) error {
		if err := swarm.CheckAdvertiseAddr(s); err != nil {
			return fmt.Errorf("%q %s: %w", s, desc, err)
		}
		return nil
	}}
}

// addrPoolsValidator accepts swarm address pools: IPv4 networks that do not overlap.
type addrPoolsValidator struct{}

func (addrPoolsValidator) Description(context.Context) string {
	return `must be IPv4 networks in CIDR form that do not overlap, e.g. ["10.20.0.0/16"]`
}

func (v addrPoolsValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (addrPoolsValidator) ValidateList(ctx context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	pools, known := knownStrings(ctx, req.ConfigValue)
	if !known {
		return
	}
	if i, err := swarm.CheckAddrPools(pools); err != nil {
		attrError(&resp.Diagnostics, req.Path.AtListIndex(i), "Invalid Address Pool", err.Error()+".")
	}
}

// minDurationValidator accepts Go durations of at least min.
type minDurationValidator struct{ min time.Duration }

func (v minDurationValidator) Description(context.Context) string {
	return fmt.Sprintf("must be a Go duration of at least %s", v.min)
}

func (v minDurationValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (v minDurationValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if skip(req) {
		return
	}
	d, err := time.ParseDuration(req.ConfigValue.ValueString())
	if err == nil && d < v.min {
		attrError(&resp.Diagnostics, req.Path, "Invalid Duration", fmt.Sprintf("%q is shorter than %s: Docker refuses certificates valid for less than an hour.", req.ConfigValue.ValueString(), v.min))
	}
}
