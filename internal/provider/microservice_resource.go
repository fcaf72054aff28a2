package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/float64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/bluegreen"
	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/haproxy"
	"github.com/microswarm/terraform-provider-microswarm/internal/swarmservice"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

var (
	_ resource.Resource                   = &microserviceResource{}
	_ resource.ResourceWithConfigure      = &microserviceResource{}
	_ resource.ResourceWithImportState    = &microserviceResource{}
	_ resource.ResourceWithValidateConfig = &microserviceResource{}
)

const (
	microserviceOwner        = "microswarm_microservice"
	defaultProxyImage        = "haproxy:2.6"
	defaultMicroservicePort  = 8080
	defaultListenPort        = 80
	defaultDrainTimeout      = "30s"
	autoRollbackMaxErrorRate = 0.05
	autoRollbackMinRequests  = 20
)

func NewMicroserviceResource() resource.Resource { return &microserviceResource{} }

type microserviceResource struct {
	data *providerData
}

type microserviceModel struct {
	ID           types.String   `tfsdk:"id"`
	Name         types.String   `tfsdk:"name"`
	Host         types.String   `tfsdk:"host"`
	HostKey      types.String   `tfsdk:"host_key"`
	ProxyHosts   types.List     `tfsdk:"proxy_hosts"`
	Port         types.Int64    `tfsdk:"port"`
	ListenPort   types.Int64    `tfsdk:"listen_port"`
	HealthPath   types.String   `tfsdk:"health_path"`
	Network      types.String   `tfsdk:"network"`
	EndpointMode types.String   `tfsdk:"endpoint_mode"`
	ProxyImage   types.String   `tfsdk:"proxy_image"`
	Blue         types.Object   `tfsdk:"blue"`
	Green        types.Object   `tfsdk:"green"`
	Active       types.String   `tfsdk:"active"`
	MinHealthy   types.Int64    `tfsdk:"min_healthy"`
	CanaryWeight types.Int64    `tfsdk:"canary_weight"`
	AutoRollback types.String   `tfsdk:"auto_rollback"`
	DrainTimeout types.String   `tfsdk:"drain_timeout"`
	Endpoints    types.List     `tfsdk:"endpoints"`
	LiveColor    types.String   `tfsdk:"live_color"`
	LiveVersion  types.String   `tfsdk:"live_version"`
	BlueRunning  types.Int64    `tfsdk:"blue_running"`
	GreenRunning types.Int64    `tfsdk:"green_running"`
	BluePassing  types.Int64    `tfsdk:"blue_passing"`
	GreenPassing types.Int64    `tfsdk:"green_passing"`
	Timeouts     timeouts.Value `tfsdk:"timeouts"`
}

type proxyHostModel struct {
	Host    types.String `tfsdk:"host"`
	HostKey types.String `tfsdk:"host_key"`
}

var proxyHostAttrTypes = map[string]attr.Type{"host": types.StringType, "host_key": types.StringType}

type colorModel struct {
	Image       types.String  `tfsdk:"image"`
	Replicas    types.Int64   `tfsdk:"replicas"`
	Env         types.Map     `tfsdk:"env"`
	Labels      types.Map     `tfsdk:"labels"`
	Command     types.List    `tfsdk:"command"`
	Args        types.List    `tfsdk:"args"`
	Constraints types.List    `tfsdk:"constraints"`
	Healthcheck types.Object  `tfsdk:"healthcheck"`
	CPULimit    types.Float64 `tfsdk:"cpu_limit"`
	MemoryLimit types.Int64   `tfsdk:"memory_limit_mb"`
}

type healthcheckModel struct {
	Test     types.List   `tfsdk:"test"`
	Interval types.String `tfsdk:"interval"`
	Timeout  types.String `tfsdk:"timeout"`
	Retries  types.Int64  `tfsdk:"retries"`
}

var healthcheckAttrTypes = map[string]attr.Type{
	"test": types.ListType{ElemType: types.StringType}, "interval": types.StringType, "timeout": types.StringType, "retries": types.Int64Type,
}

var colorAttrTypes = map[string]attr.Type{
	"image": types.StringType, "replicas": types.Int64Type,
	"env": types.MapType{ElemType: types.StringType}, "labels": types.MapType{ElemType: types.StringType},
	"command": types.ListType{ElemType: types.StringType}, "args": types.ListType{ElemType: types.StringType},
	"constraints": types.ListType{ElemType: types.StringType},
	"healthcheck": types.ObjectType{AttrTypes: healthcheckAttrTypes},
	"cpu_limit":   types.Float64Type, "memory_limit_mb": types.Int64Type,
}

var (
	microserviceNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	healthPathPattern       = regexp.MustCompile(`^/[^\s"']*$`)
)

// objectAsOptions reads nested objects with unset fields as nulls.
var objectAsOptions = basetypes.ObjectAsOptions{}

func colorNames() []string { return stringsOf(bluegreen.Colors) }

func (r *microserviceResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_microservice"
}

