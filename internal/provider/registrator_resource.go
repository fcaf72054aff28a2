package provider

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/registrator"
	"github.com/microswarm/terraform-provider-microswarm/internal/swarmservice"
)

var (
	_ resource.Resource                = &registratorResource{}
	_ resource.ResourceWithConfigure   = &registratorResource{}
	_ resource.ResourceWithImportState = &registratorResource{}
)

const (
	registratorOwner          = "microswarm_registrator"
	defaultRegistratorName    = "registrator"
	defaultRegistratorBackend = "consul://127.0.0.1:8500"
	defaultRegistratorResync  = 30
)

func NewRegistratorResource() resource.Resource { return &registratorResource{} }

type registratorResource struct {
	data *providerData
}

type registratorModel struct {
	ID            types.String   `tfsdk:"id"`
	Host          types.String   `tfsdk:"host"`
	HostKey       types.String   `tfsdk:"host_key"`
	Name          types.String   `tfsdk:"name"`
	Image         types.String   `tfsdk:"image"`
	Backend       types.String   `tfsdk:"backend"`
	ConsulToken   types.String   `tfsdk:"consul_token"`
	ACLTokenWO    types.String   `tfsdk:"acl_token_wo"`
	ACLTokenWOVer types.Int64    `tfsdk:"acl_token_wo_version"`
	Internal      types.Bool     `tfsdk:"internal"`
	Explicit      types.Bool     `tfsdk:"explicit"`
	Cleanup       types.Bool     `tfsdk:"cleanup"`
	Resync        types.Int64    `tfsdk:"resync"`
	Tags          types.List     `tfsdk:"tags"`
	Deregister    types.String   `tfsdk:"deregister"`
	RetryAttempts types.Int64    `tfsdk:"retry_attempts"`
	RetryInterval types.Int64    `tfsdk:"retry_interval"`
	ExtraArgs     types.List     `tfsdk:"extra_args"`
	Constraints   types.List     `tfsdk:"constraints"`
	DesiredTasks  types.Int64    `tfsdk:"desired_tasks"`
	RunningTasks  types.Int64    `tfsdk:"running_tasks"`
	Nodes         types.Map      `tfsdk:"nodes"`
	Timeouts      timeouts.Value `tfsdk:"timeouts"`
}

var (
	serviceNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	backendPattern     = regexp.MustCompile(`^(consul|consul-tls)://[^/\s]+:[0-9]{1,5}$|^consul-unix:///\S+$`)
	deregisterModes    = []string{registrator.DeregisterAlways, registrator.DeregisterOnSuccess}
)

func (r *registratorResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_registrator"
}

