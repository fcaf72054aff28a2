package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/datasource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-timetypes/timetypes"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/health"
)

var (
	_ datasource.DataSource                   = &healthDataSource{}
	_ datasource.DataSourceWithConfigure      = &healthDataSource{}
	_ datasource.DataSourceWithValidateConfig = &healthDataSource{}
)

func NewHealthDataSource() datasource.DataSource { return &healthDataSource{} }

type healthDataSource struct {
	data *providerData
}

type healthModel struct {
	ID            types.String         `tfsdk:"id"`
	Host          types.String         `tfsdk:"host"`
	HostKey       types.String         `tfsdk:"host_key"`
	ConsulAddress types.String         `tfsdk:"consul_address"`
	ConsulCAPEM   types.String         `tfsdk:"consul_ca_pem"`
	ConsulToken   types.String         `tfsdk:"consul_token"`
	Service       types.String         `tfsdk:"service"`
	Tag           types.String         `tfsdk:"tag"`
	Node          types.String         `tfsdk:"node"`
	Datacenter    types.String         `tfsdk:"datacenter"`
	GracePeriod   timetypes.GoDuration `tfsdk:"grace_period"`
	Status        types.String         `tfsdk:"status"`
	Passing       types.Int64          `tfsdk:"passing"`
	Warning       types.Int64          `tfsdk:"warning"`
	Critical      types.Int64          `tfsdk:"critical"`
	Instances     types.List           `tfsdk:"instances"`
	Nodes         types.List           `tfsdk:"nodes"`
	Failing       types.List           `tfsdk:"failing"`
	ReplaceToken  types.String         `tfsdk:"replace_token"`
	Failures      types.Int64          `tfsdk:"failures"`
	Timeouts      timeouts.Value       `tfsdk:"timeouts"`
}

var (
	healthCheckType = types.ObjectType{AttrTypes: map[string]attr.Type{
		"id": types.StringType, "name": types.StringType, "status": types.StringType, "output": types.StringType,
	}}
	healthInstanceType = types.ObjectType{AttrTypes: map[string]attr.Type{
		"id": types.StringType, "service": types.StringType, "node": types.StringType, "address": types.StringType,
		"port": types.Int64Type, "tags": types.ListType{ElemType: types.StringType}, "status": types.StringType,
		"checks": types.ListType{ElemType: healthCheckType},
	}}
	healthNodeType = types.ObjectType{AttrTypes: map[string]attr.Type{
		"id": types.StringType, "name": types.StringType, "address": types.StringType, "status": types.StringType,
		"checks": types.ListType{ElemType: healthCheckType},
	}}
)

func (d *healthDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_health"
}

