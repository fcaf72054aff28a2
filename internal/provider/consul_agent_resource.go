package provider

import (
	"context"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
)

var (
	_ resource.Resource                   = &consulAgentResource{}
	_ resource.ResourceWithConfigure      = &consulAgentResource{}
	_ resource.ResourceWithImportState    = &consulAgentResource{}
	_ resource.ResourceWithModifyPlan     = &consulAgentResource{}
	_ resource.ResourceWithValidateConfig = &consulAgentResource{}
)

func NewConsulAgentResource() resource.Resource { return &consulAgentResource{} }

type consulAgentResource struct {
	data *providerData
}

type consulAgentModel struct {
	consulContainerModel
	MemberStatus types.String `tfsdk:"member_status"`
}

// consulAgentNoServer stands for the server-only settings in shared code.
var consulAgentNoServer = consulServerSettings{}

func (r *consulAgentResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_consul_agent"
}

func (r *consulAgentResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	attrs := consulSchemaAttributes(ctx, consul.RoleAgent)
	attrs["retry_join"] = schema.ListAttribute{
		MarkdownDescription: "Addresses of the servers to join (`IP` or `IP:PORT`): their `advertise_addr`. Used when the agent starts; changing it updates the state without restarting a running agent (it is a member already), and the next container made uses the new list.",
		Required:            true,
		ElementType:         types.StringType,
		Validators:          consulRetryJoinValidators(),
	}
	attrs["member_status"] = schema.StringAttribute{
		MarkdownDescription: "The agent's gossip status as it sees itself: `alive`, `leaving`, `left` or `failed`.",
		Computed:            true,
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A Consul client agent, run as a container on a node's Docker engine (host network, data on a named volume, restart " +
			"policy `unless-stopped`) and joined to the servers through `retry_join`. Create returns once the agent is an `alive` member that the " +
			"servers have in their catalog as itself (a dead agent's entry under the same name, left by a lost quorum, is removed: see the " +
			"self-healing guide). A changed config or image recreates the container in place on the same volume (same node ID); a " +
			"container stopped or changed outside Terraform is recreated on the next apply. Delete leaves gracefully (`consul leave`) before " +
			"removing the container and its volume, so the catalog keeps no trace of the node. A delete whose node does not answer succeeds " +
			"only when its droplet is off or deleted (nothing of it runs there any more); while the droplet is active the container may " +
			"still run, so the delete fails and says what to do.",
		Attributes: attrs,
	}
}

func (r *consulAgentResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *consulAgentResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan consulAgentModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var state *consulContainerModel
	if !req.State.Raw.IsNull() {
		var prior consulAgentModel
		resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
		if resp.Diagnostics.HasError() {
			return
		}
		state = &prior.consulContainerModel
	}
	consulPlan(ctx, consul.RoleAgent, &plan.consulContainerModel, state, consulAgentNoServer, &resp.Diagnostics)
	r.data.checkTCPHost(path.Root("host"), plan.Host, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
	if state != nil && !resp.Plan.Raw.Equal(req.State.Raw) {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("member_status"), types.StringUnknown())...)
	}
}

func (r *consulAgentResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	consulValidateConfig(ctx, consul.RoleAgent, req.Config, &resp.Diagnostics)
}