func (r *registratorResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A registrator on every node of a swarm: a global swarm service (host network, the Docker socket mounted " +
			"read-only) that publishes every container and swarm task of its node into the node-local Consul agent, with " +
			"gliderlabs/registrator's command line and `SERVICE_*` conventions. The default image, `" + registrator.DefaultImage + "`, is " +
			"swarm-aware: a task on an overlay network is registered with its overlay address and container port, its Docker " +
			"HEALTHCHECK becomes a Consul TTL check, and a task told to stop is deregistered before it dies. Create and update return " +
			"once a task runs on every eligible node (with the default image: synced with its Consul agent). Changes roll one node at " +
			"a time, the new task up before the old one stops; a new image that never turns healthy is rolled back and the apply fails. " +
			"A service deleted or changed outside Terraform shows in the next plan.\n\n" +
			"Destroying it removes the service; what it registered stays in Consul, and the mirrored health checks turn critical " +
			"30 seconds later, since nothing vouches for them any more. Containers started afterwards are not registered.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The swarm service's ID.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"host": schema.StringAttribute{
				MarkdownDescription: "A swarm manager's Docker host, `ssh://root@IP` (e.g. `microswarm_droplet_node.x.docker_host`). Changing it " +
					"reaches the same service through another manager.",
				Required:   true,
				Validators: []validator.String{hostValidator{}},
			},
			"host_key": schema.StringAttribute{
				MarkdownDescription: "The manager's SSH host key, pinned (`microswarm_droplet_node.x.ssh_host_key`). Without it the provider's " +
					"`ssh_known_hosts_file` and `host_key_policy` decide, and the key accepted is recorded here.",
				Optional:      true,
				Computed:      true,
				Validators:    []validator.String{sshPublicKeyValidator{}},
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The swarm service's name. Changing it replaces the service. Default: `" + defaultRegistratorName + "`.",
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString(defaultRegistratorName),
				Validators: []validator.String{stringvalidator.RegexMatches(serviceNamePattern,
					"must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"image": schema.StringAttribute{
				MarkdownDescription: "The registrator image. Any registrator-compatible image is accepted (`gliderlabs/registrator` takes " +
					"the same flags but does not understand swarm tasks). Changes in place, one node at a time. Default: `" +
					registrator.DefaultImage + "`.",
				Optional:   true,
				Computed:   true,
				Default:    stringdefault.StaticString(registrator.DefaultImage),
				Validators: []validator.String{imageValidator()},
			},
			"backend": schema.StringAttribute{
				MarkdownDescription: "Where each task registers, as registrator's backend URI: `consul://HOST:PORT`, `consul-tls://HOST:PORT` " +
					"or `consul-unix:///PATH`, as seen from the node (the task uses the host network). Changes in place. Default: `" +
					defaultRegistratorBackend + "`, the node-local agent that `microswarm_consul_server` and `microswarm_consul_agent` run. " +
					"With a `consul-tls://` backend (`consul-tls://127.0.0.1:8500` for agents with `tls`) the tasks get the provider's " +
					"`consul_ca_pem`, `consul_client_cert_pem` and `consul_client_key_pem` as swarm secrets (read through `CONSUL_CACERT`, " +
					"`CONSUL_CLIENT_CERT` and `CONSUL_CLIENT_KEY`), at create and at every update: after changing them, change " +
					"something else of the registrator (e.g. `acl_token_wo_version`) to hand them over.",
				Optional:   true,
				Computed:   true,
				Default:    stringdefault.StaticString(defaultRegistratorBackend),
				Validators: []validator.String{stringvalidator.RegexMatches(backendPattern, "must be consul://HOST:PORT, consul-tls://HOST:PORT or consul-unix:///PATH")},
			},
			"consul_token": schema.StringAttribute{
				MarkdownDescription: "A Consul ACL token to register with. It is stored as a swarm secret and reaches the tasks as a file " +
					"(`CONSUL_HTTP_TOKEN_FILE`), never in the service's spec. **Stored in the Terraform state** (`Sensitive` only hides it in " +
					"output): prefer `acl_token_wo`, with which the provider makes a least-privilege token itself. Changes in place. Conflicts with `acl_token_wo`.",
				Optional:   true,
				Sensitive:  true,
				Validators: []validator.String{stringvalidator.LengthAtLeast(1), stringvalidator.ConflictsWith(path.MatchRoot("acl_token_wo"))},
			},
			"acl_token_wo": registratorACLTokenAttribute(),
			"acl_token_wo_version": schema.Int64Attribute{
				MarkdownDescription: "Version of `acl_token_wo`; change it when you give the provider another management token. Changes in place.",
				Optional:            true,
				Validators:          []validator.Int64{int64validator.AlsoRequires(path.MatchRoot("acl_token_wo"))},
			},
			"internal": schema.BoolAttribute{
				MarkdownDescription: "Register containers' internal addresses and exposed ports instead of published ports (`-internal`). " +
					"Swarm tasks on overlay networks are registered with their overlay address either way. Default: `false`.",
				Optional: true, Computed: true, Default: booldefault.StaticBool(false),
			},
			"explicit": schema.BoolAttribute{
				MarkdownDescription: "Register only containers that set `SERVICE_NAME` (`-explicit`). Default: `false`.",
				Optional:            true, Computed: true, Default: booldefault.StaticBool(false),
			},
			"cleanup": schema.BoolAttribute{
				MarkdownDescription: "On every resync, remove this node's registrations whose containers are gone (`-cleanup`). Default: `true`.",
				Optional:            true, Computed: true, Default: booldefault.StaticBool(true),
			},
			"resync": schema.Int64Attribute{
				MarkdownDescription: "Seconds between full resyncs of every container (`-resync`); `0` resyncs only at start and when the " +
					"Docker event stream reconnects. Registrations an agent restart lost come back within seconds either way. Default: `" +
					fmt.Sprint(defaultRegistratorResync) + "`.",
				Optional:   true,
				Computed:   true,
				Default:    int64default.StaticInt64(defaultRegistratorResync),
				Validators: []validator.Int64{int64validator.Between(0, 86400)},
			},
			"tags": schema.ListAttribute{
				MarkdownDescription: "Tags added to every registration (`-tags`).",
				Optional:            true,
				ElementType:         types.StringType,
				Validators: []validator.List{listvalidator.SizeAtLeast(1), listvalidator.ValueStringsAre(
					stringvalidator.RegexMatches(regexp.MustCompile(`^[^,\s]+$`), "must be a tag without commas or spaces"))},
			},
			"deregister": schema.StringAttribute{
				MarkdownDescription: "When a container that exited is deregistered (`-deregister`): " + describeOneOf(deregisterModes) +
					" (`on-success` keeps a container that failed registered, so its failure stays visible). Default: `always`.",
				Optional:   true,
				Computed:   true,
				Default:    stringdefault.StaticString(registrator.DeregisterAlways),
				Validators: []validator.String{stringvalidator.OneOf(deregisterModes...)},
			},
			"retry_attempts": schema.Int64Attribute{
				MarkdownDescription: "How often a task retries reaching its Consul agent at start before it exits (`-retry-attempts`); " +
					"`-1` retries for ever, so a node whose agent starts later still gets a working registrator. Default: `-1`.",
				Optional:   true,
				Computed:   true,
				Default:    int64default.StaticInt64(-1),
				Validators: []validator.Int64{int64validator.AtLeast(-1)},
			},
			"retry_interval": schema.Int64Attribute{
				MarkdownDescription: "Milliseconds between those retries (`-retry-interval`). Default: `2000`.",
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(2000),
				Validators:          []validator.Int64{int64validator.Between(10, 600000)},
			},
			"extra_args": schema.ListAttribute{
				MarkdownDescription: "More arguments for the registrator, placed after the flags above and before the backend URI " +
					"(e.g. another image's own flags). They must not repeat a flag that has an attribute here.",
				Optional:    true,
				ElementType: types.StringType,
				Validators:  []validator.List{listvalidator.SizeAtLeast(1), listvalidator.ValueStringsAre(extraArgValidator{})},
			},
			"constraints": schema.ListAttribute{
				MarkdownDescription: "Swarm placement constraints limiting the nodes that run a registrator, e.g. `node.labels.consul==true`; " +
					"by default every node does.",
				Optional:    true,
				ElementType: types.StringType,
				Validators: []validator.List{listvalidator.SizeAtLeast(1), listvalidator.ValueStringsAre(
					stringvalidator.RegexMatches(regexp.MustCompile(`^\S+\s*(==|!=)\s*\S+$`), "must be a swarm constraint such as node.role==worker"))},
			},
			"desired_tasks": schema.Int64Attribute{
				MarkdownDescription: "How many nodes are eligible to run a registrator.",
				Computed:            true,
			},
			"running_tasks": schema.Int64Attribute{
				MarkdownDescription: "How many registrators run the current spec (with the default image: in step with their Consul agent).",
				Computed:            true,
			},
			"nodes": schema.MapAttribute{
				MarkdownDescription: "The state of each node's registrator task (`running`, `starting`, `failed`, ...), by node hostname.",
				Computed:            true,
				ElementType:         types.StringType,
			},
			"timeouts": withDurationValidators(timeouts.Attributes(ctx, timeouts.Opts{Create: true, Read: true, Update: true, Delete: true,
				ReadDescription:   readTimeoutDescription,
				CreateDescription: "How long creating may take, until a registrator runs on every eligible node. Default: `10m`.",
				UpdateDescription: "How long an update may take, rolling one node at a time. Default: `10m`.",
				DeleteDescription: "How long removing may take, until every task has stopped. Default: `5m`."})),
		},
	}
}