func colorSchema(c bluegreen.Color) schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		MarkdownDescription: fmt.Sprintf("The %[1]s deployment, swarm service `NAME-%[1]s`. Changing it while %[1]s is not active rolls only "+
			"%[1]s (one task at a time, the new one up first); while it is active, the live tasks are rolled the same way. Removing "+
			"the block of the inactive color removes its service.", c),
		Optional: true,
		Attributes: map[string]schema.Attribute{
			"image": schema.StringAttribute{
				MarkdownDescription: "The image; its tag becomes the `version=` tag in Consul and `live_version`.",
				Required:            true,
				Validators:          []validator.String{imageValidator()},
			},
			"replicas": schema.Int64Attribute{
				MarkdownDescription: "How many tasks. Default: `1`.",
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(1),
				Validators:          []validator.Int64{int64validator.Between(0, 100)},
			},
			"env": schema.MapAttribute{
				MarkdownDescription: "Environment variables of the tasks.",
				Optional:            true, ElementType: types.StringType,
			},
			"labels": schema.MapAttribute{
				MarkdownDescription: "Container labels of the tasks (registrator `SERVICE_*` keys among them).",
				Optional:            true, ElementType: types.StringType,
			},
			"command": schema.ListAttribute{
				MarkdownDescription: "Overrides the image's entrypoint.",
				Optional:            true, ElementType: types.StringType,
				Validators: []validator.List{listvalidator.SizeAtLeast(1)},
			},
			"args": schema.ListAttribute{
				MarkdownDescription: "Arguments to the entrypoint.",
				Optional:            true, ElementType: types.StringType,
				Validators: []validator.List{listvalidator.SizeAtLeast(1)},
			},
			"healthcheck": schema.SingleNestedAttribute{
				MarkdownDescription: "Overrides the image's Docker HEALTHCHECK, which swarm uses to hold a new task back until it is " +
					"healthy and to replace one that turns unhealthy. `test = [\"NONE\"]` turns it off (the proxy's and Consul's checks " +
					"of `health_path` still gate the switch).",
				Optional: true,
				Attributes: map[string]schema.Attribute{
					"test": schema.ListAttribute{
						MarkdownDescription: "The check, as in a Dockerfile's exec form: `[\"CMD\", \"/app\", \"-check\"]`, or `[\"NONE\"]`.",
						Required:            true, ElementType: types.StringType,
						Validators: []validator.List{listvalidator.SizeAtLeast(1)},
					},
					"interval": schema.StringAttribute{MarkdownDescription: "Time between checks (Go duration).", Optional: true, Validators: []validator.String{positiveDurationValidator{}}},
					"timeout":  schema.StringAttribute{MarkdownDescription: "Time one check may take (Go duration).", Optional: true, Validators: []validator.String{positiveDurationValidator{}}},
					"retries":  schema.Int64Attribute{MarkdownDescription: "Failures in a row that make the task unhealthy.", Optional: true, Validators: []validator.Int64{int64validator.Between(1, 100)}},
				},
			},
			"cpu_limit": schema.Float64Attribute{
				MarkdownDescription: "CPUs each task may use at most (e.g. `0.5`). Unset: no limit.",
				Optional:            true,
				Validators:          []validator.Float64{float64validator.Between(0.01, 1024)},
			},
			"memory_limit_mb": schema.Int64Attribute{
				MarkdownDescription: "Memory each task may use at most, in MiB. Unset: no limit.",
				Optional:            true,
				Validators:          []validator.Int64{int64validator.Between(4, 1<<20)},
			},
			"constraints": schema.ListAttribute{
				MarkdownDescription: "Swarm placement constraints, e.g. `node.role==worker`.",
				Optional:            true, ElementType: types.StringType,
				Validators: []validator.List{listvalidator.SizeAtLeast(1), listvalidator.ValueStringsAre(
					stringvalidator.RegexMatches(regexp.MustCompile(`^\S+\s*(==|!=)\s*\S+$`), "must be a swarm constraint such as node.role==worker"))},
			},
		},
	}
}