func (d *healthDataSource) Schema(ctx context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	checkAttrs := map[string]schema.Attribute{
		"id":     schema.StringAttribute{MarkdownDescription: "The check's ID.", Computed: true},
		"name":   schema.StringAttribute{MarkdownDescription: "The check's name (`Serf Health Status` is the agent's liveness).", Computed: true},
		"status": schema.StringAttribute{MarkdownDescription: "`passing`, `warning` or `critical`.", Computed: true},
		"output": schema.StringAttribute{MarkdownDescription: "What the check last said.", Computed: true},
	}
	checks := schema.ListNestedAttribute{MarkdownDescription: "The checks.", Computed: true,
		NestedObject: schema.NestedAttributeObject{Attributes: checkAttrs}}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Consul's view of the health of one service (optionally one tag, such as a color), one node, or a whole " +
			"datacenter, read through a node's SSH connection like the resources (no Consul port needs to be exposed).\n\n" +
			"`replace_token` drives self-healing: put it in a `terraform_data`'s `input` and list that `terraform_data` in " +
			"`lifecycle { replace_triggered_by = [...] }` of what should be replaced when the subject fails. The token moves once " +
			"per failure and never on recovery, so the failure replaces its resource exactly once and the plan after a successful " +
			"heal is empty. A failure is a subject (an instance, a node, or the scope's presence) that was seen passing and now is " +
			"critical, or one never seen passing that stays critical longer than `grace_period`: a task starting, a scale-up or " +
			"scale-down, a rolling update, a blue/green switch and swarm replacing a task move nothing.\n\n" +
			"To remember what it has seen, the data source keeps a small failure ledger in Consul's KV store under `" + health.LedgerPrefix +
			"` (an ACL token needs `key_prefix \"" + health.LedgerPrefix + "\" { policy = \"write\" }`); it is the only thing it writes. " +
			"There is one ledger per service (or node, or datacenter): `tag` is not part of it, so `tag = live_color` keeps its " +
			"token across a switch, and data sources on one service with different tags share one count: each of them observes " +
			"the whole service for the ledger (the tag only filters what it reports), so a failure is counted once whichever reads " +
			"it first. In one plan, all the data sources of one ledger (through one `host`) answer the token the first of them read: " +
			"a failure seen between their reads moves all of them in the next plan, together.\n\n" +
			"Consul without a leader does not fail the read: the catalog is read from any server (stale), nodes that the agent's " +
			"gossip sees failed are reported critical (the catalog, which only a leader updates, would still say they pass), and " +
			"since the ledger cannot be written, `replace_token` keeps its last recorded value, with a warning; the resources' own " +
			"drift detection heals in that apply, and the next run with a leader counts what is still failing.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{MarkdownDescription: "The scope, e.g. `service demo-app (tag blue) in datacenter dc1`.", Computed: true},
			"host": schema.StringAttribute{
				MarkdownDescription: "The node whose Consul agent answers, as `ssh://root@IP` (e.g. a manager's `microswarm_droplet_node.x.docker_host`). " +
					"Pick a node that is not itself guarded by this data source's token: a resource cannot be replaced by what is read through it.",
				Required:   true,
				Validators: []validator.String{hostValidator{}},
			},
			"host_key": schema.StringAttribute{
				MarkdownDescription: "The node's SSH host key, pinned (`microswarm_droplet_node.x.ssh_host_key`). Without it the provider's `host_key_policy` decides.",
				Optional:            true,
				Validators:          []validator.String{sshPublicKeyValidator{}},
			},
			"consul_address": schema.StringAttribute{
				MarkdownDescription: "The Consul HTTP API as the node sees it, `host:port`. Default: `127.0.0.1:8500`, where the Consul resources serve it (HTTPS with `tls`).",
				Optional:            true,
				Validators: []validator.String{stringCheck{"Invalid Consul Address", "must be host:port", func(s string) error {
					_, _, err := net.SplitHostPort(s)
					return err
				}}},
			},
			"consul_ca_pem": schema.StringAttribute{
				MarkdownDescription: "The CA that signed Consul's HTTPS certificate; setting it switches to HTTPS. Default: the provider's `consul_ca_pem`, " +
					"whose `consul_client_cert_pem` is presented either way.",
				Optional:   true,
				Validators: []validator.String{consulPEMValidator("certificate")},
			},
			"consul_token": schema.StringAttribute{
				MarkdownDescription: "A Consul ACL token with read on nodes and services and write on the ledger's key prefix. Default: `CONSUL_HTTP_TOKEN`, " +
					"else the token `microswarm-health` the provider makes with its `consul_management_token` (never stored). **Stored in the " +
					"Terraform state** (a data source's arguments are, and cannot be write-only): prefer the provider's `consul_management_token`.",
				Optional:  true,
				Sensitive: true,
			},
			"service": schema.StringAttribute{
				MarkdownDescription: "Report one service: its instances, as the registrator publishes them. Conflicts with `node`.",
				Optional:            true,
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"tag": schema.StringAttribute{
				MarkdownDescription: "Only the service's instances with this tag, e.g. a color (`blue`) of a `microswarm_microservice`. Needs `service`.",
				Optional:            true,
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"node": schema.StringAttribute{
				MarkdownDescription: "Report one node by its Consul node name (the droplet's name by default). Only the node's own checks " +
					"(is its agent alive) count as its failure; its services are reported too. Conflicts with `service`.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.RegexMatches(consul.NodeNamePattern, "must be a Consul node name: letters, digits and '-'")},
			},
			"datacenter": schema.StringAttribute{
				MarkdownDescription: "The datacenter to ask. Default: the agent's own. With neither `service` nor `node`, the report covers every node and instance in it.",
				Optional:            true,
				Validators:          []validator.String{stringvalidator.RegexMatches(consul.DatacenterPattern, "must be lower-case letters, digits, '_' and '-'")},
			},
			"grace_period": schema.StringAttribute{
				MarkdownDescription: "How long a subject never seen passing (a new task, a new node) may stay critical before it counts as a failure, " +
					"as a Go duration. A subject seen passing fails at once. Default: `" + health.DefaultGrace.String() + "`.",
				CustomType: timetypes.GoDurationType{},
				Optional:   true,
				Validators: []validator.String{positiveDurationValidator{}},
			},
			"status": schema.StringAttribute{
				MarkdownDescription: "The worst status in scope: `passing`, `warning` or `critical`. A service with no instance, or a node missing from the catalog, is `critical`.",
				Computed:            true,
			},
			"passing":  schema.Int64Attribute{MarkdownDescription: "How many instances in scope pass every check.", Computed: true},
			"warning":  schema.Int64Attribute{MarkdownDescription: "How many instances in scope are at worst `warning`.", Computed: true},
			"critical": schema.Int64Attribute{MarkdownDescription: "How many instances in scope have a critical check.", Computed: true},
			"instances": schema.ListNestedAttribute{
				MarkdownDescription: "The service instances in scope, with their checks (the node's included, as Consul counts them).",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"id":      schema.StringAttribute{MarkdownDescription: "The service ID (`node:container:port` from the registrator).", Computed: true},
					"service": schema.StringAttribute{MarkdownDescription: "The service name.", Computed: true},
					"node":    schema.StringAttribute{MarkdownDescription: "The Consul node it is registered on.", Computed: true},
					"address": schema.StringAttribute{MarkdownDescription: "The address it is reached at.", Computed: true},
					"port":    schema.Int64Attribute{MarkdownDescription: "The port.", Computed: true},
					"tags":    schema.ListAttribute{MarkdownDescription: "Its tags.", Computed: true, ElementType: types.StringType},
					"status":  schema.StringAttribute{MarkdownDescription: "Its aggregated status.", Computed: true},
					"checks":  checks,
				}},
			},
			"nodes": schema.ListNestedAttribute{
				MarkdownDescription: "The nodes in scope with their node-level checks.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"id":      schema.StringAttribute{MarkdownDescription: "Consul's node ID (a replaced droplet's agent has a new one).", Computed: true},
					"name":    schema.StringAttribute{MarkdownDescription: "The node name.", Computed: true},
					"address": schema.StringAttribute{MarkdownDescription: "The node's address.", Computed: true},
					"status":  schema.StringAttribute{MarkdownDescription: "The worst of its node-level checks.", Computed: true},
					"checks":  checks,
				}},
			},
			"failing": schema.ListAttribute{
				MarkdownDescription: "What is critical now, one entry per subject: `instance:NODE/ID`, `node:NAME/NODE_ID` or `missing:SCOPE` (the scope names nothing Consul knows). A subject listed here is not necessarily a counted failure yet (see `grace_period`).",
				Computed:            true,
				ElementType:         types.StringType,
			},
			"replace_token": schema.StringAttribute{
				MarkdownDescription: "Moves (`\"0\"`, `\"1\"`, ...) once each time a subject in scope that passed fails (or one that never passed outlives `grace_period`), never when it recovers, starts, goes away or the tag changes. " +
					"Follow it with `terraform_data` + `replace_triggered_by` to replace exactly once per failure.",
				Computed: true,
			},
			"failures": schema.Int64Attribute{MarkdownDescription: "How many failures the ledger has counted for this scope (the number in `replace_token`).", Computed: true},
			"timeouts": withReadDurationValidator(timeouts.AttributesWithOpts(ctx, timeouts.Opts{
				ReadDescription: "How long reading Consul (and writing the ledger) may take, as a Go duration such as `30s` or `2m`. Default: `2m`.",
			})),
		},
	}
}