func (r *consulAgentResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan consulAgentModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Create, 10*time.Minute, &resp.Diagnostics)
	defer cancel()
	spec, h, docker, ok := r.data.consulPrepare(ctx, consul.RoleAgent, &plan.consulContainerModel, consulAgentNoServer, req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	host, name := plan.Host.ValueString(), spec.ContainerName
	c, outcome, err := consul.Ensure(ctx, docker, spec)
	if err != nil {
		addConsulContainerError(&resp.Diagnostics, "Could Not Create Consul Agent Container", host, name, err, r.data.nodeNextStep(ctx, host, plan.HostKey.ValueString(), err))
		return
	}
	tflog.Info(ctx, "consul agent container ready", map[string]any{"host": host, "container": name, "outcome": string(outcome), "container_id": c.ID})
	// Saved before the wait: an agent that never joins is tainted, not orphaned.
	plan.ContainerID, plan.Running = types.StringValue(c.ID), types.BoolValue(true)
	plan.NodeID, plan.MemberStatus, plan.ACLAgentToken = types.StringNull(), types.StringNull(), types.StringNull()
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.waitJoined(ctx, h, docker, c, spec, &plan, "create", &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// waitJoined waits for the agent to be an alive member in the catalog and records its
// node ID and status.
func (r *consulAgentResource) waitJoined(ctx context.Context, h *conn.Host, docker consul.Engine, c *consul.Container, spec consul.Spec, m *consulAgentModel, operation string, diags *diag.Diagnostics) {
	api, err := consulAPI(h, spec)
	if err != nil {
		attrError(diags, path.Root("tls"), "Invalid Consul TLS Settings", err.Error())
		return
	}
	st, err := consul.WaitAgentJoined(ctx, api, func(ctx context.Context) error { return consul.CheckAlive(ctx, docker, c) })
	if err != nil {
		// An agent that is up and alive but sees no leader is not at fault: the servers are.
		addConsulWaitError(diags, consul.RoleAgent, m.Host.ValueString(), spec.ContainerName, operation, err,
			st.MemberStatus == "alive" && st.Leader == "")
		return
	}
	m.NodeID, m.MemberStatus = types.StringValue(st.NodeID), types.StringValue(st.MemberStatus)
	// With ACLs on, the agent needs its own token before it can put its node in the catalog.
	consulClaimNode(ctx, api, spec, st.Self, &m.consulContainerModel, diags)
}

func (r *consulAgentResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state consulAgentModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	ctx, done := withReadTimeout(ctx, state.Timeouts, &resp.Diagnostics)
	defer done()
	if resp.Diagnostics.HasError() || r.data == nil {
		return
	}
	h, c := r.data.consulReadContainer(ctx, consul.RoleAgent, &state.consulContainerModel, resp)
	if c == nil {
		return
	}
	if c.Running {
		r.readStatus(ctx, h, c, &state)
	} else {
		state.MemberStatus = types.StringValue("failed")
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// readStatus refreshes the node ID and member status without waiting.
func (r *consulAgentResource) readStatus(ctx context.Context, h *conn.Host, c *consul.Container, state *consulAgentModel) {
	api, err := consulAPI(h, r.data.consulWithToken(consulRunningSpec(ctx, consulFiles(h), c, r.data.consulWithKey(consulTLSOf(ctx, state.TLS)))))
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, consulReadTimeout)
	defer cancel()
	st, err := consul.ReadAgentStatus(ctx, api)
	if err != nil {
		tflog.Warn(ctx, "could not ask the consul agent for its status; keeping the last values", map[string]any{"container": c.Name, "error": err.Error()})
		return
	}
	state.NodeID, state.MemberStatus = types.StringValue(st.NodeID), types.StringValue(st.MemberStatus)
}

func (r *consulAgentResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state consulAgentModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Update, 20*time.Minute, &resp.Diagnostics)
	defer cancel()
	spec, h, docker, ok := r.data.consulPrepare(ctx, consul.RoleAgent, &plan.consulContainerModel, consulAgentNoServer, req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	host, name := plan.Host.ValueString(), spec.ContainerName
	// A client agent holds no quorum: it is simply recreated (a stopped agent leaves on
	// SIGTERM and rejoins with the same node ID).
	c, outcome, err := consul.Ensure(ctx, docker, spec)
	if err != nil {
		addConsulContainerError(&resp.Diagnostics, "Could Not Update Consul Agent Container", host, name, err, r.data.nodeNextStep(ctx, host, plan.HostKey.ValueString(), err))
		return
	}
	tflog.Info(ctx, "consul agent container updated", map[string]any{"host": host, "container": name, "outcome": string(outcome)})
	plan.ContainerID, plan.Running = types.StringValue(c.ID), types.BoolValue(true)
	plan.NodeID, plan.MemberStatus = state.NodeID, types.StringNull()
	if plan.ACLAgentToken.IsUnknown() {
		plan.ACLAgentToken = state.ACLAgentToken // until consulEnsureAgentToken records the new one
	}
	r.waitJoined(ctx, h, docker, c, spec, &plan, "update", &resp.Diagnostics)
	if !resp.Diagnostics.HasError() {
		if api, err := consulAPI(h, spec); err == nil {
			consulRotateGossipKey(ctx, api, spec, &plan.consulContainerModel, &state.consulContainerModel, &resp.Diagnostics)
		}
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *consulAgentResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state consulAgentModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, state.Timeouts.Delete, 5*time.Minute, &resp.Diagnostics)
	defer cancel()
	spec, _ := consulSpecOf(ctx, consul.RoleAgent, state.consulContainerModel, consulAgentNoServer, &resp.Diagnostics)
	consulDelete(ctx, r.data, consul.RoleAgent, state.consulContainerModel, spec, &resp.Diagnostics)
}

func (r *consulAgentResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	consulImportState(ctx, req, resp)
}