func (r *microserviceResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "One microservice deployed blue/green: two swarm services, `NAME-blue` and `NAME-green`, on an overlay network, " +
			"published in Consul by the registrator as `NAME` with their color and version as tags, behind an HAProxy on every node of " +
			"`proxy_hosts` (a global service, its port published on the node). `active` says which color takes the traffic.\n\n" +
			"Switching `active` is an in-place update that drops no request: the provider checks that the target color has at least " +
			"`min_healthy` instances passing in Consul and up in every proxy's own checks, and refuses, changing nothing, if not; then it " +
			"writes the routing map each proxy loads at start and switches every proxy in memory through HAProxy's Runtime API (a `set " +
			"map`, which the next request follows; no reload), waits for the old color's requests in flight, and keeps the old color " +
			"running for an instant rollback: switch back. With `auto_rollback` it watches the new color for that long and switches " +
			"back, failing the apply with what it saw, if its instances fail their checks or more than 5 % of its requests fail. " +
			"`canary_weight` sends that share of requests to the other color.\n\n" +
			"The provider reaches each proxy's admin socket through the node's SSH connection; no admin port is exposed. Refresh reads " +
			"the live color from the proxies, so a switch made out of band shows as drift, as do a color's service or the proxy deleted " +
			"or changed out of band.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The service's name.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The service's name: its Consul name, and the prefix of its swarm services (`NAME-blue`, `NAME-green`, " +
					"`NAME-proxy`). Lowercase letters, digits and `-`, at most 40. Changing it replaces everything.",
				Required:      true,
				Validators:    []validator.String{stringvalidator.RegexMatches(microserviceNamePattern, "must be 1-40 lowercase letters, digits or '-', starting with a letter or digit")},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"host": schema.StringAttribute{
				MarkdownDescription: "A swarm manager's Docker host, `ssh://root@IP`. Its Consul agent (127.0.0.1:8500 on that node) is the health gate.",
				Required:            true,
				Validators:          []validator.String{hostValidator{}},
			},
			"host_key": schema.StringAttribute{
				MarkdownDescription: "The manager's SSH host key, pinned (`microswarm_droplet_node.x.ssh_host_key`); without it the provider's " +
					"`ssh_known_hosts_file` and `host_key_policy` decide, and the key accepted is recorded here.",
				Optional:      true,
				Computed:      true,
				Validators:    []validator.String{sshPublicKeyValidator{}},
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"proxy_hosts": schema.ListNestedAttribute{
				MarkdownDescription: "The nodes that run the proxy (each gets a swarm node label), reached over SSH for the proxy's admin " +
					"socket and routing map. `endpoints` lists one URL per node. Changes in place.",
				Required:   true,
				Validators: []validator.List{listvalidator.SizeAtLeast(1)},
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"host": schema.StringAttribute{
						MarkdownDescription: "The node's `ssh://root@IP` (`microswarm_droplet_node.x.docker_host`).",
						Required:            true,
						Validators:          []validator.String{hostValidator{}},
					},
					"host_key": schema.StringAttribute{
						MarkdownDescription: "The node's SSH host key, pinned.",
						Optional:            true,
						Validators:          []validator.String{sshPublicKeyValidator{}},
					},
				}},
			},
			"port": schema.Int64Attribute{
				MarkdownDescription: "The port the service's tasks listen on. Changing it replaces everything. Default: `8080`.",
				Optional:            true, Computed: true,
				Default:       int64default.StaticInt64(defaultMicroservicePort),
				Validators:    []validator.Int64{int64validator.Between(1, 65535)},
				PlanModifiers: []planmodifier.Int64{int64planmodifier.RequiresReplace()},
			},
			"listen_port": schema.Int64Attribute{
				MarkdownDescription: "The port the proxy answers on, on every proxy node. Changes in place (the proxies restart one at a " +
					"time). Default: `80`.",
				Optional: true, Computed: true,
				Default:    int64default.StaticInt64(defaultListenPort),
				Validators: []validator.Int64{int64validator.Between(1, 65535)},
			},
			"health_path": schema.StringAttribute{
				MarkdownDescription: "The HTTP path that answers 2xx while a task is healthy: the proxy checks it every 500 ms and Consul " +
					"every 2 s. Changes in place. Default: `/health`.",
				Optional: true, Computed: true,
				Default:    stringdefault.StaticString("/health"),
				Validators: []validator.String{stringvalidator.RegexMatches(healthPathPattern, "must be a path starting with /")},
			},
			"network": schema.StringAttribute{
				MarkdownDescription: "The overlay network of the colors and the proxy; created (attachable) if missing. Changing it replaces " +
					"everything. Default: `NAME-net`.",
				Optional: true, Computed: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown(), stringplanmodifier.RequiresReplace()},
				Validators: []validator.String{stringvalidator.RegexMatches(serviceNamePattern,
					"must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")},
			},
			"endpoint_mode": schema.StringAttribute{
				MarkdownDescription: "How the colors' tasks are found: " + describeOneOf(bluegreen.EndpointModes) + ". The proxy resolves " +
					"`tasks.NAME-COLOR`, which answers every task in both modes; `vip` also gives each color one virtual IP (it needs the " +
					"kernel's IPVS, which real droplets have). Changing it replaces everything. Default: `dnsrr`.",
				Optional: true, Computed: true,
				Default:       stringdefault.StaticString("dnsrr"),
				Validators:    []validator.String{stringvalidator.OneOf(bluegreen.EndpointModes...)},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"proxy_image": schema.StringAttribute{
				MarkdownDescription: "The HAProxy image (2.6 or later). Changes in place. Default: `" + defaultProxyImage + "`.",
				Optional:            true, Computed: true,
				Default:    stringdefault.StaticString(defaultProxyImage),
				Validators: []validator.String{imageValidator()},
			},
			"blue":  colorSchema(bluegreen.Blue),
			"green": colorSchema(bluegreen.Green),
			"active": schema.StringAttribute{
				MarkdownDescription: "The color that takes the traffic, " + describeOneOf(colorNames()) + ". Changing it switches in place " +
					"(gated, no failed request; the old color keeps running).",
				Required:   true,
				Validators: []validator.String{stringvalidator.OneOf(colorNames()...)},
			},
			"min_healthy": schema.Int64Attribute{
				MarkdownDescription: "How many instances of a color must pass in Consul and be up in every proxy before it takes the traffic. " +
					"Default: `1`.",
				Optional: true, Computed: true,
				Default:    int64default.StaticInt64(1),
				Validators: []validator.Int64{int64validator.AtLeast(1)},
			},
			"canary_weight": schema.Int64Attribute{
				MarkdownDescription: "Percentage of requests (0-100) sent to the color that is not active, while it has a healthy " +
					"instance. Changes in place. Default: `0`.",
				Optional: true, Computed: true,
				Default:    int64default.StaticInt64(0),
				Validators: []validator.Int64{int64validator.Between(0, 100)},
			},
			"auto_rollback": schema.StringAttribute{
				MarkdownDescription: "After a switch, watch the new color this long (a Go duration, e.g. `30s`); if its passing instances " +
					"fall below `min_healthy` or more than 5 % of its requests at the proxies fail, switch back and fail the apply. " +
					"Unset: no watch.",
				Optional:   true,
				Validators: []validator.String{positiveDurationValidator{}},
			},
			"drain_timeout": schema.StringAttribute{
				MarkdownDescription: "After a switch, how long to wait for the old color's requests in flight. Default: `" + defaultDrainTimeout + "`.",
				Optional:            true, Computed: true,
				Default:    stringdefault.StaticString(defaultDrainTimeout),
				Validators: []validator.String{positiveDurationValidator{}},
			},
			"endpoints": schema.ListAttribute{
				MarkdownDescription: "The service's URLs, one per proxy node: `http://IP:listen_port`.",
				Computed:            true, ElementType: types.StringType,
			},
			"live_color": schema.StringAttribute{
				MarkdownDescription: "The color the proxies route to, as read from them.",
				Computed:            true,
			},
			"live_version": schema.StringAttribute{
				MarkdownDescription: "The version (image tag) of the live color.",
				Computed:            true,
			},
			"blue_running":  schema.Int64Attribute{MarkdownDescription: "Running tasks of blue.", Computed: true},
			"green_running": schema.Int64Attribute{MarkdownDescription: "Running tasks of green.", Computed: true},
			"blue_passing":  schema.Int64Attribute{MarkdownDescription: "Blue instances passing in Consul.", Computed: true},
			"green_passing": schema.Int64Attribute{MarkdownDescription: "Green instances passing in Consul.", Computed: true},
			"timeouts": timeouts.Attributes(ctx, timeouts.Opts{Create: true, Update: true, Delete: true,
				CreateDescription: "How long creating may take: both colors running, the proxies up, the active color healthy. Default: `10m`.",
				UpdateDescription: "How long an update may take, a switch with its drain and watch included. Default: `15m`.",
				DeleteDescription: "How long removing may take. Default: `5m`."}),
		},
	}
}

