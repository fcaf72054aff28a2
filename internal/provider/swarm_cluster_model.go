package provider

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-timetypes/timetypes"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/microswarm/terraform-provider-microswarm/internal/swarm"
)

type swarmClusterModel struct {
	ID               types.String         `tfsdk:"id"`
	Nodes            types.Map            `tfsdk:"nodes"`
	DefaultAddrPool  types.List           `tfsdk:"default_addr_pool"`
	SubnetSize       types.Int64          `tfsdk:"subnet_size"`
	DataPathPort     types.Int64          `tfsdk:"data_path_port"`
	TaskHistoryLimit types.Int64          `tfsdk:"task_history_limit"`
	Autolock         types.Bool           `tfsdk:"autolock"`
	CertExpiry       timetypes.GoDuration `tfsdk:"cert_expiry"`
	RotateJoinTokens types.String         `tfsdk:"rotate_join_tokens"`
	Timeouts         timeouts.Value       `tfsdk:"timeouts"`
}

type swarmNodeModel struct {
	Host                types.String `tfsdk:"host"`
	HostKey             types.String `tfsdk:"host_key"`
	AdvertiseAddr       types.String `tfsdk:"advertise_addr"`
	Role                types.String `tfsdk:"role"`
	Availability        types.String `tfsdk:"availability"`
	NodeID              types.String `tfsdk:"node_id"`
	Hostname            types.String `tfsdk:"hostname"`
	State               types.String `tfsdk:"state"`
	ManagerReachability types.String `tfsdk:"manager_reachability"`
}

var swarmNodeAttrTypes = map[string]attr.Type{
	"host":                 types.StringType,
	"host_key":             types.StringType,
	"advertise_addr":       types.StringType,
	"role":                 types.StringType,
	"availability":         types.StringType,
	"node_id":              types.StringType,
	"hostname":             types.StringType,
	"state":                types.StringType,
	"manager_reachability": types.StringType,
}

func nodeEntries(ctx context.Context, m types.Map, diags *diag.Diagnostics) map[string]swarmNodeModel {
	entries := map[string]swarmNodeModel{}
	if m.IsNull() || m.IsUnknown() {
		return entries
	}
	diags.Append(m.ElementsAs(ctx, &entries, false)...)
	return entries
}

// membersOf maps entries to swarm members. An entry keeps the node recorded for the
// same key in prior while it names the same host and advertise address.
func membersOf(entries, prior map[string]swarmNodeModel) []swarm.Member {
	out := make([]swarm.Member, 0, len(entries))
	for _, key := range slices.Sorted(maps.Keys(entries)) {
		e := entries[key]
		m := swarm.Member{
			Key:           key,
			Target:        swarm.Target{Host: e.Host.ValueString(), HostKey: e.HostKey.ValueString()},
			AdvertiseAddr: e.AdvertiseAddr.ValueString(),
			Role:          swarm.Role(e.Role.ValueString()),
			Availability:  swarm.Availability(e.Availability.ValueString()),
		}
		if p, ok := prior[key]; ok && p.Host.Equal(e.Host) && p.AdvertiseAddr.Equal(e.AdvertiseAddr) {
			m.NodeID = p.NodeID.ValueString()
		}
		out = append(out, m)
	}
	return out
}

func settingsOf(ctx context.Context, m swarmClusterModel, diags *diag.Diagnostics) swarm.Settings {
	s := swarm.Settings{
		SubnetSize:       uint32(m.SubnetSize.ValueInt64()),
		DataPathPort:     uint32(m.DataPathPort.ValueInt64()),
		TaskHistoryLimit: m.TaskHistoryLimit.ValueInt64(),
		Autolock:         m.Autolock.ValueBool(),
	}
	if !m.DefaultAddrPool.IsNull() && !m.DefaultAddrPool.IsUnknown() {
		diags.Append(m.DefaultAddrPool.ElementsAs(ctx, &s.DefaultAddrPool, false)...)
	}
	if !m.CertExpiry.IsNull() && !m.CertExpiry.IsUnknown() {
		d, ds := m.CertExpiry.ValueGoDuration()
		diags.Append(ds...)
		s.CertExpiry = d
	}
	return s
}

