package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/swarm"
)

var (
	_ resource.Resource                   = &swarmClusterResource{}
	_ resource.ResourceWithConfigure      = &swarmClusterResource{}
	_ resource.ResourceWithImportState    = &swarmClusterResource{}
	_ resource.ResourceWithModifyPlan     = &swarmClusterResource{}
	_ resource.ResourceWithValidateConfig = &swarmClusterResource{}
	_ resource.ResourceWithUpgradeState   = &swarmClusterResource{}
)

// Swarm defaults, as `docker swarm init` has them.
const (
	defaultTaskHistoryLimit = 5
	defaultCertExpiry       = "2160h"
	minCertExpiry           = time.Hour
)

func NewSwarmClusterResource() resource.Resource { return &swarmClusterResource{} }

type swarmClusterResource struct {
	data *providerData
}

func (r *swarmClusterResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_swarm_cluster"
}

func (r *swarmClusterResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *swarmClusterResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan swarmClusterModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Create, 10*time.Minute, &resp.Diagnostics)
	defer cancel()
	if resp.Diagnostics.HasError() {
		return
	}

	entries := nodeEntries(ctx, plan.Nodes, &resp.Diagnostics)
	settings := settingsOf(ctx, plan, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	seen := map[string]string{}
	res, err := r.cluster(seen).Converge(ctx, swarm.Desired{Members: membersOf(entries, nil), Settings: settings})
	recordHostKeys(entries, seen)
	if err != nil {
		// Nothing goes into state: a tainted swarm would be replaced by a new one, while a
		// second create adopts this one and joins the nodes that are missing.
		addSwarmError(&resp.Diagnostics, "create", "", err, res)
		return
	}
	addSwarmWarnings(&resp.Diagnostics, res)
	if res.Adopted {
		resp.Diagnostics.AddWarning("Adopted an Existing Swarm", fmt.Sprintf(
			"Swarm %s was already running on a configured manager (an earlier create that failed part way, most likely); "+
				"it was adopted and the missing nodes joined it, rather than a new swarm being initialised.", res.ID))
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, stateOf(ctx, plan, entries, nil, res, false, &resp.Diagnostics))...)
}

func (r *swarmClusterResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state swarmClusterModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	ctx, done := withReadTimeout(ctx, state.Timeouts, &resp.Diagnostics)
	defer done()
	if resp.Diagnostics.HasError() {
		return
	}
	if r.data == nil {
		resp.Diagnostics.AddError("Provider Not Configured", "Reading microswarm_swarm_cluster needs a configured provider.")
		return
	}
	if isImportHost(state.ID.ValueString()) {
		r.readImported(ctx, &state, resp)
		return
	}
	entries := nodeEntries(ctx, state.Nodes, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	members := membersOf(entries, entries)
	// Managers first, but every member is a candidate: roles may have changed outside Terraform.
	candidates := swarm.ByRole(members, true)
	seen := map[string]string{}
	st, err := r.cluster(seen).Observe(ctx, state.ID.ValueString(), candidates, "")
	var none *swarm.NoManagerError
	if errors.As(err, &none) && none.Gone {
		tflog.Warn(ctx, "no configured node is in the swarm any more; removing it from state so the plan creates it again",
			map[string]any{"swarm_id": state.ID.ValueString()})
		resp.Diagnostics.AddWarning("Swarm Is Gone", fmt.Sprintf("Swarm %s: %s. It was removed from state; the next apply creates a new swarm.", state.ID.ValueString(), err))
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		addSwarmError(&resp.Diagnostics, "read", state.ID.ValueString(), err, nil)
		return
	}
	// Entries that pinned no key yet (an import, a state from before keys were recorded)
	// record the key their host presented, if this refresh reached it.
	for key, e := range entries {
		if e.HostKey.IsNull() && seen[e.Host.ValueString()] != "" {
			e.HostKey = types.StringValue(seen[e.Host.ValueString()])
			entries[key] = e
		}
	}
	res := &swarm.Result{Status: *st, Members: swarm.Resolve(st.Nodes, members)}
	next := stateOf(ctx, state, entries, nil, res, true, &resp.Diagnostics)
	for _, m := range res.Members {
		if n, ok := res.Node(m.NodeID); !ok || !n.Ready() {
			what := "is not in the swarm's node list any more (it left or was removed)"
			if ok {
				what = fmt.Sprintf("is %s (node %s)", n.State, n.ID)
				if n.IsManager && n.Reachability != swarm.Reachable {
					what += ", manager " + n.Reachability
				}
			}
			attrWarning(&resp.Diagnostics, path.Root("nodes").AtMapKey(m.Key), "Swarm Node Not Ready", fmt.Sprintf(
				"Swarm %s: %s %s. The next apply reaches the node and re-joins it if it left; if the node is gone for good, take it out of nodes.",
				st.ID, m, what))
		}
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, next)...)
}