func (r *microserviceResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig checks what spans attributes: the active color is deployed with a
// task, min_healthy fits its replicas, a canary has somewhere to go.
func (r *microserviceResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m microserviceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || m.Active.IsUnknown() || m.Active.IsNull() {
		return
	}
	active := bluegreen.Color(m.Active.ValueString())
	block := m.colorObject(active)
	if block.IsNull() {
		resp.Diagnostics.AddAttributeError(path.Root(string(active)), "Active Color Not Deployed",
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
		resp.Diagnostics.AddAttributeError(path.Root(string(active)).AtName("replicas"), "Active Color Has No Task",
			fmt.Sprintf("%s takes the traffic, so it needs at least one replica.", active))
	}
	if !m.MinHealthy.IsNull() && !m.MinHealthy.IsUnknown() && m.MinHealthy.ValueInt64() > replicas && !c.Replicas.IsUnknown() {
		resp.Diagnostics.AddAttributeError(path.Root("min_healthy"), "Minimum Healthy Above Replicas",
			fmt.Sprintf("min_healthy = %d, but %s has %d replicas: no switch to it could ever pass the gate.", m.MinHealthy.ValueInt64(), active, replicas))
	}
	if w := m.CanaryWeight; !w.IsNull() && !w.IsUnknown() && w.ValueInt64() > 0 && m.colorObject(active.Other()).IsNull() {
		resp.Diagnostics.AddAttributeError(path.Root("canary_weight"), "Canary Without a Second Color",
			fmt.Sprintf("canary_weight = %d sends requests to %s, which has no block.", w.ValueInt64(), active.Other()))
	}
}

// route is the routing the model asks for.
func (m *microserviceModel) route() bluegreen.Route {
	return bluegreen.Route{Active: bluegreen.Color(m.Active.ValueString()), Canary: int(m.CanaryWeight.ValueInt64())}
}

func (m *microserviceModel) colorObject(c bluegreen.Color) types.Object {
	if c == bluegreen.Blue {
		return m.Blue
	}
	return m.Green
}

func (m *microserviceModel) setColorObject(c bluegreen.Color, v types.Object) {
	if c == bluegreen.Blue {
		m.Blue = v
	} else {
		m.Green = v
	}
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
	d := r.deploy(ctx, &plan, nil, &resp.Diagnostics)
	if d == nil {
		return
	}
	// Saved once the services exist: a failed wait taints rather than orphans them.
	d.fillUnknown(&plan)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	target := plan.route()
	if err := d.awaitGate(ctx, target.Active, int(plan.MinHealthy.ValueInt64())); err != nil {
		resp.Diagnostics.AddError("Active Color Not Healthy", fmt.Sprintf("Service %s: %s.", plan.Name.ValueString(), err))
		return
	}
	if err := d.ensureRoute(ctx, target); err != nil {
		resp.Diagnostics.AddError("Could Not Route the Proxies", fmt.Sprintf("Service %s: %s.", plan.Name.ValueString(), err))
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
	d := r.deploy(ctx, &plan, &state, &resp.Diagnostics)
	if d == nil {
		return
	}
	from, err := bluegreen.CurrentRoute(ctx, d.proxies)
	if err != nil {
		resp.Diagnostics.AddError("Could Not Read the Proxies' Routing", fmt.Sprintf("Service %s: %s.", plan.Name.ValueString(), err))
		return
	}
	to := plan.route()
	if to != from {
		r.doSwitch(ctx, d, &plan, from, to, &resp.Diagnostics)
	}
	d.awaitStandby(ctx, &plan, &resp.Diagnostics)
	d.observe(ctx, &plan)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// doSwitch gates, switches and watches; on a refusal or a rollback the state keeps the
// route the proxies actually have, so the next plan shows the switch again.
func (r *microserviceResource) doSwitch(ctx context.Context, d *deployment, plan *microserviceModel, from, to bluegreen.Route, diags *diag.Diagnostics) {
	name := plan.Name.ValueString()
	minHealthy := int(plan.MinHealthy.ValueInt64())
	if d.changed[to.Active] && to.Active != from.Active {
		// Just deployed: give its checks time to pass before judging it.
		_ = d.awaitGate(ctx, to.Active, minHealthy)
	}
	drain, _ := parsePositiveDuration(plan.DrainTimeout.ValueString())
	opts := bluegreen.SwitchOptions{MinHealthy: minHealthy, DrainTimeout: drain, Persist: d.persistRoute}
	if !plan.AutoRollback.IsNull() {
		window, _ := parsePositiveDuration(plan.AutoRollback.ValueString())
		opts.Watch = bluegreen.WatchPolicy{Window: window, Every: 500 * time.Millisecond, MinHealthy: minHealthy,
			MaxErrorRate: autoRollbackMaxErrorRate, MinRequests: autoRollbackMinRequests}
	}
	res, err := bluegreen.Switch(ctx, d.health, d.proxies, from, to, opts)
	var gate *bluegreen.GateError
	var back *bluegreen.RolledBackError
	switch {
	case errors.As(err, &gate):
		diags.AddAttributeError(path.Root("active"), "Switch Refused: Target Not Healthy", fmt.Sprintf(
			"Service %s: %s\n\nFix or wait for %s, or lower min_healthy.", name, err, gate.Target))
		plan.Active, plan.CanaryWeight = types.StringValue(string(from.Active)), types.Int64Value(int64(from.Canary))
	case errors.As(err, &back):
		diags.AddAttributeError(path.Root("active"), "Switch Rolled Back", fmt.Sprintf("Service %s: %s.", name, err))
		plan.Active, plan.CanaryWeight = types.StringValue(string(from.Active)), types.Int64Value(int64(from.Canary))
	case err != nil:
		diags.AddError("Switch Failed", fmt.Sprintf("Service %s: %s.", name, err))
		plan.Active, plan.CanaryWeight = types.StringValue(string(from.Active)), types.Int64Value(int64(from.Canary))
	default:
		tflog.Info(ctx, "switched", map[string]any{"service": name, "from": string(from.Active), "to": string(to.Active), "canary": to.Canary, "flip": res.Flip.String()})
		if res.DrainErr != nil {
			diags.AddWarning("Old Color Still Busy", fmt.Sprintf("Service %s switched to %s, but %s", name, to.Active, res.DrainErr))
		}
	}
}

func (r *microserviceResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state microserviceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || r.data == nil {
		return
	}
	mgr := r.data.managerDocker(ctx, state.Host, &state.HostKey, true, &resp.Diagnostics)
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
			state.setColorObject(c, colorObjectFrom(ctx, bluegreen.ColorFromServiceSpec(live.Spec), &resp.Diagnostics))
			readServiceSettings(&state, live.Spec)
		}
	}
	proxy, err := swarmservice.Get(ctx, mgr, name+"-proxy")
	switch {
	case errors.Is(err, swarmservice.ErrNotFound):
		state.ProxyImage = types.StringNull()
	case err == nil && proxy.Spec.TaskTemplate.ContainerSpec != nil:
		anything = true
		state.ProxyImage = types.StringValue(proxy.Spec.TaskTemplate.ContainerSpec.Image)
		if ep := proxy.Spec.EndpointSpec; ep != nil && len(ep.Ports) > 0 {
			state.ListenPort = types.Int64Value(int64(ep.Ports[0].PublishedPort))
		}
	}
	if !anything {
		tflog.Warn(ctx, "microservice is gone; planning to create it again", map[string]any{"service": name})
		resp.State.RemoveResource(ctx)
		return
	}
	d := r.reach(ctx, mgr, &state, true, &resp.Diagnostics)
	if d != nil {
		if route, err := bluegreen.CurrentRoute(ctx, d.proxies); err == nil {
			state.Active, state.CanaryWeight = types.StringValue(string(route.Active)), types.Int64Value(int64(route.Canary))
		} else {
			resp.Diagnostics.AddWarning("Proxies Disagree or Unreachable", fmt.Sprintf("Service %s: %s; the next apply sets the configured route.", name, err))
			state.LiveColor = types.StringValue("unknown")
		}
		d.observe(ctx, &state)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *microserviceResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state microserviceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, state.Timeouts.Delete, 5*time.Minute, &resp.Diagnostics)
	defer cancel()
	mgr := r.data.managerDocker(ctx, state.Host, &state.HostKey, true, &resp.Diagnostics)
	if mgr == nil {
		return
	}
	name := state.Name.ValueString()
	svc := serviceOf(state)
	for _, service := range []string{name + "-proxy", svc.ServiceName(bluegreen.Blue), svc.ServiceName(bluegreen.Green)} {
		live, err := swarmservice.Get(ctx, mgr, service)
		if errors.Is(err, swarmservice.ErrNotFound) {
			continue
		}
		if err == nil {
			err = swarmservice.Remove(ctx, mgr, live.ID)
		}
		if err != nil {
			resp.Diagnostics.AddError("Could Not Remove Service", fmt.Sprintf("%s: %s", service, err))
			return
		}
	}
	if err := swarmservice.RemoveConfigs(ctx, mgr, name+"-proxy-", microserviceOwner, ""); err != nil {
		resp.Diagnostics.AddWarning("Proxy Config Left Behind", err.Error())
	}
	proxy := bluegreen.ProxyDeployment{Service: svc}
	nodes, err := mgr.NodeList(ctx, dockerswarm.NodeListOptions{})
	if err == nil {
		for _, n := range nodes {
			if _, ok := n.Spec.Labels[proxy.NodeLabel()]; ok {
				if err := swarmservice.SetNodeLabel(ctx, mgr, n.ID, proxy.NodeLabel(), ""); err != nil {
					resp.Diagnostics.AddWarning("Node Label Left Behind", err.Error())
				}
			}
		}
	}
	var hosts []proxyHostModel
	resp.Diagnostics.Append(state.ProxyHosts.ElementsAs(ctx, &hosts, false)...)
	for i, ph := range hosts {
		hostKey := ph.HostKey
		if h := r.data.openNode(ctx, path.Root("proxy_hosts").AtListIndex(i).AtName("host"), ph.Host.ValueString(), &hostKey, true, &resp.Diagnostics); h != nil {
			if _, err := h.Run(ctx, "rm -rf "+proxy.NodeDir(), nil); err != nil {
				resp.Diagnostics.AddWarning("Proxy Directory Left Behind", err.Error())
			}
		}
	}
	// Swarm releases a network a moment after its last task stopped.
	err = wait.Until(ctx, wait.Options{What: "network " + state.Network.ValueString() + " to be released", Interval: 500 * time.Millisecond},
		func(ctx context.Context) (bool, string, error) {
			err := swarmservice.RemoveOverlay(ctx, mgr, state.Network.ValueString(), microserviceOwner)
			return err == nil, fmt.Sprint(err), nil
		})
	if err != nil {
		resp.Diagnostics.AddWarning("Network Left Behind", err.Error())
	}
}

// ImportState takes `HOST,NAME`: a manager's Docker host and the service's name. The
// proxy hosts come from the configuration.
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
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("proxy_hosts"), types.ListNull(types.ObjectType{AttrTypes: proxyHostAttrTypes}))...)
}