// stateOf builds the state from a model (plan, or prior state on refresh) and the swarm
// as observed. observed=false (a successful apply) keeps the configured role and
// availability, which the apply converged to; observed=true reports the node's actual
// ones, so drift shows in the next plan. With prior set (a failed update), entries the
// configuration dropped stay while their node is still in the swarm, so the next apply
// removes them.
func stateOf(ctx context.Context, m swarmClusterModel, entries, prior map[string]swarmNodeModel, res *swarm.Result, observed bool, diags *diag.Diagnostics) swarmClusterModel {
	st := res.Status
	m.ID = types.StringValue(st.ID)
	pool, ds := types.ListValueFrom(ctx, types.StringType, st.Settings.DefaultAddrPool)
	diags.Append(ds...)
	m.DefaultAddrPool = pool
	m.SubnetSize = types.Int64Value(int64(st.Settings.SubnetSize))
	m.DataPathPort = types.Int64Value(int64(st.Settings.DataPathPort))
	m.TaskHistoryLimit = types.Int64Value(st.Settings.TaskHistoryLimit)
	m.Autolock = types.BoolValue(st.Settings.Autolock)
	m.CertExpiry = goDurationOf(m.CertExpiry, st.Settings.CertExpiry)
	if m.RotateJoinTokens.IsUnknown() {
		m.RotateJoinTokens = types.StringNull()
	}

	nodeOf := map[string]string{}
	for _, mem := range res.Members {
		nodeOf[mem.Key] = mem.NodeID
	}
	out := map[string]swarmNodeModel{}
	for key, e := range entries {
		out[key] = entryOf(e, nodeOf[key], &st, observed)
	}
	for key, e := range prior {
		if _, kept := out[key]; kept {
			continue
		}
		if _, listed := st.Node(e.NodeID.ValueString()); listed {
			out[key] = entryOf(e, e.NodeID.ValueString(), &st, true)
		}
	}
	nodes, ds := types.MapValueFrom(ctx, types.ObjectType{AttrTypes: swarmNodeAttrTypes}, out)
	diags.Append(ds...)
	m.Nodes = nodes
	return m
}

func entryOf(e swarmNodeModel, nodeID string, st *swarm.Status, observed bool) swarmNodeModel {
	e.ManagerReachability = types.StringNull()
	n, listed := st.Node(nodeID)
	if !listed {
		// Not in the swarm: keep the last known ID so the plan shows what is re-joined.
		if e.NodeID.IsUnknown() {
			e.NodeID = types.StringNull()
		}
		if e.Hostname.IsUnknown() {
			e.Hostname = types.StringNull()
		}
		e.State = types.StringValue(swarm.StateLeft)
		return e
	}
	e.NodeID = types.StringValue(n.ID)
	e.Hostname = types.StringValue(n.Hostname)
	e.State = types.StringValue(n.State)
	if n.IsManager {
		e.ManagerReachability = types.StringValue(n.Reachability)
	}
	if observed {
		e.Role = types.StringValue(string(n.Role))
		e.Availability = types.StringValue(string(n.Availability))
	}
	return e
}

// recordHostKeys fills in the host keys a plan left to be recorded: the key each host
// presented (and known_hosts or the policy accepted), or none for a host not reached or
// not reached over SSH.
func recordHostKeys(entries map[string]swarmNodeModel, seen map[string]string) {
	for key, e := range entries {
		if e.HostKey.IsUnknown() {
			e.HostKey = nullIfEmpty(seen[e.Host.ValueString()])
			entries[key] = e
		}
	}
}

// goDurationOf keeps the configured spelling of a duration ("2160h") when it means the
// same as what the swarm reports ("2160h0m0s").
func goDurationOf(configured timetypes.GoDuration, actual time.Duration) timetypes.GoDuration {
	if d, diags := configured.ValueGoDuration(); !configured.IsNull() && !configured.IsUnknown() && !diags.HasError() && d == actual {
		return configured
	}
	return timetypes.NewGoDurationValue(actual)
}
