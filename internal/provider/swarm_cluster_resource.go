package provider

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-timetypes/timetypes"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
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

func (r *swarmClusterResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_swarm_cluster"
}

func swarmRoleNames() []string         { return stringsOf(swarm.Roles) }
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
			"timeouts": withDurationValidators(timeouts.Attributes(ctx, timeouts.Opts{Create: true, Update: true, Delete: true,
				CreateDescription: "How long creating may take: init, every join, and waiting for nodes to be ready. Default: `10m`.",
				UpdateDescription: "How long an update may take, including draining removed nodes until their tasks have moved. Default: `20m`.",
				DeleteDescription: "How long taking the swarm apart may take. Default: `10m`."})),
		},
	}
}

var nodeKeyPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

func (r *swarmClusterResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

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
		resp.Diagnostics.AddAttributeError(path.Root("nodes"), "No Swarm Manager",
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
				resp.Diagnostics.AddAttributeError(path.Root("nodes").AtMapKey(key).AtName("host"), "Missing SSH Private Key",
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
		resp.Diagnostics.AddAttributeWarning(path.Root("nodes"), "Even Number of Swarm Managers", msg)
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
			resp.Diagnostics.AddAttributeWarning(path.Root("nodes").AtMapKey(m.Key), "Swarm Node Not Ready", fmt.Sprintf(
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
func (r *swarmClusterResource) cluster(seen map[string]string) *swarm.Cluster {
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
			if seen != nil {
				seen[t.Host] = h.HostKey()
			}
			return h.Docker()
		},
		Log: func(ctx context.Context, msg string, fields map[string]any) { tflog.Info(ctx, msg, fields) },
	}
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