// deployment is a microservice's live parts as one apply reaches them.
type deployment struct {
	name    string
	mgr     *client.Client
	svc     bluegreen.Service
	proxy   bluegreen.ProxyDeployment
	nodes   []proxyNode
	proxies []bluegreen.Proxy
	health  bluegreen.Health
	// changed are the colors whose service this apply created or changed.
	changed map[bluegreen.Color]bool
	images  map[bluegreen.Color]string
}

type proxyNode struct {
	host   *conn.Host
	url    string
	nodeID string
	name   string
}

func serviceOf(m microserviceModel) bluegreen.Service {
	return bluegreen.Service{
		Name: m.Name.ValueString(), Network: m.Network.ValueString(), Port: int(m.Port.ValueInt64()),
		HealthPath: m.HealthPath.ValueString(), EndpointMode: m.EndpointMode.ValueString(),
	}
}

func proxyConfig(svc bluegreen.Service, listenPort int) haproxy.Config {
	dir := bluegreen.ProxyDeployment{Service: svc}.ContainerDir()
	return haproxy.Config{
		Service: svc.Name, ServicePort: svc.Port, ListenPort: listenPort, HealthPath: svc.HealthPath,
		MapPath: dir + "/bluegreen.map", ServerStateFile: dir + "/server-state", AdminSocketPath: dir + "/admin.sock",
	}
}

