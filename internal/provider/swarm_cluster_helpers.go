package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timetypes/timetypes"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/swarm"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// Plan modifiers.

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

// Diagnostics.

// addSwarmError turns an error from internal/swarm into a diagnostic: what failed, on
// which node, what was done before, and what to do next.
func addSwarmError(diags *diag.Diagnostics, operation, swarmID string, err error, res *swarm.Result) {
	summary, next := "Swarm Change Failed", "Fix the cause above, then apply again: every apply starts from the swarm as it is."
	var (
		unreachable *swarm.UnreachableError
		other       *swarm.OtherSwarmError
		quorum      *swarm.QuorumError
		noManager   *swarm.NoManagerError
		locked      *swarm.LockedError
		timeout     *wait.TimeoutError
	)
	switch {
	case errors.As(err, &unreachable):
		summary = "Swarm Node Unreachable"
		next = "Check that the node is powered on and that SSH and Docker answer on it (its host and host_key), then apply again: " +
			"nodes already in the swarm are kept and the rest join."
	case errors.As(err, &other):
		summary = "Node Belongs to Another Swarm"
		next = "Make the node leave that swarm (`docker swarm leave`, `--force` for a manager) or take it out of `nodes`, then apply again."
	case errors.As(err, &quorum):
		summary = "Swarm Quorum Would Be Lost"
		next = "Bring the unreachable managers back, or change fewer managers per apply, then apply again. If managers are lost for good, " +
			"recover with `docker swarm init --force-new-cluster` on a reachable manager."
	case errors.As(err, &noManager):
		summary = "No Reachable Swarm Manager"
		next = "Check that at least one manager in `nodes` is powered on and reachable. If the swarm was taken apart outside Terraform, " +
			"`terraform state rm` this resource and apply again."
	case errors.As(err, &locked):
		summary = "Swarm Manager Locked"
		next = "Unlock one manager with `docker swarm unlock` and the swarm's unlock key (which Terraform does not keep), then apply again: the provider unlocks the others with the key that manager reports."
	case errors.As(err, &timeout):
		summary = "Swarm Did Not Converge"
		next = fmt.Sprintf("Raise timeouts.%s if the swarm is slow (draining a node waits for its tasks to move), or check the node named above, then apply again.", operation)
	}
	var b strings.Builder
	if swarmID == "" && res != nil {
		swarmID = res.ID
	}
	if swarmID != "" {
		fmt.Fprintf(&b, "Swarm %s: ", swarmID)
	}
	b.WriteString(err.Error())
	b.WriteString(".")
	var step *swarm.StepError
	if errors.As(err, &step) && len(step.Done) > 0 {
		b.WriteString("\n\nDone before the failure: " + strings.Join(step.Done, "; ") + ".")
	}
	if operation == "create" && res != nil {
		b.WriteString("\n\nThe swarm and the nodes that joined it are kept and not recorded in state: the next apply adopts the swarm " +
			"and joins the rest, it does not start a new one.")
	}
	b.WriteString("\n\n" + next)
	diags.AddError(summary, b.String())
}

// addSwarmWarnings reports what a change had to skip.
func addSwarmWarnings(diags *diag.Diagnostics, res *swarm.Result) {
	if res == nil {
		return
	}
	for _, w := range res.Warnings {
		diags.AddWarning("Swarm Node Not Cleaned Up", fmt.Sprintf("Swarm %s: %s.", res.ID, w))
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