func (r *registratorResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *registratorResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan registratorModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Create, 10*time.Minute, &resp.Diagnostics)
	defer cancel()
	docker, d, ok := r.prepare(ctx, &plan, req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	svc, adopted, err := swarmservice.Ensure(ctx, docker, d.Spec(), registratorOwner)
	if err != nil {
		addServiceError(&resp.Diagnostics, "Could Not Create Registrator Service", d.Name, plan.Host.ValueString(), err)
		return
	}
	if adopted {
		resp.Diagnostics.AddWarning("Adopted Existing Registrator Service", fmt.Sprintf(
			"Service %s (%s) already existed, made by microswarm (an earlier apply that did not finish?); it was brought to this configuration.", d.Name, svc.ID))
	}
	tflog.Info(ctx, "registrator service created", map[string]any{"service": d.Name, "id": svc.ID, "adopted": adopted})
	// Saved before the wait: a registrator that never converges is tainted, not orphaned.
	plan.ID = types.StringValue(svc.ID)
	plan.DesiredTasks, plan.RunningTasks, plan.Nodes = types.Int64Null(), types.Int64Null(), types.MapNull(types.StringType)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.waitConverged(ctx, docker, &plan, "create", &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *registratorResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state registratorModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	ctx, done := withReadTimeout(ctx, state.Timeouts, &resp.Diagnostics)
	defer done()
	if resp.Diagnostics.HasError() || r.data == nil {
		return
	}
	docker := r.data.reachDocker(ctx, path.Root("host"), state.Host.ValueString(), &state.HostKey, refreshing, "the registrator service", &resp.Diagnostics)
	if docker == nil {
		return
	}
	svc, err := swarmservice.Get(ctx, docker, state.ID.ValueString())
	if errors.Is(err, swarmservice.ErrNotFound) {
		tflog.Warn(ctx, "registrator service is gone; planning to create it again", map[string]any{"id": state.ID.ValueString()})
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		addServiceError(&resp.Diagnostics, "Could Not Read Registrator Service", state.ID.ValueString(), state.Host.ValueString(), err)
		return
	}
	d, err := registrator.DeploymentFromSpec(svc.Spec)
	if err != nil {
		resp.Diagnostics.AddWarning("Registrator Service Changed Outside Terraform", err.Error()+"; the next apply restores it.")
	}
	fillRegistratorModel(&state, svc, d)
	if st, err := swarmservice.ReadStatus(ctx, docker, svc); err == nil {
		setTaskStatus(&state, st, &resp.Diagnostics)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *registratorResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state registratorModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Update, 10*time.Minute, &resp.Diagnostics)
	defer cancel()
	docker, d, ok := r.prepare(ctx, &plan, req.Config, &resp.Diagnostics)
	if !ok {
		return
	}
	old, err := swarmservice.Get(ctx, docker, state.ID.ValueString())
	if err != nil {
		addServiceError(&resp.Diagnostics, "Could Not Read Registrator Service", state.ID.ValueString(), plan.Host.ValueString(), err)
		return
	}
	if err := swarmservice.Update(ctx, docker, old.ID, d.Spec(), registratorOwner); err != nil {
		addServiceError(&resp.Diagnostics, "Could Not Update Registrator Service", d.Name, plan.Host.ValueString(), err)
		return
	}
	plan.ID = state.ID
	r.waitConverged(ctx, docker, &plan, "update", &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// A replaced token or TLS file leaves its old secret behind until no task uses it.
	prev, _ := registrator.DeploymentFromSpec(old.Spec)
	for _, id := range registratorSecretIDs(prev) {
		if slices.Contains(registratorSecretIDs(d), id) {
			continue
		}
		if err := swarmservice.RemoveSecret(ctx, docker, id); err != nil {
			resp.Diagnostics.AddWarning("Old Consul Secret Left Behind", err.Error())
		}
	}
}

func (r *registratorResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state registratorModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, state.Timeouts.Delete, 5*time.Minute, &resp.Diagnostics)
	defer cancel()
	docker := r.data.reachDocker(ctx, path.Root("host"), state.Host.ValueString(), &state.HostKey, mayBeUnreachable, "the registrator service", &resp.Diagnostics)
	if docker == nil {
		if !resp.Diagnostics.HasError() { // unreachable: gone only with its droplet
			r.data.requireNodeGone(ctx, "registrator service "+state.ID.ValueString(), state.Host.ValueString(), &resp.Diagnostics)
		}
		return
	}
	svc, err := swarmservice.Get(ctx, docker, state.ID.ValueString())
	if errors.Is(err, swarmservice.ErrNotFound) {
		return
	}
	if err != nil {
		addServiceError(&resp.Diagnostics, "Could Not Read Registrator Service", state.ID.ValueString(), state.Host.ValueString(), err)
		return
	}
	if err := swarmservice.Remove(ctx, docker, svc.ID); err != nil {
		addServiceError(&resp.Diagnostics, "Could Not Remove Registrator Service", svc.Spec.Name, state.Host.ValueString(), err)
		return
	}
	d, _ := registrator.DeploymentFromSpec(svc.Spec)
	for _, id := range registratorSecretIDs(d) {
		if err := swarmservice.RemoveSecret(ctx, docker, id); err != nil {
			resp.Diagnostics.AddWarning("Consul Secret Left Behind", err.Error())
		}
	}
}

// ImportState takes `HOST,SERVICE_NAME`: a manager's Docker host and the service's name
// (or ID). The host key is pinned by the provider's known_hosts file or policy; the
// Consul token cannot be read back.
func (r *registratorResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	host, name, ok := strings.Cut(req.ID, ",")
	if !ok || host == "" || name == "" {
		resp.Diagnostics.AddError("Invalid Import ID", fmt.Sprintf("Expected HOST,SERVICE_NAME (e.g. ssh://root@203.0.113.10,registrator), got %q.", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("host"), host)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), name)...)
}

