package provider

import (
	"context"
	"regexp"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-timetypes/timetypes"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/microswarm/terraform-provider-microswarm/internal/swarm"
)

func swarmRoleNames() []string { return stringsOf(swarm.Roles) }

func swarmAvailabilityNames() []string { return stringsOf(swarm.Availabilities) }

func (r *swarmClusterResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = swarmClusterSchema(ctx)
}

// swarmClusterSchema is the schema, version 1: version 0 also held the join tokens and
// the unlock key (see swarm_cluster_upgrade.go).
func swarmClusterSchema(ctx context.Context) schema.Schema {
	return schema.Schema{
		Version: 1,
		MarkdownDescription: "A Docker swarm-mode cluster over a set of Docker hosts, built through the Docker API: `swarm init` on the first " +
			"manager (in key order), then every other entry of `nodes` joins. Membership changes in place: a new entry joins; a removed entry " +
			"is drained, its tasks move, it leaves and disappears from `docker node ls`; a changed `role` promotes or demotes. Manager changes " +
			"go one manager at a time so the raft quorum holds at every step. A failed create is not recorded: the next apply adopts the " +
			"swarm it left and joins the rest. Refresh reports nodes that are down or left, and the next apply brings them back. " +
			"Delete takes the whole swarm away, so there is no quorum to keep: every node leaves with force, the workers at once, then " +
			"the managers at once (a worker leaving beside the managers may wait out Docker's 5 s bound on releasing its ingress " +
			"network); a node that does not answer is a warning (a node that is gone has nothing to leave), the manager that answered " +
			"and does not leave is an error and the state keeps the swarm (the next destroy finds the others out). " +
			"No secret of the swarm is kept in the state: the join tokens are read from a manager when a node joins, and with `autolock` " +
			"a locked manager is unlocked with the key an unlocked manager reports (keep the unlock key outside Terraform too, e.g. " +
			"`docker swarm unlock-key -q` into your secret store: with every manager locked, only it can unlock one). " +
			"States written before version 1 of this schema held them; they are dropped on upgrade.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The swarm's ID (`docker info --format '{{.Swarm.Cluster.ID}}'`).",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"nodes": schema.MapNestedAttribute{
				MarkdownDescription: "The swarm's nodes, keyed by a name of your choosing (`m1`, `w1`, ...), which keeps diffs stable: changing an " +
					"entry's `role` promotes or demotes that node in place; adding or removing an entry joins or removes only that node. " +
					"At least one entry must be a manager; the first manager in key order initialises the swarm. Changing an entry's `host` or " +
					"`advertise_addr` makes the new node join and the old one leave. An even number of managers draws a warning.",
				Required: true,
				Validators: []validator.Map{
					mapvalidator.SizeAtLeast(1),
					mapvalidator.KeysAre(stringvalidator.RegexMatches(nodeKeyPattern, "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")),
				},
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"host": schema.StringAttribute{
						MarkdownDescription: "How to reach the node's Docker engine: `ssh://root@IP` (e.g. `microswarm_droplet_node.x.docker_host`), " +
							"`unix:///var/run/docker.sock` or `tcp://IP:2376`.",
						Required:   true,
						Validators: []validator.String{hostValidator{}},
					},
					"host_key": schema.StringAttribute{
						MarkdownDescription: "The node's SSH host key, pinned (`microswarm_droplet_node.x.ssh_host_key`). Without it the provider's " +
							"`ssh_known_hosts_file` and `host_key_policy` decide on first contact, and the key they accepted is recorded here " +
							"and pinned from then on (until the entry's `host` changes).",
						Optional:      true,
						Computed:      true,
						PlanModifiers: []planmodifier.String{recordedHostKeyModifier{}},
						Validators:    []validator.String{sshPublicKeyValidator{}},
					},
					"advertise_addr": schema.StringAttribute{
						MarkdownDescription: "The address the node advertises to the swarm, `IP`, `IP:port` or an interface name: use the private " +
							"address (`microswarm_droplet_node.x.ipv4_address_private`) so swarm traffic stays in the VPC. The node also listens for " +
							"swarm management on this address only (its port, else 2377), not on every interface. Changing it re-joins the node.",
						Required:   true,
						Validators: []validator.String{advertiseAddrValidator()},
					},
					"role": schema.StringAttribute{
						MarkdownDescription: "The node's role, " + describeOneOf(swarmRoleNames()) + ". Changing it promotes or demotes the node in place.",
						Required:            true,
						Validators:          []validator.String{stringvalidator.OneOf(swarmRoleNames()...)},
					},
					"availability": schema.StringAttribute{
						MarkdownDescription: "Whether the scheduler places tasks on the node, " + describeOneOf(swarmAvailabilityNames()) +
							". Changes in place. Default: `active`.",
						Optional:   true,
						Computed:   true,
						Default:    stringdefault.StaticString(string(swarm.AvailabilityActive)),
						Validators: []validator.String{stringvalidator.OneOf(swarmAvailabilityNames()...)},
					},
					"node_id": schema.StringAttribute{
						MarkdownDescription: "The node's swarm ID. It changes when the node has to join again.",
						Computed:            true,
						PlanModifiers:       []planmodifier.String{sameNodeModifier{}},
					},
					"hostname": schema.StringAttribute{
						MarkdownDescription: "The node's hostname, as `docker node ls` shows it.",
						Computed:            true,
						PlanModifiers:       []planmodifier.String{sameNodeModifier{}},
					},
					"state": schema.StringAttribute{
						MarkdownDescription: "The node's state as the managers see it, " + describeOneOf(swarm.States) + " (`left`: no longer in the " +
							"node list). Anything but `ready` after a refresh plans an update that reaches the node and re-joins it if it left.",
						Computed:      true,
						PlanModifiers: []planmodifier.String{readyStateModifier{}},
					},
					"manager_reachability": schema.StringAttribute{
						MarkdownDescription: "For managers, whether the raft group reaches the node: `reachable`, `unreachable` or `unknown`; null for workers.",
						Computed:            true,
						PlanModifiers:       []planmodifier.String{reachabilityModifier{}},
					},
				}},
			},
			"default_addr_pool": schema.ListAttribute{
				MarkdownDescription: "Address pools, in CIDR form, that overlay networks' subnets are carved from. Default: Docker's, `10.0.0.0/8`. " +
					"Set at init only: changing it replaces the swarm.",
				Optional:    true,
				Computed:    true,
				ElementType: types.StringType,
				Validators:  []validator.List{listvalidator.SizeAtLeast(1), addrPoolsValidator{}},
				PlanModifiers: []planmodifier.List{
					listplanmodifier.UseStateForUnknown(), listplanmodifier.RequiresReplace(),
				},
			},
			"subnet_size": schema.Int64Attribute{
				MarkdownDescription: "Prefix length of each overlay network's subnet taken from `default_addr_pool`, at most `29` and no shorter " +
					"than a pool's own prefix. Default: Docker's, `24`. Set at init only: changing it replaces the swarm.",
				Optional:   true,
				Computed:   true,
				Validators: []validator.Int64{int64validator.Between(1, swarm.MaxSubnetSize)},
				PlanModifiers: []planmodifier.Int64{
					int64planmodifier.UseStateForUnknown(), int64planmodifier.RequiresReplace(),
				},
			},
			"data_path_port": schema.Int64Attribute{
				MarkdownDescription: "UDP port of the overlay networks' VXLAN traffic, 1024-49151. Default: Docker's, `4789`. " +
					"Set at init only: changing it replaces the swarm.",
				Optional:   true,
				Computed:   true,
				Validators: []validator.Int64{int64validator.Between(1024, 49151)},
				PlanModifiers: []planmodifier.Int64{
					int64planmodifier.UseStateForUnknown(), int64planmodifier.RequiresReplace(),
				},
			},
			"task_history_limit": schema.Int64Attribute{
				MarkdownDescription: "How many finished tasks the swarm keeps per slot. Changes in place. Default: `5`.",
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(defaultTaskHistoryLimit),
				Validators:          []validator.Int64{int64validator.AtLeast(0)},
			},
			"autolock": schema.BoolAttribute{
				MarkdownDescription: "Encrypt the managers' raft keys with an unlock key that a restarted manager needs before it " +
					"rejoins; the provider unlocks managers it finds locked with the key an unlocked manager reports (it never stores the key). Changes in place. Default: `false`.",
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
			},
			"cert_expiry": schema.StringAttribute{
				MarkdownDescription: "How long node certificates are valid, as a Go duration of at least `1h` (`2160h` is 90 days). " +
					"Changes in place. Default: `" + defaultCertExpiry + "`.",
				CustomType: timetypes.GoDurationType{},
				Optional:   true,
				Computed:   true,
				Default:    stringdefault.StaticString(defaultCertExpiry),
				Validators: []validator.String{minDurationValidator{min: minCertExpiry}},
			},
			"rotate_join_tokens": schema.StringAttribute{
				MarkdownDescription: "Any value; changing it (to a date, a counter...) rotates both join tokens in place, so leaked tokens stop " +
					"working. Nodes already in the swarm are not affected. The tokens themselves are never in the state.",
				Optional: true,
			},
			"timeouts": withDurationValidators(timeouts.Attributes(ctx, timeouts.Opts{Create: true, Read: true, Update: true, Delete: true,
				ReadDescription:   readTimeoutDescription,
				CreateDescription: "How long creating may take: init, every join, and waiting for nodes to be ready. Default: `10m`.",
				UpdateDescription: "How long an update may take, including draining removed nodes until their tasks have moved. Default: `20m`.",
				DeleteDescription: "How long taking the swarm apart may take. Default: `10m`."})),
		},
	}
}

var nodeKeyPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