func (d *healthDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig rejects a scope that names no single subject, at plan time.
func (d *healthDataSource) ValidateConfig(ctx context.Context, req datasource.ValidateConfigRequest, resp *datasource.ValidateConfigResponse) {
	var service, tag, node types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("service"), &service)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("tag"), &tag)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("node"), &node)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// A value known only at apply is set all the same.
	set := func(v types.String) string {
		if v.IsUnknown() {
			return "(known after apply)"
		}
		return v.ValueString()
	}
	var scopeErr *health.ScopeError
	if err := (health.Scope{Service: set(service), Tag: set(tag), Node: set(node)}).Validate(); errors.As(err, &scopeErr) {
		attrError(&resp.Diagnostics, path.Root(scopeErr.Field), scopeErr.Summary, scopeErr.Reason+".")
	}
}

func (d *healthDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m healthModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || d.data == nil {
		return
	}
	readTimeout, diags := m.Timeouts.Read(ctx, 2*time.Minute)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()

	scope := health.Scope{Service: m.Service.ValueString(), Tag: m.Tag.ValueString(), Node: m.Node.ValueString(), Datacenter: m.Datacenter.ValueString()}
	if err := scope.Validate(); err != nil {
		resp.Diagnostics.AddError("Invalid Health Scope", err.Error())
		return
	}
	h := d.data.reachNode(ctx, path.Root("host"), m.Host.ValueString(), &m.HostKey, mustReach, "", &resp.Diagnostics)
	if h == nil {
		return
	}
	cfg, err := healthConsulConfig(m, d.data.consul)
	if err != nil {
		attrError(&resp.Diagnostics, path.Root("consul_ca_pem"), "Invalid Consul CA", err.Error())
		return
	}
	api, err := d.data.consulReader(ctx, h, m.Host.ValueString(), cfg, consul.HealthReader)
	if err != nil {
		resp.Diagnostics.AddError("Could Not Reach Consul", err.Error())
		return
	}
	report, err := health.Read(ctx, api, scope)
	if err != nil {
		resp.Diagnostics.AddError("Could Not Read Health", fmt.Sprintf("Through %s: %s.", m.Host.ValueString(), err))
		return
	}
	if report.Leaderless {
		resp.Diagnostics.AddWarning("Consul Has No Leader", fmt.Sprintf(
			"Through %s: the catalog was read from a server without a leader and may be stale; nodes the agent's gossip sees failed "+
				"are reported critical. Restore a quorum of Consul servers (replace the failed ones).", m.Host.ValueString()))
	}
	grace := health.DefaultGrace
	if !m.GracePeriod.IsNull() {
		var diags diag.Diagnostics
		grace, diags = m.GracePeriod.ValueGoDuration()
		resp.Diagnostics.Append(diags...)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	entry, err := health.Observe(ctx, api, scope, report.Observation(grace))
	var writeErr *health.WriteError
	switch {
	case errors.As(err, &writeErr):
		// The last recorded token stands; the next run that can write counts what still fails.
		resp.Diagnostics.AddWarning("Could Not Record the Failure Ledger", fmt.Sprintf(
			"%s. replace_token keeps its last recorded value (%s) until the ledger can be written; what still fails then is counted "+
				"by that run. If Consul has a leader, give the Consul token write on key prefix %q.", err, entry.Token(), health.LedgerPrefix))
	case err != nil:
		// Without the ledger there is no token to trust: a wrong one would replace resources.
		resp.Diagnostics.AddError("Could Not Read the Failure Ledger", fmt.Sprintf("Through %s: %s.", m.Host.ValueString(), err))
		return
	}
	// Every data source of this ledger answers, in this run, the token the first one read:
	// a failure seen between their reads moves them all in the next plan, together.
	recorded := entry.Token()
	entry = d.data.ledgerTokens.Hold(m.Host.ValueString()+"\x00"+cfg.Address+"\x00"+health.LedgerKey(scope), entry)
	tflog.Debug(ctx, "health read", map[string]any{"scope": scope.String(), "status": report.Status, "failing": report.Failing,
		"token": entry.Token(), "recorded": recorded})

	m.ID = types.StringValue(scope.String())
	m.Status = types.StringValue(report.Status)
	m.Passing, m.Warning, m.Critical = types.Int64Value(int64(report.Passing)), types.Int64Value(int64(report.Warning)), types.Int64Value(int64(report.Critical))
	m.ReplaceToken = types.StringValue(entry.Token())
	m.Failures = types.Int64Value(int64(entry.Generation)) //nolint:gosec // a failure count never nears 2^63
	failing, diags := types.ListValueFrom(ctx, types.StringType, nonNil(report.Failing))
	resp.Diagnostics.Append(diags...)
	m.Failing = failing
	m.Instances = healthInstancesValue(report.Instances, &resp.Diagnostics)
	m.Nodes = healthNodesValue(report.Nodes, &resp.Diagnostics)
	if m.HostKey.IsUnknown() {
		m.HostKey = types.StringNull()
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// withReadDurationValidator checks timeouts.read at plan time, as the resources' timeouts are.
func withReadDurationValidator(a schema.Attribute) schema.Attribute {
	nested, ok := a.(schema.SingleNestedAttribute)
	if !ok {
		return a
	}
	if read, ok := nested.Attributes["read"].(schema.StringAttribute); ok {
		read.Validators = []validator.String{positiveDurationValidator{}}
		nested.Attributes = map[string]schema.Attribute{"read": read}
	}
	return nested
}

// healthConsulConfig is where the node's Consul API is and how to talk to it: the
// provider's TLS material (consul_ca_pem here overrides its CA), and a token given
// here or in CONSUL_HTTP_TOKEN (else the provider makes the reader's own).
func healthConsulConfig(m healthModel, provider *consul.Access) (conn.ConsulConfig, error) {
	access := consul.Access{}
	if provider != nil {
		access.CAPEM, access.CertPEM, access.KeyPEM = provider.CAPEM, provider.CertPEM, provider.KeyPEM
	}
	if ca := m.ConsulCAPEM.ValueString(); ca != "" {
		access.CAPEM = ca
	}
	cfg, err := access.Config(m.ConsulAddress.ValueString())
	if err != nil {
		return cfg, fmt.Errorf("consul_ca_pem (or the provider's Consul TLS settings): %w", err)
	}
	cfg.Token = m.ConsulToken.ValueString()
	if cfg.Token == "" {
		cfg.Token = os.Getenv("CONSUL_HTTP_TOKEN")
	}
	return cfg, nil
}

func healthChecksValue(checks []health.Check, diags *diag.Diagnostics) types.List {
	values := make([]attr.Value, 0, len(checks))
	for _, c := range checks {
		values = append(values, objectValue(healthCheckType, map[string]attr.Value{
			"id": types.StringValue(c.ID), "name": types.StringValue(c.Name), "status": types.StringValue(c.Status), "output": types.StringValue(c.Output),
		}, diags))
	}
	return listValue(healthCheckType, values, diags)
}

func healthInstancesValue(instances []health.Instance, diags *diag.Diagnostics) types.List {
	values := make([]attr.Value, 0, len(instances))
	for _, in := range instances {
		tags := make([]attr.Value, 0, len(in.Tags))
		for _, t := range in.Tags {
			tags = append(tags, types.StringValue(t))
		}
		values = append(values, objectValue(healthInstanceType, map[string]attr.Value{
			"id": types.StringValue(in.ID), "service": types.StringValue(in.Service), "node": types.StringValue(in.Node),
			"address": types.StringValue(in.Address), "port": types.Int64Value(int64(in.Port)),
			"tags": listValue(types.StringType, tags, diags), "status": types.StringValue(in.Status),
			"checks": healthChecksValue(in.Checks, diags),
		}, diags))
	}
	return listValue(healthInstanceType, values, diags)
}

func healthNodesValue(nodes []health.Node, diags *diag.Diagnostics) types.List {
	values := make([]attr.Value, 0, len(nodes))
	for _, n := range nodes {
		values = append(values, objectValue(healthNodeType, map[string]attr.Value{
			"id": types.StringValue(n.ID), "name": types.StringValue(n.Name), "address": types.StringValue(n.Address),
			"status": types.StringValue(n.Status), "checks": healthChecksValue(n.Checks, diags),
		}, diags))
	}
	return listValue(healthNodeType, values, diags)
}

func objectValue(t types.ObjectType, values map[string]attr.Value, diags *diag.Diagnostics) types.Object {
	v, d := types.ObjectValue(t.AttrTypes, values)
	diags.Append(d...)
	return v
}

func listValue(elem attr.Type, values []attr.Value, diags *diag.Diagnostics) types.List {
	v, d := types.ListValue(elem, values)
	diags.Append(d...)
	return v
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
