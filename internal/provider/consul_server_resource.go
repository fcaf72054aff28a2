package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
)

var (
	_ resource.Resource                   = &consulServerResource{}
	_ resource.ResourceWithConfigure      = &consulServerResource{}
	_ resource.ResourceWithImportState    = &consulServerResource{}
	_ resource.ResourceWithModifyPlan     = &consulServerResource{}
	_ resource.ResourceWithValidateConfig = &consulServerResource{}
)

func NewConsulServerResource() resource.Resource { return &consulServerResource{} }

type consulServerResource struct {
	data *providerData
}

type consulServerModel struct {
	consulContainerModel
	BootstrapExpect types.Int64  `tfsdk:"bootstrap_expect"`
	RaftMultiplier  types.Int64  `tfsdk:"raft_multiplier"`
	Leader          types.String `tfsdk:"leader"`
}

func (m consulServerModel) server() consulServerSettings {
	return consulServerSettings{BootstrapExpect: m.BootstrapExpect, RaftMultiplier: m.RaftMultiplier}
}

func (r *consulServerResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_consul_server"
}

func (r *consulServerResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	attrs := consulSchemaAttributes(ctx, consul.RoleServer)
	attrs["bootstrap_expect"] = schema.Int64Attribute{
		MarkdownDescription: "How many servers the cluster waits for before electing its first leader: the number of `microswarm_consul_server` " +
			"resources, 3 or 5 in production (an odd number keeps a majority through one or two failures). Changes in place.",
		Required:   true,
		Validators: []validator.Int64{int64validator.AtLeast(1)},
	}
	attrs["raft_multiplier"] = schema.Int64Attribute{
		MarkdownDescription: "Scales the server's raft timings (Consul's `performance.raft_multiplier`, 1 to 10). Unset, Consul's default of 5 " +
			"applies: a leader is elected 5-6 s after the servers find each other, and a dead leader is replaced as slowly. HashiCorp " +
			"recommends 1 for production servers, which elects in about a second; keep a higher value on small, CPU-starved machines " +
			"whose leader would otherwise flap. Changing it recreates the container in place as a rolling restart, like an image change.",
		Optional:   true,
		Validators: []validator.Int64{int64validator.Between(1, consul.MaxRaftMultiplier)},
	}
	attrs["retry_join"] = schema.ListAttribute{
		MarkdownDescription: "Addresses of the servers to join (`IP` or `IP:PORT`), usually the `advertise_addr` of every server, this one included. " +
			"Used when the server starts; changing it (a replaced node's new address) updates the state without restarting a running server, which is a member already, so healthy servers are not restarted while the quorum is one short; the next container made uses the new list.",
		Optional:    true,
		ElementType: types.StringType,
		Validators:  consulRetryJoinValidators(),
	}
	attrs["leader"] = schema.StringAttribute{
		MarkdownDescription: "The raft leader's address (`IP:8300`) as this server last saw it; empty while the cluster has no leader.",
		Computed:            true,
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A Consul server agent, run as a container on a node's Docker engine (host network, data on a named volume, restart policy " +
			"`unless-stopped`). Create returns once the cluster has a leader, this server is a voter and the catalog holds its node as its " +
			"own (a dead agent's entry under the same name, left by a lost quorum, is removed: see the self-healing guide). An image or " +
			"config change recreates the " +
			"container in place on the same volume (same node ID and raft data) as a rolling restart: servers take a cluster-wide lock in Consul " +
			"and go one at a time, each only once every other server is healthy, so a 3-server cluster never has two servers down. " +
			"A container stopped or changed outside Terraform is recreated on the next apply. Delete leaves the cluster gracefully " +
			"(`consul leave`, which removes the server from the raft peers), then removes the container and its volume. When every server " +
			"of the cluster is deleted in one run (`terraform destroy`, say), nobody is left to keep a quorum for, so the servers are removed " +
			"at once without the leave (Consul's leave takes 5-10 s per server, one after another); a server whose cluster keeps other " +
			"servers still leaves gracefully, one second later than before while it looks for its peers' deletes. A teardown cut short " +
			"(terraform killed, a node that fails) leaves the servers still in state without a quorum; the next destroy removes them, " +
			"each after a graceful leave that fails within 60 s with a warning. A delete whose node " +
			"does not answer succeeds only when its droplet is off or deleted; while the droplet is active the container may still run, so " +
			"the delete fails and says what to do.\n\n" +
			"**Quorum loss.** When a majority of the servers is lost at once (2 of 3), the survivor has no leader, so no server can join it " +
			"and autopilot cannot remove the dead. The refresh notices it, and when the API reports the lost servers' droplets off or deleted, " +
			"the plan updates the survivor; the update runs Consul's outage recovery (it restarts the survivor with `raft/peers.json` naming " +
			"the servers that remain, so it elects itself and the replacement servers join it). The invariant: a survivor recovers only when " +
			"the servers gone **for good** leave no possible majority, and a server is gone for good only when the survivor's gossip sees it " +
			"dead **and** the DigitalOcean API proves its data gone: no droplet holds its address any more, or its address now runs a Consul " +
			"server with another node ID. A droplet merely off is not enough (powered on, it would come back with its raft data and could " +
			"elect a second leader): the update waits, within `timeouts.update`, for its droplet to be deleted or replaced (what " +
			"`when_off = \"replace\"` does earlier in the same apply) or for a leader, and otherwise fails saying which server is missing. " +
			"A network blip proves nothing (the droplets are active), so nothing is done. With the droplets replaced by `when_off`, one apply " +
			"heals a lost quorum (the replacement brings the proof in the same apply), provided its plan ran after the survivor's gossip " +
			"marked the lost servers failed (seconds after they went); otherwise that apply cannot plan the survivor's update (unless its " +
			"`retry_join` changes, as when it lists every node's address), the new servers wait for a leader, and the next apply recovers. Without a DigitalOcean token (servers not on droplets) there is no proof, " +
			"and the recovery stays manual (Consul's outage recovery guide).",
		Attributes: attrs,
	}
}