// prepare reaches the manager and builds the deployment the plan describes, its Consul
// token stored as a swarm secret.
func (r *registratorResource) prepare(ctx context.Context, plan *registratorModel, cfg tfsdk.Config, diags *diag.Diagnostics) (*client.Client, registrator.Deployment, bool) {
	docker := r.data.reachDocker(ctx, path.Root("host"), plan.Host.ValueString(), &plan.HostKey, mustReach, "the registrator service", diags)
	if docker == nil {
		return nil, registrator.Deployment{}, false
	}
	d := registratorDeployment(ctx, *plan, diags)
	token := plan.ConsulToken.ValueString()
	if !plan.ACLTokenWOVer.IsNull() {
		token = r.data.registratorToken(ctx, *plan, consulWriteOnly(ctx, cfg, "acl_token_wo", diags), diags)
	}
	if diags.HasError() || !r.attachToken(ctx, docker, token, &d, diags) || !r.attachTLS(ctx, docker, &d, diags) {
		return nil, d, false
	}
	return docker, d, true
}

// attachTLS gives a consul-tls:// backend the provider's Consul CA and client
// certificate and key (consul_ca_pem, consul_client_cert_pem, consul_client_key_pem),
// each a swarm secret named by its hash, as files the tasks find through
// CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY.
func (r *registratorResource) attachTLS(ctx context.Context, docker *client.Client, d *registrator.Deployment, diags *diag.Diagnostics) bool {
	access := r.data.consul
	if !strings.HasPrefix(d.Backend, "consul-tls://") || access == nil || access.CAPEM == "" {
		return true
	}
	for _, f := range []struct{ file, name, pem string }{
		{"consul_ca.pem", "consul-ca", access.CAPEM},
		{"consul_client.pem", "consul-client-cert", access.CertPEM},
		{"consul_client_key.pem", "consul-client-key", access.KeyPEM},
	} {
		if f.pem == "" {
			continue
		}
		name := swarmservice.SecretName(d.Name+"-"+f.name, []byte(f.pem))
		id, err := swarmservice.EnsureSecret(ctx, docker, name, []byte(f.pem), registratorOwner)
		if err != nil {
			attrError(diags, path.Root("backend"), "Could Not Store the Consul TLS Material", err.Error())
			return false
		}
		d.TLSSecrets = append(d.TLSSecrets, &swarm.SecretReference{
			File:     &swarm.SecretReferenceFileTarget{Name: f.file, UID: "0", GID: "0", Mode: 0o400},
			SecretID: id, SecretName: name,
		})
	}
	return true
}

