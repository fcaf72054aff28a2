package provider

import (
	"context"
	"fmt"
	"regexp"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/float64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/microswarm/terraform-provider-microswarm/internal/bluegreen"
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

var (
	microserviceNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	healthPathPattern       = regexp.MustCompile(`^/[^\s"']*$`)
)

func colorNames() []string { return stringsOf(bluegreen.Colors) }

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
				MarkdownDescription: fmt.Sprintf("How many tasks, at most %d (every proxy has a slot for each). Default: `1`.", bluegreen.MaxReplicas),
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(1),
				Validators:          []validator.Int64{int64validator.Between(0, bluegreen.MaxReplicas)},
			},
			"env": schema.MapAttribute{
				MarkdownDescription: "Environment variables of the tasks.",
				Optional:            true, ElementType: types.StringType,
			},
			"labels": schema.MapAttribute{
				MarkdownDescription: "Container labels of the tasks (registrator `SERVICE_*` keys among them), read back as given. The " +
					"provider's own keys (`SERVICE_<port>_NAME`, `_CHECK_HTTP`, `_CHECK_INTERVAL`, `_CHECK_TIMEOUT` and `microswarm.*`) are refused.",
				Optional: true, ElementType: types.StringType,
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
			"or changed out of band. A proxy (HAProxy 2.6 or later, the official image's user and entrypoint) has a server slot for " +
			"every possible task (100 per color), and sends a color's share to the other color while the color has no usable server.\n\n" +
			"**When something fails.** After any apply, whatever failed, every proxy the provider could reach routes to one color, " +
			"the state says which, and the next apply converges to the configuration:\n" +
			"- a gate that fails, or a map file that cannot be written, changes nothing;\n" +
			"- a flip that fails on any proxy (refused, cut off, or timed out after taking effect) sends every proxy, that one " +
			"included, back to the old color and fails the apply (`Switch Failed`); the state keeps the old color, so the next apply " +
			"tries the switch again;\n" +
			"- a rollback (`auto_rollback`, or a watch cut short by an interrupt or the deadline) only ever moves proxies to the old " +
			"color, retries a proxy that fails for up to 30 s, and names any proxy it could not reach;\n" +
			"- a proxy node that does not answer at all is left out of a switch with a warning; it keeps its last route, and once it " +
			"answers again the refresh shows `live_color = \"mixed\"` and the next apply brings it to the configured color;\n" +
			"- `auto_rollback` is refused, changing nothing, when `timeouts.update` leaves too little time for its window and a " +
			"rollback;\n" +
			"- a delete whose manager does not answer fails rather than forget services that may still run. A delete removes the " +
			"proxy and both colors at once and returns when their tasks have stopped, then removes the network. Once no proxy " +
			"holds a request in flight (waited for at most 3 s), every proxy node kills its tasks of them rather than wait out " +
			"swarm's graceful stop (a 2 s pause, then each color's drain time after SIGTERM), so no open request is cut; with " +
			"a proxy busy past that or not answering, and on nodes that run no proxy, tasks stop the graceful way. A task counts " +
			"as stopped when swarm reports it so or when its node's engine saw its container stopped (swarm hears of a kill " +
			"only after its own 2 s pause).",
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
				MarkdownDescription: "A swarm manager's Docker host, `ssh://root@IP`. Its Consul agent (127.0.0.1:8500 on that node) is the health gate: " +
					"over HTTPS with the provider's `consul_ca_pem` (and client certificate), and with ACLs on, with the least-privilege " +
					"token `microswarm-gate` the provider makes with its `consul_management_token` (never stored).",
				Required:   true,
				Validators: []validator.String{hostValidator{}},
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
				MarkdownDescription: "The port the proxy answers on, on every proxy node. Changes in place: the new proxies start before " +
					"the old ones stop (start-first), one node at a time, so on every node one of the two ports answers throughout. Default: `80`.",
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
				MarkdownDescription: "The HAProxy image (2.6 or later; the official image's entrypoint and user, or one that behaves alike). Changes in " +
					"place with no connection refused: on every node a stand-in proxy takes the listen port's new connections (a NAT " +
					"rule) while the proxy is replaced, starting from the servers' state the old one saved; the stand-in goes once the " +
					"new proxy answers everywhere. Each old proxy, and then the stand-in, stops only once its node's connection tracking " +
					"holds none of its connections (the kernel keeps a closed one two minutes; Docker deletes a stopping container's " +
					"entries, and with them, as seen, a new connection that reused a client port of one of them): a change takes about " +
					"four minutes, most of it those two waits (each at most 150 s: a node that cannot say, or never forgets, holds it that long and no longer). An interrupted change is finished by the next apply. Default: `" + defaultProxyImage + "`.",
				Optional: true, Computed: true,
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
			"timeouts": withDurationValidators(timeouts.Attributes(ctx, timeouts.Opts{Create: true, Read: true, Update: true, Delete: true,
				ReadDescription:   readTimeoutDescription,
				CreateDescription: "How long creating may take: both colors running, the proxies up, the active color healthy. Default: `10m`.",
				UpdateDescription: "How long an update may take, a switch with its drain and watch included. Default: `15m`.",
				DeleteDescription: "How long removing may take. Default: `5m`."})),
		},
	}
}