// reach opens the manager's Consul API and every proxy node, without changing anything.
// With tolerateUnreachable (refresh) a node that does not answer is a warning and nil.
func (r *microserviceResource) reach(ctx context.Context, mgr *client.Client, m *microserviceModel, tolerateUnreachable bool, diags *diag.Diagnostics) *deployment {
	svc := serviceOf(*m)
	d := &deployment{name: svc.Name, mgr: mgr, svc: svc, proxy: bluegreen.ProxyDeployment{Service: svc, ListenPort: int(m.ListenPort.ValueInt64())},
		changed: map[bluegreen.Color]bool{}, images: map[bluegreen.Color]string{}}
	for _, c := range bluegreen.Colors {
		if obj := m.colorObject(c); !obj.IsNull() && !obj.IsUnknown() {
			if img, ok := obj.Attributes()["image"].(types.String); ok {
				d.images[c] = img.ValueString()
			}
		}
	}
	managerHost := r.data.openNode(ctx, path.Root("host"), m.Host.ValueString(), &m.HostKey, tolerateUnreachable, diags)
	if managerHost == nil {
		return nil
	}
	api, err := managerHost.Consul(conn.ConsulConfig{})
	if err != nil {
		diags.AddError("Could Not Reach Consul", fmt.Sprintf("Through %s: %s", m.Host.ValueString(), err))
		return nil
	}
	d.health = &bluegreen.ConsulHealth{API: api, Service: svc.Name}
	var hosts []proxyHostModel
	diags.Append(m.ProxyHosts.ElementsAs(ctx, &hosts, false)...)
	cfg := proxyConfig(svc, d.proxy.ListenPort)
	for i, ph := range hosts {
		hostKey := ph.HostKey
		h := r.data.openNode(ctx, path.Root("proxy_hosts").AtListIndex(i).AtName("host"), ph.Host.ValueString(), &hostKey, tolerateUnreachable, diags)
		if h == nil {
			return nil
		}
		docker, err := h.Docker()
		if err != nil {
			diags.AddError("Could Not Reach the Docker API", fmt.Sprintf("%s: %s", ph.Host.ValueString(), err))
			return nil
		}
		info, err := docker.Info(ctx)
		if err != nil {
			diags.AddError("Could Not Reach the Docker API", fmt.Sprintf("%s: %s", ph.Host.ValueString(), err))
			return nil
		}
		url := fmt.Sprintf("http://%s", net.JoinHostPort(h.Endpoint().Host, fmt.Sprint(d.proxy.ListenPort)))
		node := proxyNode{host: h, url: url, nodeID: info.Swarm.NodeID, name: info.Name}
		d.nodes = append(d.nodes, node)
		socket := d.proxy.AdminSocket()
		d.proxies = append(d.proxies, &bluegreen.HAProxy{Node: info.Name, MapPath: cfg.MapPath, Client: &haproxy.Client{
			Dial: func(ctx context.Context) (net.Conn, error) { return h.DialContext(ctx, "unix", socket) },
		}})
	}
	return d
}

// deploy brings the network, the colors' services and the proxy to the plan and waits
// until they run. It does not switch: the route is the caller's.
func (r *microserviceResource) deploy(ctx context.Context, plan, state *microserviceModel, diags *diag.Diagnostics) *deployment {
	mgr := r.data.managerDocker(ctx, plan.Host, &plan.HostKey, false, diags)
	if mgr == nil {
		return nil
	}
	name := plan.Name.ValueString()
	if _, err := swarmservice.EnsureOverlay(ctx, mgr, plan.Network.ValueString(), microserviceOwner); err != nil {
		diags.AddAttributeError(path.Root("network"), "Could Not Create the Network", err.Error())
		return nil
	}
	d := r.reach(ctx, mgr, plan, false, diags)
	if d == nil || diags.HasError() {
		return nil
	}
	// The proxy nodes: labelled for the proxy's placement, each with the directory and
	// routing map the proxy loads at start (kept if there: it holds the live route).
	route := plan.route()
	if state != nil {
		route = state.route()
	}
	mapText, err := haproxy.RenderMap(route.Active, route.Canary)
	if err != nil {
		diags.AddError("Invalid Route", err.Error())
		return nil
	}
	// A node no longer among proxy_hosts loses the label, and so its proxy.
	wanted := map[string]bool{}
	for _, n := range d.nodes {
		wanted[n.nodeID] = true
	}
	if all, err := mgr.NodeList(ctx, dockerswarm.NodeListOptions{}); err == nil {
		for _, n := range all {
			if _, labelled := n.Spec.Labels[d.proxy.NodeLabel()]; labelled && !wanted[n.ID] {
				if err := swarmservice.SetNodeLabel(ctx, mgr, n.ID, d.proxy.NodeLabel(), ""); err != nil {
					diags.AddWarning("Could Not Unlabel Former Proxy Node", err.Error())
				}
			}
		}
	}
	for _, n := range d.nodes {
		if err := swarmservice.SetNodeLabel(ctx, mgr, n.nodeID, d.proxy.NodeLabel(), "true"); err != nil {
			diags.AddError("Could Not Label Proxy Node", err.Error())
			return nil
		}
		script := fmt.Sprintf("mkdir -p %[1]s && if [ ! -s %[2]s ]; then cat > %[2]s.tmp && mv %[2]s.tmp %[2]s; fi", d.proxy.NodeDir(), d.proxy.MapFile())
		if _, err := n.host.Run(ctx, script, strings.NewReader(mapText)); err != nil {
			diags.AddError("Could Not Prepare Proxy Node", err.Error())
			return nil
		}
	}
	// Colors: create or update what the plan has; remove an inactive color it dropped.
	for _, c := range bluegreen.Colors {
		obj := plan.colorObject(c)
		if obj.IsNull() {
			if c == route.Active && state != nil {
				diags.AddAttributeError(path.Root(string(c)), "Active Color Removed", "Switch to the other color before removing this block.")
				return nil
			}
			if live, err := swarmservice.Get(ctx, mgr, d.svc.ServiceName(c)); err == nil {
				if err := swarmservice.Remove(ctx, mgr, live.ID); err != nil {
					diags.AddError("Could Not Remove Color", err.Error())
					return nil
				}
			}
			continue
		}
		var cm colorModel
		diags.Append(obj.As(ctx, &cm, objectAsOptions)...)
		spec := colorSpecOf(ctx, cm, diags)
		if diags.HasError() {
			return nil
		}
		before, _ := swarmservice.Get(ctx, mgr, d.svc.ServiceName(c))
		live, _, err := swarmservice.Ensure(ctx, mgr, d.svc.ColorServiceSpec(c, spec), microserviceOwner)
		if err != nil {
			diags.AddError("Could Not Deploy "+titleColor(c), fmt.Sprintf("%s: %s", d.svc.ServiceName(c), err))
			return nil
		}
		d.changed[c] = before.Version.Index != live.Version.Index
	}
	// The proxy: config as a content-named swarm config, then the global service.
	cfgText, err := proxyConfig(d.svc, d.proxy.ListenPort).Render()
	if err != nil {
		diags.AddError("Invalid Proxy Configuration", err.Error())
		return nil
	}
	d.proxy.Image = plan.ProxyImage.ValueString()
	d.proxy.ConfigName = swarmservice.SecretName(name+"-proxy", []byte(cfgText))
	if d.proxy.ConfigID, err = swarmservice.EnsureConfig(ctx, mgr, d.proxy.ConfigName, []byte(cfgText), microserviceOwner); err != nil {
		diags.AddError("Could Not Store the Proxy Configuration", err.Error())
		return nil
	}
	if _, _, err := swarmservice.Ensure(ctx, mgr, d.proxy.Spec(), microserviceOwner); err != nil {
		diags.AddError("Could Not Deploy the Proxy", fmt.Sprintf("%s: %s", d.proxy.ProxyName(), err))
		return nil
	}
	for _, service := range []string{d.svc.ServiceName(bluegreen.Blue), d.svc.ServiceName(bluegreen.Green), d.proxy.ProxyName()} {
		live, err := swarmservice.Get(ctx, mgr, service)
		if errors.Is(err, swarmservice.ErrNotFound) {
			continue
		}
		if err == nil {
			_, err = swarmservice.WaitConverged(ctx, mgr, live.ID)
		}
		if err != nil {
			diags.AddError("Service Did Not Converge", fmt.Sprintf("%s: %s.\n\nA task that stays `starting` has not passed its "+
				"HEALTHCHECK; a `rejected` one could not start (image name? the node's registry?). Raise the timeouts if the nodes are only slow.", service, err))
			return nil
		}
	}
	if err := swarmservice.RemoveConfigs(ctx, mgr, name+"-proxy-", microserviceOwner, d.proxy.ConfigID); err != nil {
		tflog.Warn(ctx, "old proxy configs left behind", map[string]any{"error": err.Error()})
	}
	return d
}