func (r *consulServerResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *consulServerResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan consulServerModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var state *consulContainerModel
	priorExpect := types.Int64Null()
	if !req.State.Raw.IsNull() {
		var prior consulServerModel
		resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
		if resp.Diagnostics.HasError() {
			return
		}
		state, priorExpect = &prior.consulContainerModel, prior.BootstrapExpect
	}
	consulPlan(ctx, consul.RoleServer, &plan.consulContainerModel, state, plan.server(), &resp.Diagnostics)
	r.data.checkTCPHost(path.Root("host"), plan.Host, &resp.Diagnostics)
	// Warned when the plan sets the count, as the swarm warns for its managers.
	if n := plan.BootstrapExpect; !n.IsUnknown() && !n.Equal(priorExpect) {
		if msg := consul.BootstrapExpectWarning(int(n.ValueInt64())); msg != "" {
			attrWarning(&resp.Diagnostics, path.Root("bootstrap_expect"), "Even Number of Consul Servers", msg)
		}
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
	// A server whose refresh found its quorum lost to dead droplets is updated: the update
	// recovers it (consul_outage.go).
	recoverQuorum := state != nil && planQuorumRecovery(ctx, req.Private, &resp.Diagnostics)
	if state != nil && (recoverQuorum || !resp.Plan.Raw.Equal(req.State.Raw)) {
		// An update: the leader is read again afterwards.
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("leader"), types.StringUnknown())...)
	}
}

func (r *consulServerResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	consulValidateConfig(ctx, consul.RoleServer, req.Config, &resp.Diagnostics)
}