// registratorSecretIDs are the swarm secrets a deployment uses.
func registratorSecretIDs(d registrator.Deployment) []string {
	var ids []string
	if d.TokenSecret != nil {
		ids = append(ids, d.TokenSecret.SecretID)
	}
	for _, ref := range d.TLSSecrets {
		ids = append(ids, ref.SecretID)
	}
	return ids
}

// attachToken stores the Consul token as a swarm secret named by its hash and points
// the deployment at it.
func (r *registratorResource) attachToken(ctx context.Context, docker *client.Client, secret string, d *registrator.Deployment, diags *diag.Diagnostics) bool {
	if secret == "" {
		return true
	}
	token := []byte(secret)
	name := swarmservice.SecretName(d.Name+"-consul-token", token)
	id, err := swarmservice.EnsureSecret(ctx, docker, name, token, registratorOwner)
	if err != nil {
		attrError(diags, path.Root("consul_token"), "Could Not Store the Consul Token", err.Error())
		return false
	}
	d.TokenSecret = &swarm.SecretReference{
		File:       &swarm.SecretReferenceFileTarget{Name: "consul_token", UID: "0", GID: "0", Mode: 0o400},
		SecretID:   id,
		SecretName: name,
	}
	return true
}

// waitConverged waits for a registrator on every eligible node and records the tasks.
func (r *registratorResource) waitConverged(ctx context.Context, docker *client.Client, m *registratorModel, operation string, diags *diag.Diagnostics) {
	st, err := swarmservice.WaitConverged(ctx, docker, m.ID.ValueString())
	setTaskStatus(m, st, diags)
	if err != nil {
		diags.AddError("Registrator Did Not Converge", fmt.Sprintf(
			"Service %s (%s) on %s, %s: %s.\n\nA task that stays `starting` has not synced with its Consul agent (is one running on "+
				"that node at %s?); a `rejected` or `failed` one could not start (image name? the node's registry?). Raise timeouts.%s "+
				"if the nodes are only slow.", m.Name.ValueString(), m.ID.ValueString(), m.Host.ValueString(), operation, err,
			m.Backend.ValueString(), operation))
	}
}