// awaitGate waits, bounded by ctx, until color c passes the switch gate.
func (d *deployment) awaitGate(ctx context.Context, c bluegreen.Color, minHealthy int) error {
	return wait.Until(ctx, wait.Options{What: fmt.Sprintf("%s to have %d healthy instances", c, minHealthy), Interval: 250 * time.Millisecond, MaxInterval: time.Second},
		func(ctx context.Context) (bool, string, error) {
			err := bluegreen.Gate(ctx, d.health, d.proxies, c, minHealthy)
			if err != nil {
				return false, err.Error(), nil //nolint:nilerr // not yet: the reason is the state a timeout reports
			}
			return true, "", nil
		})
}

// awaitStandby waits (at most a minute) until every replica of a color this apply
// deployed and that is not active passes in Consul and in the proxies, so the apply ends
// with the standby ready to take over; one that does not get there is a warning.
func (d *deployment) awaitStandby(ctx context.Context, m *microserviceModel, diags *diag.Diagnostics) {
	if diags.HasError() {
		return // a refused or rolled back switch already says what is wrong
	}
	active := bluegreen.Color(m.Active.ValueString())
	for _, c := range bluegreen.Colors {
		obj := m.colorObject(c)
		if c == active || !d.changed[c] || obj.IsNull() {
			continue
		}
		replicas, _ := obj.Attributes()["replicas"].(types.Int64)
		if replicas.ValueInt64() < 1 {
			continue
		}
		waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
		err := d.awaitGate(waitCtx, c, int(replicas.ValueInt64()))
		cancel()
		if err != nil {
			diags.AddAttributeWarning(path.Root(string(c)), "Standby Color Not Healthy", fmt.Sprintf(
				"Service %s: %s is deployed but not every instance is healthy yet: %s. A switch to it will be gated on min_healthy.", d.name, c, err))
		}
	}
}

// ensureRoute makes every proxy route as r (a fresh proxy loaded it from the map).
func (d *deployment) ensureRoute(ctx context.Context, r bluegreen.Route) error {
	return wait.Until(ctx, wait.Options{What: "every proxy to answer on its admin socket", Interval: 250 * time.Millisecond, MaxInterval: time.Second},
		func(ctx context.Context) (bool, string, error) {
			current, err := bluegreen.CurrentRoute(ctx, d.proxies)
			if err != nil {
				return false, err.Error(), nil //nolint:nilerr // not yet: the reason is the state a timeout reports
			}
			if current == r {
				return true, "", nil
			}
			if err := d.persistRoute(ctx, r); err != nil {
				return false, "", err
			}
			return false, "", bluegreen.SetRoutes(ctx, d.proxies, r, current)
		})
}

// persistRoute rewrites the routing map file on every proxy node, so a restarted proxy
// keeps the route.
func (d *deployment) persistRoute(ctx context.Context, r bluegreen.Route) error {
	hosts := make([]*conn.Host, len(d.nodes))
	for i, n := range d.nodes {
		hosts[i] = n.host
	}
	return bluegreen.RouteFile{Nodes: hosts, Path: d.proxy.MapFile()}.Persist(ctx, r)
}

// fillUnknown gives computed attributes a value before the first observation.
func (d *deployment) fillUnknown(m *microserviceModel) {
	urls := make([]attr.Value, len(d.nodes))
	for i, n := range d.nodes {
		urls[i] = types.StringValue(n.url)
	}
	m.Endpoints = types.ListValueMust(types.StringType, urls)
	m.LiveColor, m.LiveVersion = types.StringNull(), types.StringNull()
	for _, v := range []*types.Int64{&m.BlueRunning, &m.GreenRunning, &m.BluePassing, &m.GreenPassing} {
		*v = types.Int64Value(0)
	}
}