// readImported fills the state of an import from the manager the import ID names:
// one entry per node, keyed by hostname. The host of any node but that manager is a
// guess (ssh to its swarm address); the configuration's entries replace them on the
// next apply, which matches entries to nodes by advertise address and moves none.
func (r *swarmClusterResource) readImported(ctx context.Context, state *swarmClusterModel, resp *resource.ReadResponse) {
	host := state.ID.ValueString()
	seen := map[string]string{}
	st, err := r.cluster(seen).Observe(ctx, "", []swarm.Member{{Key: "import", Target: swarm.Target{Host: host}, Role: swarm.RoleManager}}, "")
	if err != nil {
		addSwarmError(&resp.Diagnostics, "import", "", err, nil)
		return
	}
	entries := map[string]swarmNodeModel{}
	var members []swarm.Member
	for _, n := range st.Nodes {
		key := n.Hostname
		for i := 2; ; i++ {
			if _, taken := entries[key]; !taken {
				break
			}
			key = fmt.Sprintf("%s-%d", n.Hostname, i)
		}
		e := swarmNodeModel{
			Host:          types.StringValue((conn.Endpoint{Scheme: conn.SchemeSSH, User: r.data.pool.User(), Host: n.IP(), Port: 22}).String()),
			HostKey:       types.StringNull(),
			AdvertiseAddr: types.StringValue(n.IP()),
			Role:          types.StringValue(string(n.Role)),
			Availability:  types.StringValue(string(n.Availability)),
		}
		if n.ID == st.ManagerNodeID {
			e.Host, e.HostKey = types.StringValue(host), nullIfEmpty(seen[host])
		}
		entries[key] = e
		members = append(members, swarm.Member{Key: key, NodeID: n.ID})
	}
	res := &swarm.Result{Status: *st, Members: members}
	resp.Diagnostics.Append(resp.State.Set(ctx, stateOf(ctx, *state, entries, nil, res, true, &resp.Diagnostics))...)
}

func (r *swarmClusterResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state swarmClusterModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Update, 20*time.Minute, &resp.Diagnostics)
	defer cancel()
	if resp.Diagnostics.HasError() {
		return
	}

	planned := nodeEntries(ctx, plan.Nodes, &resp.Diagnostics)
	prior := nodeEntries(ctx, state.Nodes, &resp.Diagnostics)
	settings := settingsOf(ctx, plan, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	seen := map[string]string{}
	res, err := r.cluster(seen).Converge(ctx, swarm.Desired{
		ID:               state.ID.ValueString(),
		Members:          membersOf(planned, prior),
		Prior:            membersOf(prior, prior),
		Settings:         settings,
		RotateJoinTokens: !plan.RotateJoinTokens.Equal(state.RotateJoinTokens),
	})
	recordHostKeys(planned, seen)
	addSwarmWarnings(&resp.Diagnostics, res)
	if err != nil {
		addSwarmError(&resp.Diagnostics, "update", state.ID.ValueString(), err, res)
		if res != nil && res.Observed() {
			// Record how far the change got, so the next plan shows what is left to do.
			resp.Diagnostics.Append(resp.State.Set(ctx, stateOf(ctx, plan, planned, prior, res, true, &resp.Diagnostics))...)
		}
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, stateOf(ctx, plan, planned, nil, res, false, &resp.Diagnostics))...)
}

func (r *swarmClusterResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state swarmClusterModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, state.Timeouts.Delete, 10*time.Minute, &resp.Diagnostics)
	defer cancel()
	if resp.Diagnostics.HasError() {
		return
	}
	entries := nodeEntries(ctx, state.Nodes, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	warnings, err := r.cluster(nil).Dissolve(ctx, state.ID.ValueString(), membersOf(entries, entries), "")
	for _, w := range warnings {
		resp.Diagnostics.AddWarning("Swarm Node Not Cleaned Up", fmt.Sprintf("Swarm %s: %s.", state.ID.ValueString(), w))
	}
	if err != nil {
		addSwarmError(&resp.Diagnostics, "delete", state.ID.ValueString(), err, nil)
	}
}

// ImportState takes a manager's host: `terraform import microswarm_swarm_cluster.x ssh://root@IP`.
func (r *swarmClusterResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if !isImportHost(req.ID) {
		resp.Diagnostics.AddError("Invalid Import ID", fmt.Sprintf(
			"Import a swarm by the host of one of its managers, e.g. ssh://root@203.0.113.10, got %q.", req.ID))
		return
	}
	// Read sees a host in place of a swarm ID and fills the state from that manager.
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}

// isImportHost tells a host string (an import in progress) from a swarm ID.
func isImportHost(id string) bool {
	if !strings.Contains(id, "://") {
		return false
	}
	_, err := conn.ParseEndpoint(id)
	return err == nil
}

// cluster returns the swarm client over the provider's connection pool. A host no key
// pins is checked against known_hosts and host_key_policy, after an import too; the key
// each host presented is recorded in seen (if set).
//
// Connect runs on several nodes at once (workers join at once, observation reaches the
// nodes in parallel), so the writes to seen are serialised; seen is read once the
// Converge or Observe that fills it has returned.
func (r *swarmClusterResource) cluster(seen map[string]string) *swarm.Cluster {
	record := lockedSetter(seen)
	return &swarm.Cluster{
		Connect: func(ctx context.Context, t swarm.Target) (swarm.Engine, error) {
			if _, err := conn.ParseEndpoint(t.Host); err != nil {
				return nil, swarm.Permanent(err)
			}
			h, err := r.data.pool.Open(ctx, conn.Target{Host: t.Host, HostKey: t.HostKey})
			if err != nil {
				var unknown *conn.UnknownHostKeyError
				var mismatch *conn.HostKeyMismatchError
				if errors.As(err, &unknown) || errors.As(err, &mismatch) {
					return nil, swarm.Permanent(err)
				}
				return nil, err
			}
			record(t.Host, h.HostKey())
			return h.Docker()
		},
		Log: func(ctx context.Context, msg string, fields map[string]any) { tflog.Info(ctx, msg, fields) },
	}
}

// lockedSetter returns a function that sets m[k] = v under a lock of its own, for writers
// that run at once; with m nil it does nothing.
func lockedSetter(m map[string]string) func(k, v string) {
	var mu sync.Mutex
	return func(k, v string) {
		if m == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		m[k] = v
	}
}