func registratorDeployment(ctx context.Context, m registratorModel, diags *diag.Diagnostics) registrator.Deployment {
	d := registrator.Deployment{
		Name:          m.Name.ValueString(),
		Image:         m.Image.ValueString(),
		Backend:       m.Backend.ValueString(),
		Internal:      m.Internal.ValueBool(),
		Explicit:      m.Explicit.ValueBool(),
		Cleanup:       m.Cleanup.ValueBool(),
		Resync:        int(m.Resync.ValueInt64()),
		Deregister:    m.Deregister.ValueString(),
		RetryAttempts: int(m.RetryAttempts.ValueInt64()),
		RetryInterval: int(m.RetryInterval.ValueInt64()),
	}
	diags.Append(m.Tags.ElementsAs(ctx, &d.Tags, true)...)
	diags.Append(m.ExtraArgs.ElementsAs(ctx, &d.ExtraArgs, true)...)
	diags.Append(m.Constraints.ElementsAs(ctx, &d.Constraints, true)...)
	return d
}

// fillRegistratorModel sets what the live service says, so out-of-band changes show.
func fillRegistratorModel(m *registratorModel, svc swarm.Service, d registrator.Deployment) {
	m.ID = types.StringValue(svc.ID)
	m.Name = types.StringValue(svc.Spec.Name)
	m.Image = types.StringValue(d.Image)
	m.Backend = types.StringValue(d.Backend)
	m.Internal, m.Explicit, m.Cleanup = types.BoolValue(d.Internal), types.BoolValue(d.Explicit), types.BoolValue(d.Cleanup)
	m.Resync = types.Int64Value(int64(d.Resync))
	m.Deregister = types.StringValue(d.Deregister)
	m.RetryAttempts, m.RetryInterval = types.Int64Value(int64(d.RetryAttempts)), types.Int64Value(int64(d.RetryInterval))
	m.Tags = stringListOrNull(d.Tags)
	m.ExtraArgs = stringListOrNull(d.ExtraArgs)
	m.Constraints = stringListOrNull(d.Constraints)
	if d.TokenSecret == nil {
		m.ConsulToken = types.StringNull()
	}
}