// observe reads the route, the tasks and Consul's view into the computed attributes.
func (d *deployment) observe(ctx context.Context, m *microserviceModel) {
	d.fillUnknown(m)
	if route, err := bluegreen.CurrentRoute(ctx, d.proxies); err == nil {
		m.LiveColor = types.StringValue(string(route.Active))
		m.LiveVersion = types.StringValue(bluegreen.Version(d.images[route.Active]))
	}
	for _, c := range bluegreen.Colors {
		running, passing := int64(0), int64(0)
		if live, err := swarmservice.Get(ctx, d.mgr, d.svc.ServiceName(c)); err == nil {
			if st, err := swarmservice.ReadStatus(ctx, d.mgr, live); err == nil {
				running = int64(st.Running)
			}
		}
		if instances, err := d.health.Instances(ctx, c); err == nil {
			for _, in := range instances {
				if in.Healthy {
					passing++
				}
			}
		}
		if c == bluegreen.Blue {
			m.BlueRunning, m.BluePassing = types.Int64Value(running), types.Int64Value(passing)
		} else {
			m.GreenRunning, m.GreenPassing = types.Int64Value(running), types.Int64Value(passing)
		}
	}
}

func colorSpecOf(ctx context.Context, m colorModel, diags *diag.Diagnostics) bluegreen.ColorSpec {
	spec := bluegreen.ColorSpec{Image: m.Image.ValueString(), Replicas: uint64(max(m.Replicas.ValueInt64(), 0)),
		CPULimit: m.CPULimit.ValueFloat64(), MemoryLimitMB: m.MemoryLimit.ValueInt64()}
	diags.Append(m.Env.ElementsAs(ctx, &spec.Env, true)...)
	diags.Append(m.Labels.ElementsAs(ctx, &spec.Labels, true)...)
	diags.Append(m.Command.ElementsAs(ctx, &spec.Command, true)...)
	diags.Append(m.Args.ElementsAs(ctx, &spec.Args, true)...)
	diags.Append(m.Constraints.ElementsAs(ctx, &spec.Constraints, true)...)
	if !m.Healthcheck.IsNull() && !m.Healthcheck.IsUnknown() {
		var hc healthcheckModel
		diags.Append(m.Healthcheck.As(ctx, &hc, objectAsOptions)...)
		spec.Healthcheck = &container.HealthConfig{Retries: int(hc.Retries.ValueInt64())}
		diags.Append(hc.Test.ElementsAs(ctx, &spec.Healthcheck.Test, false)...)
		spec.Healthcheck.Interval, _ = parsePositiveDuration(hc.Interval.ValueString())
		spec.Healthcheck.Timeout, _ = parsePositiveDuration(hc.Timeout.ValueString())
	}
	return spec
}

// healthcheckObject is a live healthcheck override as its attribute.
func healthcheckObject(hc *container.HealthConfig, diags *diag.Diagnostics) types.Object {
	if hc == nil || len(hc.Test) == 0 {
		return types.ObjectNull(healthcheckAttrTypes)
	}
	dur := func(d time.Duration) types.String {
		if d == 0 {
			return types.StringNull()
		}
		return types.StringValue(d.String())
	}
	retries := types.Int64Null()
	if hc.Retries > 0 {
		retries = types.Int64Value(int64(hc.Retries))
	}
	obj, d := types.ObjectValue(healthcheckAttrTypes, map[string]attr.Value{
		"test": stringListOrNull(hc.Test), "interval": dur(hc.Interval), "timeout": dur(hc.Timeout), "retries": retries,
	})
	diags.Append(d...)
	return obj
}

// colorObjectFrom is a color's live deployment as its attribute; maps and lists the
// configuration left unset stay null when the live spec has none.
func colorObjectFrom(ctx context.Context, spec bluegreen.ColorSpec, diags *diag.Diagnostics) types.Object {
	mapOrNull := func(v map[string]string) types.Map {
		if len(v) == 0 {
			return types.MapNull(types.StringType)
		}
		m, d := types.MapValueFrom(ctx, types.StringType, v)
		diags.Append(d...)
		return m
	}
	obj, d := types.ObjectValue(colorAttrTypes, map[string]attr.Value{
		"image":           types.StringValue(spec.Image),
		"replicas":        types.Int64Value(int64(spec.Replicas)),
		"env":             mapOrNull(spec.Env),
		"labels":          mapOrNull(spec.Labels),
		"command":         stringListOrNull(spec.Command),
		"args":            stringListOrNull(spec.Args),
		"constraints":     stringListOrNull(spec.Constraints),
		"healthcheck":     healthcheckObject(spec.Healthcheck, diags),
		"cpu_limit":       float64OrNull(spec.CPULimit),
		"memory_limit_mb": int64OrNull(spec.MemoryLimitMB),
	})
	diags.Append(d...)
	return obj
}

// readServiceSettings reads back from a color's live service what an import cannot know
// otherwise: the port and health path (its registrator labels) and the endpoint mode.
func readServiceSettings(m *microserviceModel, spec dockerswarm.ServiceSpec) {
	if ep := spec.EndpointSpec; ep != nil && ep.Mode != "" {
		m.EndpointMode = types.StringValue(string(ep.Mode))
	}
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return
	}
	for k, v := range cs.Labels {
		rest, ok := strings.CutPrefix(k, "SERVICE_")
		port, key, found := strings.Cut(rest, "_")
		if !ok || !found || key != "CHECK_HTTP" {
			continue
		}
		if n, err := strconv.Atoi(port); err == nil {
			m.Port, m.HealthPath = types.Int64Value(int64(n)), types.StringValue(v)
		}
	}
}

func float64OrNull(v float64) types.Float64 {
	if v == 0 {
		return types.Float64Null()
	}
	return types.Float64Value(v)
}

func int64OrNull(v int64) types.Int64 {
	if v == 0 {
		return types.Int64Null()
	}
	return types.Int64Value(v)
}

func titleColor(c bluegreen.Color) string {
	return strings.ToUpper(string(c[:1])) + string(c[1:])
}