func (r *consulServerResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan consulServerModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Create, 10*time.Minute, &resp.Diagnostics)
	defer cancel()
	spec, h, docker, ok := r.data.consulPrepare(ctx, consul.RoleServer, &plan.consulContainerModel, plan.server(), req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	host, name := plan.Host.ValueString(), spec.ContainerName
	c, outcome, err := consul.Ensure(ctx, docker, spec)
	if err != nil {
		addConsulContainerError(&resp.Diagnostics, "Could Not Create Consul Server Container", host, name, err, r.data.nodeNextStep(ctx, host, plan.HostKey.ValueString(), err))
		return
	}
	tflog.Info(ctx, "consul server container ready", map[string]any{"host": host, "container": name, "outcome": string(outcome), "container_id": c.ID})
	// Saved before the wait: a server that never joins is tainted, not orphaned.
	plan.ContainerID, plan.Running = types.StringValue(c.ID), types.BoolValue(true)
	plan.NodeID, plan.Leader, plan.ACLAgentToken = types.StringNull(), types.StringNull(), types.StringNull()
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}

	api, err := consulAPI(h, spec)
	if err != nil {
		attrError(&resp.Diagnostics, path.Root("tls"), "Invalid Consul TLS Settings", err.Error())
		return
	}
	// Before waiting to vote: a server joining a running cluster is promoted only after
	// autopilot's stabilization time. Best effort: the wait below says what is wrong.
	tuneCtx, tuneCancel := context.WithTimeout(ctx, 30*time.Second)
	if err := consul.TuneAutopilot(tuneCtx, api); err != nil {
		tflog.Warn(ctx, "could not tune autopilot's server stabilization time", map[string]any{"host": host, "error": err.Error()})
	}
	tuneCancel()
	var claimed diag.Diagnostics
	st, err := consul.WaitServerReady(ctx, api, func(ctx context.Context) error { return consul.CheckAlive(ctx, docker, c) }, rejoiner(docker, api, c, host),
		claimWhileJoining(api, spec, &plan.consulContainerModel, &claimed))
	if err != nil {
		addConsulWaitError(&resp.Diagnostics, consul.RoleServer, host, name, "create", err)
		return
	}
	plan.NodeID, plan.Leader = types.StringValue(st.NodeID), nullIfEmpty(st.Leader)
	resp.Diagnostics.Append(claimed...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *consulServerResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state consulServerModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	ctx, done := withReadTimeout(ctx, state.Timeouts, &resp.Diagnostics)
	defer done()
	if resp.Diagnostics.HasError() || r.data == nil {
		return
	}
	h, c := r.data.consulReadContainer(ctx, consul.RoleServer, &state.consulContainerModel, resp)
	if c == nil {
		return
	}
	state.BootstrapExpect = types.Int64Value(int64(c.Spec.BootstrapExpect))
	state.RaftMultiplier = types.Int64Null()
	if c.Spec.RaftMultiplier != 0 {
		state.RaftMultiplier = types.Int64Value(int64(c.Spec.RaftMultiplier))
	}
	if c.Running {
		r.readStatus(ctx, h, c, &state, resp)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// readStatus refreshes the leader and node ID; an API that does not answer keeps the
// values last seen (a refresh never waits). Without a leader, it notes in the private state
// whether the quorum was lost to dead droplets, for the plan.
//
// The refresh has no write-only acl_token_wo (Terraform sends those to applies only), so
// with ACLs on it reads with the provider's consul_management_token: anonymous, a
// default-deny server would not say who its peers are, and a lost quorum would go unseen.
func (r *consulServerResource) readStatus(ctx context.Context, h *conn.Host, c *consul.Container, state *consulServerModel, resp *resource.ReadResponse) {
	spec := r.data.consulWithToken(consulRunningSpec(ctx, consulFiles(h), c, r.data.consulWithKey(consulTLSOf(ctx, state.TLS))))
	api, err := consulAPI(h, spec)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, consulReadTimeout)
	defer cancel()
	st, err := consul.ReadServerStatus(ctx, api)
	if err != nil {
		tflog.Warn(ctx, "could not ask the consul server for its status; keeping the last values", map[string]any{"container": c.Name, "error": err.Error()})
		return
	}
	state.NodeID, state.Leader = types.StringValue(st.NodeID), nullIfEmpty(st.Leader)
	if st.Leader != "" {
		resp.Diagnostics.Append(resp.Private.SetKey(ctx, privateQuorumLost, nil)...)
		return
	}
	r.data.noteQuorumLoss(ctx, consul.APIView{API: api}, resp.Private, &resp.Diagnostics)
}

func (r *consulServerResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state consulServerModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Update, 20*time.Minute, &resp.Diagnostics)
	defer cancel()
	spec, h, docker, ok := r.data.consulPrepare(ctx, consul.RoleServer, &plan.consulContainerModel, plan.server(), req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	host, name := plan.Host.ValueString(), spec.ContainerName
	c, err := consul.Find(ctx, docker, name)
	switch {
	case err != nil && !errors.Is(err, consul.ErrNotFound):
		addConsulContainerError(&resp.Diagnostics, "Could Not Read Consul Server Container", host, name, err)
		return
	case err == nil && c.Running && !c.Matches(spec):
		// A running server goes down only under the lock and with every other server healthy.
		c = r.rollingRestart(ctx, h, docker, host, c, spec, consulTLSOf(ctx, state.TLS), &resp.Diagnostics)
	default:
		// Gone or stopped: this server is down already, so bringing it back can only
		// restore quorum; waiting for the others' health first could wait forever.
		var outcome consul.Outcome
		c, outcome, err = consul.Ensure(ctx, docker, spec)
		if err != nil {
			addConsulContainerError(&resp.Diagnostics, "Could Not Restore Consul Server Container", host, name, err)
			return
		}
		tflog.Info(ctx, "consul server container restored", map[string]any{"host": host, "container": name, "outcome": string(outcome)})
	}
	if c == nil {
		return
	}
	plan.ContainerID, plan.Running = types.StringValue(c.ID), types.BoolValue(true)
	if plan.ACLAgentToken.IsUnknown() {
		plan.ACLAgentToken = state.ACLAgentToken // until consulEnsureAgentToken records the new one
	}
	api, err := consulAPI(h, spec)
	if err != nil {
		attrError(&resp.Diagnostics, path.Root("tls"), "Invalid Consul TLS Settings", err.Error())
		return
	}
	// No leader: the others may be coming back, or gone for good (then it recovers).
	if c = r.data.consulRecoverQuorum(ctx, docker, c, consul.APIView{API: api}, host, spec.RetryJoin, &resp.Diagnostics); c == nil {
		plan.NodeID, plan.Leader = state.NodeID, types.StringNull()
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}
	plan.ContainerID = types.StringValue(c.ID)
	// A leader answers now: the refresh's note of a lost quorum is done with.
	resp.Diagnostics.Append(resp.Private.SetKey(ctx, privateQuorumLost, nil)...)
	var claimed diag.Diagnostics
	st, err := consul.WaitServerReady(ctx, api, func(ctx context.Context) error { return consul.CheckAlive(ctx, docker, c) }, rejoiner(docker, api, c, host),
		claimWhileJoining(api, spec, &plan.consulContainerModel, &claimed))
	if err != nil {
		addConsulWaitError(&resp.Diagnostics, consul.RoleServer, host, name, "update", err)
		plan.NodeID, plan.Leader = state.NodeID, types.StringNull()
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}
	plan.NodeID, plan.Leader = types.StringValue(st.NodeID), nullIfEmpty(st.Leader)
	resp.Diagnostics.Append(claimed...)
	consulRotateGossipKey(ctx, api, spec, &plan.consulContainerModel, &state.consulContainerModel, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// rollingRestart recreates a running server through consul.RollingRestart.
func (r *consulServerResource) rollingRestart(ctx context.Context, h *conn.Host, docker consul.Engine, host string, c *consul.Container, spec consul.Spec, stateTLS *consul.TLS, diags *diag.Diagnostics) *consul.Container {
	running := consulRunningSpec(ctx, consulFiles(h), c, stateTLS, spec.TLS)
	running.ACL = spec.ACL // the only token there is: the running cluster's own ACLs take it
	oldAPI, err := consulAPI(h, running)
	if err != nil {
		diags.AddError("Invalid Consul TLS Settings", err.Error())
		return nil
	}
	newAPI, err := consulAPI(h, spec)
	if err != nil {
		attrError(diags, path.Root("tls"), "Invalid Consul TLS Settings", err.Error())
		return nil
	}
	started := time.Now()
	restart := consul.RollingRestart{
		Engine: docker, Current: c, Spec: spec, OldAPI: oldAPI, NewAPI: newAPI,
		Holder: fmt.Sprintf("%s on %s since %s", c.Name, host, started.UTC().Format(time.RFC3339)),
		Log: func(msg string, fields map[string]any) {
			fields["container"], fields["host"] = c.Name, host
			tflog.Info(ctx, msg, fields)
		},
	}
	replaced, _, err := restart.Run(ctx)
	if err != nil {
		diags.AddError("Consul Server Rolling Restart Failed", fmt.Sprintf(
			"Consul server %s on %s, after %s: %s.\n\nIf this is about the lock or the other servers' health, another server is restarting "+
				"or unhealthy: the lock value names who holds it (`consul kv get %s`); fix that server, or raise timeouts.update, and apply again. "+
				"The lock is released when the update ends, or by its session TTL (%s) if the provider was killed.",
			c.Name, host, time.Since(started).Round(time.Second), err, consul.RestartLockKey, consul.LockTTL))
		return nil
	}
	return replaced
}

func (r *consulServerResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state consulServerModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, state.Timeouts.Delete, 5*time.Minute, &resp.Diagnostics)
	defer cancel()
	spec, _ := consulSpecOf(ctx, consul.RoleServer, state.consulContainerModel, state.server(), &resp.Diagnostics)
	consulDelete(ctx, r.data, consul.RoleServer, state.consulContainerModel, spec, &resp.Diagnostics)
}

func (r *consulServerResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	consulImportState(ctx, req, resp)
}

// rejoiner has the server in c leave and join again when the leader did not add it to the
// raft configuration (consul.WaitServerReady says when), logging that it did. A rejoin
// takes about 15 s (Consul's leave propagation and RPC drain); one that hangs gives up after
// rejoinTimeout, and the wait goes on.
func rejoiner(docker consul.Engine, api *consulapi.Client, c *consul.Container, host string) consul.Rejoiner {
	return func(ctx context.Context) error {
		tflog.Info(ctx, "the leader has not added this Consul server to the raft configuration; it leaves and joins again",
			map[string]any{"host": host, "container": c.Name})
		ctx, cancel := context.WithTimeout(ctx, rejoinTimeout)
		defer cancel()
		return consul.Rejoin(ctx, docker, api, c)
	}
}

const rejoinTimeout = 90 * time.Second