func setTaskStatus(m *registratorModel, st swarmservice.Status, diags *diag.Diagnostics) {
	m.DesiredTasks, m.RunningTasks = types.Int64Value(int64(st.Desired)), types.Int64Value(int64(st.Running))
	nodes := map[string]string{}
	for _, t := range st.Tasks {
		nodes[t.Node] = t.State
	}
	v, d := types.MapValueFrom(context.Background(), types.StringType, nodes)
	diags.Append(d...)
	m.Nodes = v
}

func stringListOrNull(values []string) types.List {
	if len(values) == 0 {
		return types.ListNull(types.StringType)
	}
	elems := make([]attr.Value, len(values))
	for i, v := range values {
		elems[i] = types.StringValue(v)
	}
	return types.ListValueMust(types.StringType, elems)
}

// addServiceError reports a failed swarm service call with what to do about it.
func addServiceError(diags *diag.Diagnostics, summary, service, host string, err error) {
	var foreign *swarmservice.ForeignServiceError
	switch {
	case errors.As(err, &foreign):
		attrError(diags, path.Root("name"), summary, err.Error())
	default:
		diags.AddError(summary, fmt.Sprintf("Service %s through the manager %s: %s.", service, host, err))
	}
}

// extraArgValidator refuses extra arguments that repeat a flag with its own attribute.
type extraArgValidator struct{}

func (extraArgValidator) Description(context.Context) string {
	return "must not repeat a flag that has its own attribute (" + strings.Join(registrator.FlagNames, ", ") + ")"
}
func (v extraArgValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (extraArgValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if skip(req) {
		return
	}
	arg := req.ConfigValue.ValueString()
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	if strings.HasPrefix(arg, "-") && slices.Contains(registrator.FlagNames, name) {
		attrError(&resp.Diagnostics, req.Path, "Flag Has Its Own Attribute", fmt.Sprintf(
			"%q: set the %s attribute instead of passing -%s in extra_args.", arg, strings.ReplaceAll(name, "-", "_"), name))
	}
}
