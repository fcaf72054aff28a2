package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/docker/docker/client"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// Shared by microswarm_consul_server and microswarm_consul_agent.

// consulContainerModel holds the attributes both resources share.
type consulContainerModel struct {
	ID            types.String   `tfsdk:"id"`
	Host          types.String   `tfsdk:"host"`
	HostKey       types.String   `tfsdk:"host_key"`
	ContainerName types.String   `tfsdk:"container_name"`
	Image         types.String   `tfsdk:"image"`
	Datacenter    types.String   `tfsdk:"datacenter"`
	NodeName      types.String   `tfsdk:"node_name"`
	AdvertiseAddr types.String   `tfsdk:"advertise_addr"`
	ClientAddr    types.String   `tfsdk:"client_addr"`
	RetryJoin     types.List     `tfsdk:"retry_join"`
	UI            types.Bool     `tfsdk:"ui"`
	Encrypt       types.String   `tfsdk:"encrypt"`
	EncryptWO     types.String   `tfsdk:"encrypt_wo"`
	EncryptWOVer  types.Int64    `tfsdk:"encrypt_wo_version"`
	ACL           types.Object   `tfsdk:"acl"`
	ACLTokenWO    types.String   `tfsdk:"acl_token_wo"`
	ACLTokenWOVer types.Int64    `tfsdk:"acl_token_wo_version"`
	ACLAgentToken types.String   `tfsdk:"acl_agent_token_accessor"`
	TLS           types.Object   `tfsdk:"tls"`
	Ports         types.Object   `tfsdk:"ports"`
	ContainerID   types.String   `tfsdk:"container_id"`
	HTTPAddr      types.String   `tfsdk:"http_addr"`
	NodeID        types.String   `tfsdk:"node_id"`
	Running       types.Bool     `tfsdk:"running"`
	ConfigHash    types.String   `tfsdk:"config_hash"`
	Timeouts      timeouts.Value `tfsdk:"timeouts"`
}

type consulACLModel struct {
	DefaultPolicy types.String `tfsdk:"default_policy"`
}

type consulTLSModel struct {
	CAPEM                types.String `tfsdk:"ca_pem"`
	CertPEM              types.String `tfsdk:"cert_pem"`
	KeyPEM               types.String `tfsdk:"key_pem"`
	KeyPEMWO             types.String `tfsdk:"key_pem_wo"`
	VerifyIncoming       types.Bool   `tfsdk:"verify_incoming"`
	VerifyOutgoing       types.Bool   `tfsdk:"verify_outgoing"`
	VerifyServerHostname types.Bool   `tfsdk:"verify_server_hostname"`
}

// consulPort describes one listener in the ports attribute.
type consulPort struct {
	name        string
	description string
	mayDisable  bool
	get         func(*consul.Ports) *int
}

var consulPortList = []consulPort{
	{"http", "HTTP API (HTTPS when `tls` is set, and plain HTTP is then off)", false, func(p *consul.Ports) *int { return &p.HTTP }},
	{"dns", "DNS interface", true, func(p *consul.Ports) *int { return &p.DNS }},
	{"serf_lan", "LAN gossip (TCP and UDP); `retry_join` entries must name it as `IP:PORT` when it is not 8301", false, func(p *consul.Ports) *int { return &p.SerfLAN }},
	{"server", "server RPC", false, func(p *consul.Ports) *int { return &p.Server }},
	{"serf_wan", "WAN gossip", true, func(p *consul.Ports) *int { return &p.SerfWAN }},
	{"grpc_tls", "gRPC with TLS (Envoy xDS, peering)", true, func(p *consul.Ports) *int { return &p.GRPCTLS }},
}

// consulPortsOf lists the listeners a role has.
func consulPortsOf(role consul.Role) []consulPort {
	if role == consul.RoleServer {
		return consulPortList
	}
	return consulPortList[:3]
}

func consulPortsAttrTypes(role consul.Role) map[string]attr.Type {
	out := map[string]attr.Type{}
	for _, p := range consulPortsOf(role) {
		out[p.name] = types.Int64Type
	}
	return out
}

func consulPortsValue(role consul.Role, ports consul.Ports) types.Object {
	values := map[string]attr.Value{}
	for _, p := range consulPortsOf(role) {
		values[p.name] = types.Int64Value(int64(*p.get(&ports)))
	}
	return types.ObjectValueMust(consulPortsAttrTypes(role), values)
}

func consulRoleNoun(role consul.Role) string {
	if role == consul.RoleServer {
		return "server"
	}
	return "client agent"
}

// consulSchemaAttributes are the attributes both resources share.
func consulSchemaAttributes(ctx context.Context, role consul.Role) map[string]schema.Attribute {
	noun := consulRoleNoun(role)
	inPlace := "Changes in place: the container is recreated on the same data volume"
	if role == consul.RoleServer {
		inPlace += ", one server at a time across the cluster, never while another server is unhealthy (a rolling restart that keeps quorum)"
	}
	inPlace += "."
	defaultName := consul.DefaultAgentContainerName
	if role == consul.RoleServer {
		defaultName = consul.DefaultServerContainerName
	}
	portAttrs := map[string]schema.Attribute{}
	defaults := consul.DefaultPorts(role)
	for _, p := range consulPortsOf(role) {
		def := *p.get(&defaults)
		desc := fmt.Sprintf("Port of the %s. Default: `%d`.", p.description, def)
		validators := []validator.Int64{int64validator.Between(1, 65535)}
		if p.mayDisable {
			desc += " `-1` turns it off."
			validators = []validator.Int64{int64validator.Any(int64validator.Between(1, 65535), int64validator.OneOf(consul.PortDisabled))}
		}
		portAttrs[p.name] = schema.Int64Attribute{
			MarkdownDescription: desc, Optional: true, Computed: true,
			Default: int64default.StaticInt64(int64(def)), Validators: validators,
		}
	}
	attrs := map[string]schema.Attribute{
		"id": schema.StringAttribute{
			MarkdownDescription: "`HOST,CONTAINER_NAME`, also the import ID.",
			Computed:            true,
			PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
		},
		"host": schema.StringAttribute{
			MarkdownDescription: "The Docker host of the node: `ssh://root@IP` (pass `microswarm_droplet_node.x.docker_host`), " +
				"`unix:///var/run/docker.sock` or `tcp://IP:PORT`. Changing it replaces the " + noun + ".",
			Required:      true,
			Validators:    []validator.String{hostValidator{}},
			PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
		},
		"host_key": schema.StringAttribute{
			MarkdownDescription: "The node's pinned SSH host key (pass `microswarm_droplet_node.x.ssh_host_key`). When unset, the provider's " +
				"known_hosts file and `host_key_policy` decide, and the key seen is recorded here and pinned from then on. " +
				"After an import too, only known_hosts or `host_key_policy` vouch for an unpinned key (`strict` refuses it); the key accepted is recorded: set it in the config. Changing it replaces the " + noun + ".",
			Optional:      true,
			Computed:      true,
			Validators:    []validator.String{sshPublicKeyValidator{}},
			PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown(), stringplanmodifier.RequiresReplaceIfConfigured()},
		},
		"container_name": schema.StringAttribute{
			MarkdownDescription: "Name of the container; its data volume is `<container_name>-data`. Default: `" + defaultName + "`. Changing it replaces the " + noun + ".",
			Optional:            true,
			Computed:            true,
			Default:             stringdefault.StaticString(defaultName),
			Validators:          []validator.String{stringvalidator.RegexMatches(consul.ContainerNamePattern(), "must be a Docker container name: letters, digits, '_', '.' and '-'")},
			PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
		},
		"image": schema.StringAttribute{
			MarkdownDescription: "The Consul image. It must work like the official one: its entrypoint runs `agent ARGS` as `consul agent -data-dir=/consul/data -config-dir=/consul/config ARGS`, " +
				"as the user that `CONSUL_UID`/`CONSUL_GID` name (the provider sets 100/1000, the official image's `consul` user, and copies the agent's files in as theirs), and its binary is at `/bin/consul`. Pulled if the node lacks it. " +
				"Default: `" + consul.DefaultImage + "`. " + inPlace,
			Optional:   true,
			Computed:   true,
			Default:    stringdefault.StaticString(consul.DefaultImage),
			Validators: []validator.String{imageValidator()},
		},
		"datacenter": schema.StringAttribute{
			MarkdownDescription: "Consul datacenter; every agent of a cluster names the same one. Default: `" + consul.DefaultDatacenter + "`. Changing it replaces the " + noun + " (and its data).",
			Optional:            true,
			Computed:            true,
			Default:             stringdefault.StaticString(consul.DefaultDatacenter),
			Validators:          []validator.String{stringvalidator.RegexMatches(consul.DatacenterPattern, "must be lower-case letters, digits, '_' and '-'")},
			PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
		},
		"node_name": schema.StringAttribute{
			MarkdownDescription: "Consul node name, unique in the cluster. Default: the node's hostname (the droplet name). Changing it replaces the " + noun + ".",
			Optional:            true,
			Validators:          []validator.String{stringvalidator.RegexMatches(consul.NodeNamePattern, "must be letters, digits and '-', at most 63, as in a DNS label")},
			PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
		},
		"advertise_addr": schema.StringAttribute{
			MarkdownDescription: "The address the agent binds to and advertises to the cluster: pass `microswarm_droplet_node.x.ipv4_address_private`. Changing it replaces the " + noun + ".",
			Required:            true,
			Validators:          []validator.String{consulAdvertiseValidator()},
			PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
		},
		"client_addr": schema.StringAttribute{
			MarkdownDescription: "The address the HTTP API and DNS listen on. Default: `" + consul.DefaultClientAddr + "`: the provider reaches the API through SSH, " +
				"so it never needs to be exposed. " + inPlace,
			Optional:   true,
			Computed:   true,
			Default:    stringdefault.StaticString(consul.DefaultClientAddr),
			Validators: []validator.String{consulIPValidator()},
		},
		"ui": schema.BoolAttribute{
			MarkdownDescription: "Serve the web UI on the HTTP API port. Default: `false`. " + inPlace,
			Optional:            true,
			Computed:            true,
			Default:             booldefault.StaticBool(false),
		},
		"tls": schema.SingleNestedAttribute{
			MarkdownDescription: "TLS for RPC between agents and for the HTTP API, which is then HTTPS on `ports.http` (gossip is protected by `encrypt`). The PEMs are copied into the container; the provider " +
				"verifies the API with `ca_pem` and presents `cert_pem` as its client certificate, so the certificate must be valid for `127.0.0.1` " +
				"(as `consul tls cert create` makes them) and allow client authentication. " + inPlace + " Not read back after an import.",
			Optional: true,
			Attributes: map[string]schema.Attribute{
				"ca_pem": schema.StringAttribute{
					MarkdownDescription: "PEM CA certificate(s) that signed the agents' certificates.",
					Required:            true,
					Validators:          []validator.String{consulPEMValidator("certificate")},
				},
				"cert_pem": schema.StringAttribute{
					MarkdownDescription: "PEM certificate of this agent (`server.<datacenter>.consul` for servers when `verify_server_hostname` is on).",
					Required:            true,
					Validators:          []validator.String{consulPEMValidator("certificate")},
				},
				"key_pem": schema.StringAttribute{
					MarkdownDescription: "PEM private key of `cert_pem`. **Stored in the Terraform state** (`Sensitive` only hides it in output): " +
						"prefer `key_pem_wo` with Terraform 1.11 or later. Exactly one of `key_pem` and `key_pem_wo`.",
					Optional:   true,
					Sensitive:  true,
					Validators: []validator.String{consulPEMValidator("private key")},
				},
				"key_pem_wo": schema.StringAttribute{
					MarkdownDescription: "PEM private key of `cert_pem`, **write-only**: Terraform (1.11 or later) passes it to the provider at apply and " +
						"never stores it in the state or the plan; feed it from an `ephemeral = true` variable. It is written (mode 0600) into the " +
						"container, and the provider reads it back from there, over its own connection, whenever it talks to the agent later (a refresh, " +
						"a rolling restart, the leave on destroy); if it cannot (the container was changed by hand), a refresh keeps the last known status " +
						"and the leave on destroy is skipped with a warning, as for an unreachable agent. A new key comes with a new `cert_pem`, and that change is what makes the apply " +
						"write it: Terraform cannot see a write-only value change. Moving the same key from `key_pem` to `key_pem_wo` recreates " +
						"the container in place.",
					Optional:   true,
					WriteOnly:  true,
					Sensitive:  true,
					Validators: []validator.String{consulPEMValidator("private key")},
				},
				"verify_incoming": schema.BoolAttribute{
					MarkdownDescription: "Require and verify client certificates on RPC and HTTPS. Default: `true`.",
					Optional:            true, Computed: true, Default: booldefault.StaticBool(true),
				},
				"verify_outgoing": schema.BoolAttribute{
					MarkdownDescription: "Verify the certificates of servers this agent connects to. Default: `true`.",
					Optional:            true, Computed: true, Default: booldefault.StaticBool(true),
				},
				"verify_server_hostname": schema.BoolAttribute{
					MarkdownDescription: "Require servers' certificates to name `server.<datacenter>.consul`. Default: `true`.",
					Optional:            true, Computed: true, Default: booldefault.StaticBool(true),
				},
			},
		},
		"ports": schema.SingleNestedAttribute{
			MarkdownDescription: "The agent's listeners on the node (the container shares the node's network). Defaults are Consul's. " + inPlace,
			Optional:            true,
			Computed:            true,
			Default:             objectdefault.StaticValue(consulPortsValue(role, consul.DefaultPorts(role))),
			Attributes:          portAttrs,
		},
		"container_id": schema.StringAttribute{
			MarkdownDescription: "ID of the container; it changes whenever the container is recreated.",
			Computed:            true,
		},
		"http_addr": schema.StringAttribute{
			MarkdownDescription: "The agent's API as seen from the node, in `CONSUL_HTTP_ADDR` form: `127.0.0.1:8500`, or `https://127.0.0.1:8500` with `tls`.",
			Computed:            true,
		},
		"node_id": schema.StringAttribute{
			MarkdownDescription: "Consul node ID. It lives on the data volume, so it survives in-place updates.",
			Computed:            true,
		},
		"running": schema.BoolAttribute{
			MarkdownDescription: "Whether the container is running. A container stopped outside Terraform reads as `false`, and the plan starts it again (an in-place update).",
			Computed:            true,
		},
		"config_hash": schema.StringAttribute{
			MarkdownDescription: "SHA-256 of everything the container is made from (also a container label), so a container whose config drifted is recreated.",
			Computed:            true,
		},
		"timeouts": withDurationValidators(timeouts.Attributes(ctx, timeouts.Opts{Create: true, Update: true, Delete: true,
			CreateDescription: "How long creating may take, including the wait for the " + noun + " to join. Default: `10m`.",
			UpdateDescription: "How long an update may take, including waiting for the rolling-restart lock. Default: `20m`.",
			DeleteDescription: "How long the graceful leave and removal may take. Default: `5m`."})),
	}
	for name, a := range consulSecretAttributes(noun) {
		attrs[name] = a
	}
	return attrs
}

// consulSpecOf maps a model to a spec. ok is false while a value is unknown (at plan time).
func consulSpecOf(ctx context.Context, role consul.Role, m consulContainerModel, bootstrapExpect types.Int64, diags *diag.Diagnostics) (spec consul.Spec, ok bool) {
	values := []attr.Value{m.ContainerName, m.Image, m.Datacenter, m.NodeName, m.AdvertiseAddr, m.ClientAddr, m.RetryJoin, m.UI, m.Encrypt, m.EncryptWOVer, m.TLS, m.ACL, m.ACLTokenWOVer, m.Ports, bootstrapExpect}
	for _, v := range values {
		if v.IsUnknown() {
			return consul.Spec{}, false
		}
	}
	spec = consul.Spec{
		Role:            role,
		ContainerName:   m.ContainerName.ValueString(),
		Image:           m.Image.ValueString(),
		Datacenter:      m.Datacenter.ValueString(),
		NodeName:        m.NodeName.ValueString(),
		AdvertiseAddr:   m.AdvertiseAddr.ValueString(),
		ClientAddr:      m.ClientAddr.ValueString(),
		BootstrapExpect: int(bootstrapExpect.ValueInt64()),
		UI:              m.UI.ValueBool(),
		Encrypt:         m.Encrypt.ValueString(),
		// The write-only key itself is never in a plan or state: consulPrepare adds it.
		EncryptWriteOnly: !m.EncryptWOVer.IsNull(),
		Ports:            consul.DefaultPorts(role),
	}
	if !m.RetryJoin.IsNull() {
		var joins []types.String
		diags.Append(m.RetryJoin.ElementsAs(ctx, &joins, false)...)
		for _, j := range joins {
			if j.IsUnknown() {
				return consul.Spec{}, false
			}
			spec.RetryJoin = append(spec.RetryJoin, j.ValueString())
		}
	}
	if !m.Ports.IsNull() {
		attrs := m.Ports.Attributes()
		for _, p := range consulPortsOf(role) {
			v, _ := attrs[p.name].(types.Int64)
			if v.IsUnknown() {
				return consul.Spec{}, false
			}
			if !v.IsNull() {
				*p.get(&spec.Ports) = int(v.ValueInt64())
			}
		}
	}
	if !m.ACL.IsNull() {
		var a consulACLModel
		diags.Append(m.ACL.As(ctx, &a, basetypes.ObjectAsOptions{})...)
		if a.DefaultPolicy.IsUnknown() {
			return consul.Spec{}, false
		}
		// The token itself is write-only: consulPrepare adds it.
		spec.ACL = &consul.ACL{DefaultPolicy: a.DefaultPolicy.ValueString()}
	}
	if !m.TLS.IsNull() {
		var t consulTLSModel
		diags.Append(m.TLS.As(ctx, &t, basetypes.ObjectAsOptions{})...)
		for _, v := range []attr.Value{t.CAPEM, t.CertPEM, t.KeyPEM, t.KeyPEMWO, t.VerifyIncoming, t.VerifyOutgoing, t.VerifyServerHostname} {
			if v.IsUnknown() {
				return consul.Spec{}, false
			}
		}
		spec.TLS = consulTLSOf(ctx, m.TLS)
	}
	return spec, !diags.HasError()
}

// consulFillFromContainer records what the container really runs: the plan then shows
// any drift (another image, other flags) as a change.
func consulFillFromContainer(ctx context.Context, role consul.Role, m *consulContainerModel, c *consul.Container, diags *diag.Diagnostics) {
	s := c.Spec
	m.ContainerName = types.StringValue(c.Name)
	m.Image = types.StringValue(c.Image)
	m.Datacenter = types.StringValue(s.Datacenter)
	m.NodeName = nullIfEmpty(s.NodeName)
	m.AdvertiseAddr = types.StringValue(s.AdvertiseAddr)
	m.ClientAddr = types.StringValue(s.ClientAddr)
	m.UI = types.BoolValue(s.UI)
	m.Ports = consulPortsValue(role, s.Ports)
	switch {
	case !m.RetryJoin.IsNull() && !m.RetryJoin.IsUnknown():
		// Kept from the state: a change of retry_join does not restart a running member
		// (see consul.Spec.Hash), so the container may still carry the list it started with.
	case len(s.RetryJoin) == 0:
		m.RetryJoin = types.ListNull(types.StringType)
	default:
		v, d := types.ListValueFrom(ctx, types.StringType, s.RetryJoin)
		diags.Append(d...)
		m.RetryJoin = v
	}
	m.ContainerID = types.StringValue(c.ID)
	m.Running = types.BoolValue(c.Running)
	m.ConfigHash = types.StringValue(c.ConfigHash)
	https := s
	if c.HTTPS {
		https.TLS = &consul.TLS{}
	}
	m.HTTPAddr = types.StringValue(https.HTTPAddr())
	m.ID = types.StringValue(consulID(m.Host.ValueString(), c.Name))
}

func consulID(host, containerName string) string { return host + "," + containerName }

// parseConsulImportID splits `HOST,CONTAINER_NAME`.
func parseConsulImportID(id string) (host, containerName string, err error) {
	i := strings.LastIndex(id, ",")
	if i < 0 {
		return "", "", fmt.Errorf("want HOST,CONTAINER_NAME (e.g. ssh://root@203.0.113.10,consul-server), got %q", id)
	}
	host, containerName = id[:i], id[i+1:]
	if _, err := conn.ParseEndpoint(host); err != nil {
		return "", "", err
	}
	if !consul.ContainerNamePattern().MatchString(containerName) {
		return "", "", fmt.Errorf("%q is not a container name", containerName)
	}
	return host, containerName, nil
}

// consulPlan does the plan work both resources share: the computed values an apply
// will set or keep. A stopped container (running false in state) or a config hash that
// differs from the container's plans an in-place update that recreates it.
func consulPlan(ctx context.Context, role consul.Role, plan, state *consulContainerModel, bootstrapExpect types.Int64, diags *diag.Diagnostics) {
	plan.Running = types.BoolValue(true)
	if !plan.Host.IsUnknown() && !plan.ContainerName.IsUnknown() {
		plan.ID = types.StringValue(consulID(plan.Host.ValueString(), plan.ContainerName.ValueString()))
	}
	spec, known := consulSpecOf(ctx, role, *plan, bootstrapExpect, diags)
	if known {
		plan.ConfigHash = types.StringValue(spec.Hash())
		plan.HTTPAddr = types.StringValue(spec.HTTPAddr())
	} else {
		plan.ConfigHash = types.StringUnknown()
		plan.HTTPAddr = types.StringUnknown()
	}
	switch {
	case plan.ACL.IsNull():
		plan.ACLAgentToken = types.StringNull()
	case state != nil && !state.ACLAgentToken.IsNull() && plan.ACL.Equal(state.ACL) && plan.ACLTokenWOVer.Equal(state.ACLTokenWOVer):
		plan.ACLAgentToken = state.ACLAgentToken
	default:
		plan.ACLAgentToken = types.StringUnknown()
	}
	if state == nil {
		plan.ContainerID, plan.NodeID = types.StringUnknown(), types.StringUnknown()
		return
	}
	if recreate := !plan.ConfigHash.Equal(state.ConfigHash) || !state.Running.ValueBool(); recreate {
		plan.ContainerID = types.StringUnknown()
	} else {
		plan.ContainerID = state.ContainerID
	}
	// The node ID lives on the data volume, which in-place updates keep.
	plan.NodeID = state.NodeID
	if plan.NodeID.IsNull() {
		plan.NodeID = types.StringUnknown()
	}
}

// consulOpenHost reaches the node and records the host key it presented when none was
// pinned; what vouches for an unpinned key is known_hosts or host_key_policy, after an
// import too (strict refuses it, accept-new trusts and records it). With tolerateUnreachable
// (refresh of a known container, delete) a node that does not answer at all is a
// warning: a dead node must not block the plan that replaces it, nor the destroy that
// goes with it. A wrong host key is always an error.
func (d *providerData) consulOpenHost(ctx context.Context, m *consulContainerModel, tolerateUnreachable bool, diags *diag.Diagnostics) *conn.Host {
	host, hostKey := m.Host.ValueString(), m.HostKey.ValueString()
	_, err := conn.ParseEndpoint(host)
	if err != nil {
		diags.AddAttributeError(path.Root("host"), "Invalid Host", err.Error())
		return nil
	}
	var h *conn.Host
	if !tolerateUnreachable {
		h = d.openHost(ctx, path.Root("host"), host, hostKey, diags)
	} else {
		h, err = d.openTolerant(ctx, conn.Target{Host: host, HostKey: hostKey}, true)
	}
	switch {
	case h == nil && err == nil:
		return nil // openHost reported it
	case err != nil && tolerateUnreachable && consulUnreachable(err):
		diags.AddWarning("Consul Node Unreachable", fmt.Sprintf(
			"%s does not answer (%s), so container %s could not be checked; Terraform keeps what it last knew. "+
				"If the node is gone for good, replace it: its Consul container went with it.", host, err, m.ContainerName.ValueString()))
		return nil
	case err != nil:
		diags.AddAttributeError(path.Root("host"), "Could Not Reach Host", fmt.Sprintf("%s: %s", host, err))
		return nil
	}
	if key := h.HostKey(); key != "" && hostKey == "" {
		tflog.Warn(ctx, "recorded the host key that known_hosts or host_key_policy accepted; set host_key in the config to pin it",
			map[string]any{"host": host, "fingerprint": fingerprintOf(key)})
		m.HostKey = types.StringValue(key)
	} else if m.HostKey.IsUnknown() {
		m.HostKey = types.StringNull()
	}
	return h
}

// consulUnreachable tells a node that does not answer (or whose droplet the API reports
// off) from one that answered wrongly (a changed host key, a refused login).
func consulUnreachable(err error) bool {
	var opErr *net.OpError
	var down *droplet.DownError
	return errors.As(err, &opErr) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &down)
}

// consulDocker returns the node's Docker client.
func consulDocker(h *conn.Host, host string, diags *diag.Diagnostics) *client.Client {
	docker, err := h.Docker()
	if err != nil {
		diags.AddAttributeError(path.Root("host"), "Could Not Reach the Docker API", fmt.Sprintf("%s: %s", host, err))
		return nil
	}
	return docker
}

// consulAPI returns a client for the agent that spec describes, through the node.
func consulAPI(h *conn.Host, spec consul.Spec) (*consulapi.Client, error) {
	cfg, err := consul.APIConfig(spec)
	if err != nil {
		return nil, err
	}
	if spec.ACL != nil {
		cfg.Token = spec.ACL.Token
	}
	return h.Consul(cfg)
}

// consulFiles reads the node's containers' files, or nothing when its engine cannot be
// reached (a nil *client.Client must not become a non-nil FileReader).
func consulFiles(h *conn.Host) consul.FileReader {
	docker, err := h.Docker()
	if err != nil {
		return nil
	}
	return docker
}

// consulRunningSpec is how to talk to the container as it runs now: its flags, with the
// TLS material from the state, or from the plan when an import left the state without it.
// A key given write-only (in no state or plan) is read from the container, which holds it.
func consulRunningSpec(ctx context.Context, files consul.FileReader, c *consul.Container, materials ...*consul.TLS) consul.Spec {
	s := c.Spec
	if !c.HTTPS {
		return s
	}
	for _, t := range materials {
		if t != nil {
			material := *t
			if material.KeyPEM == "" && material.KeyWriteOnly && files != nil {
				key, err := consul.ReadTLSKey(ctx, files, c.ID)
				if err != nil {
					tflog.Warn(ctx, "could not read the consul agent's write-only TLS key back from its container", map[string]any{"container": c.Name, "error": err.Error()})
				}
				material.KeyPEM = key
			}
			s.TLS = &material
			return s
		}
	}
	s.TLS = &consul.TLS{}
	return s
}

// consulReadTimeout bounds the Consul queries of a refresh: Read must not wait.
const consulReadTimeout = 10 * time.Second

// addConsulWaitError reports an agent that did not come up, with what was last seen,
// the container's logs if it crashed, and what to do next.
// noLeader says the agent is up but sees no leader: then the advice is about the servers.
func addConsulWaitError(diags *diag.Diagnostics, role consul.Role, host, containerName, operation string, err error, noLeader ...bool) {
	noun := consulRoleNoun(role)
	summary := "Consul Server Did Not Become a Voter"
	next := "Check that retry_join lists the servers' advertise addresses, that bootstrap_expect servers exist and can reach each other " +
		"on ports 8300-8301 (TCP and UDP), and that encrypt and tls match across the cluster; then apply again (the container is kept), " +
		"or raise timeouts." + operation + "."
	if role == consul.RoleAgent {
		summary = "Consul Agent Did Not Join the Cluster"
		next = "Check that retry_join lists the servers' advertise addresses, that the servers have a leader, and that datacenter, " +
			"encrypt and tls match the servers'; then apply again (the container is kept), or raise timeouts." + operation + "."
	}
	var timeout *wait.TimeoutError
	var crashed *consul.CrashedError
	switch {
	case len(noLeader) > 0 && noLeader[0] && !errors.As(err, &crashed):
		summary = "Consul Cluster Has No Leader"
		next = "The agent is up but sees no leader: the servers are down or have lost their quorum, and nothing is wrong with " +
			"this agent. The next apply starts or re-creates each microswarm_consul_server whose container stopped (and replaces " +
			"a server whose droplet is off), then creates this agent again; a cluster that lost a majority of its servers is " +
			"brought back as the self-healing guide's quorum section says."
	case errors.As(err, &crashed):
		summary = "Consul Container Stopped"
		next = "The agent exited: its log lines above say why (a bad flag, key or certificate). Fix the config and apply again."
	case errors.As(err, &timeout):
	}
	diags.AddError(summary, fmt.Sprintf("Consul %s %s on %s: %s.\n\n%s", noun, containerName, host, err, next))
}

// addConsulContainerError reports a failed container operation.
// A next step (providerData.nodeNextStep), when there is one, replaces the advice.
func addConsulContainerError(diags *diag.Diagnostics, summary, host, containerName string, err error, nextStep ...string) {
	var notManaged *consul.NotManagedError
	detail := fmt.Sprintf("Container %s on %s: %s.", containerName, host, err)
	switch {
	case len(nextStep) > 0 && nextStep[0] != "":
		detail += " " + nextStep[0]
	case !errors.As(err, &notManaged):
		detail += " Check the node's Docker engine (disk space, image availability), then apply again: creation resumes where it stopped."
	}
	diags.AddError(summary, detail)
}

// consulDelete leaves gracefully, then removes the container and its volume; what is
// already gone is fine. A failed leave is a warning: the container goes anyway.
func consulDelete(ctx context.Context, d *providerData, role consul.Role, m consulContainerModel, spec consul.Spec, diags *diag.Diagnostics) {
	if d == nil {
		return
	}
	host, name := m.Host.ValueString(), m.ContainerName.ValueString()
	h := d.consulOpenHost(ctx, &m, true, diags)
	if h == nil {
		return
	}
	docker := consulDocker(h, host, diags)
	if docker == nil {
		return
	}
	c, err := consul.Find(ctx, docker, name)
	var notManaged *consul.NotManagedError
	switch {
	case errors.Is(err, consul.ErrNotFound):
	case errors.As(err, &notManaged):
		diags.AddWarning("Consul Container Replaced Outside Terraform",
			fmt.Sprintf("%s. That container was left alone; only the data volume %s-data is removed.", err, name))
	case err != nil:
		diags.AddError("Could Not Inspect Consul Container", fmt.Sprintf("Container %s on %s: %s.", name, host, err))
		return
	default:
		if err := consul.Leave(ctx, docker, c, d.consulWithToken(consulRunningSpec(ctx, docker, c, spec.TLS))); err != nil {
			summary, node := "Consul Agent Did Not Leave Gracefully", c.Spec.NodeName
			if role == consul.RoleServer {
				summary = "Consul Server Did Not Leave Gracefully"
			}
			if node == "" {
				node = "NODE_NAME"
			}
			diags.AddWarning(summary, fmt.Sprintf("Container %s on %s: %s. The container is removed anyway; the servers will mark the "+
				"node failed and reap it after 72h, or run `consul force-leave %s` on a server now.", name, host, err, node))
		}
		if err := consul.Remove(ctx, docker, c.ID, ""); err != nil {
			addConsulContainerError(diags, "Could Not Remove Consul Container", host, name, err)
			return
		}
	}
	if err := consul.Remove(ctx, docker, "", name+"-data"); err != nil {
		addConsulContainerError(diags, "Could Not Remove Consul Data Volume", host, name, err)
	}
}

// consulTLSOf reads the tls attribute; nil when unset.
func consulTLSOf(ctx context.Context, obj types.Object) *consul.TLS {
	if obj.IsNull() || obj.IsUnknown() {
		return nil
	}
	var t consulTLSModel
	if diags := obj.As(ctx, &t, basetypes.ObjectAsOptions{}); diags.HasError() {
		return nil
	}
	// From a configuration the key is either one; from a plan or state, a write-only
	// key is null.
	key := t.KeyPEM.ValueString()
	if t.KeyPEM.IsNull() {
		key = t.KeyPEMWO.ValueString()
	}
	return &consul.TLS{
		CAPEM: t.CAPEM.ValueString(), CertPEM: t.CertPEM.ValueString(), KeyPEM: key, KeyWriteOnly: t.KeyPEM.IsNull(),
		VerifyIncoming: t.VerifyIncoming.ValueBool(), VerifyOutgoing: t.VerifyOutgoing.ValueBool(),
		VerifyServerHostname: t.VerifyServerHostname.ValueBool(),
	}
}

// consulImportState takes `HOST,CONTAINER_NAME`; Read fills in the rest from the container.
func consulImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	host, name, err := parseConsulImportID(req.ID)
	if err != nil {
		resp.Diagnostics.AddError("Invalid Import ID", err.Error()+".")
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), consulID(host, name))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("host"), host)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("container_name"), name)...)
}

// consulPrepare is how Create and Update start: the container spec from the plan, and the
// node reached through its pinned host. ok is false when diags say why not.
func (d *providerData) consulPrepare(ctx context.Context, role consul.Role, m *consulContainerModel, bootstrapExpect types.Int64, cfg tfsdk.Config, diags *diag.Diagnostics) (spec consul.Spec, h *conn.Host, docker *client.Client, ok bool) {
	spec, known := consulSpecOf(ctx, role, *m, bootstrapExpect, diags)
	if spec.EncryptWriteOnly {
		spec.Encrypt = consulWriteOnly(ctx, cfg, "encrypt_wo", diags)
	}
	if spec.ACL != nil {
		spec.ACL.Token = consulWriteOnly(ctx, cfg, "acl_token_wo", diags)
	}
	if spec.TLS != nil && spec.TLS.KeyWriteOnly {
		var t types.Object
		diags.Append(cfg.GetAttribute(ctx, path.Root("tls"), &t)...)
		if fromConfig := consulTLSOf(ctx, t); fromConfig != nil {
			spec.TLS.KeyPEM = fromConfig.KeyPEM
		}
	}
	if diags.HasError() {
		return spec, nil, nil, false
	}
	if !known {
		diags.AddError("Unknown Values at Apply", fmt.Sprintf("The %s's configuration still had unknown values at apply. "+
			"Please report this issue to the provider developers.", consulRoleNoun(role)))
		return spec, nil, nil, false
	}
	if h = d.consulOpenHost(ctx, m, false, diags); h == nil {
		return spec, nil, nil, false
	}
	if docker = consulDocker(h, m.Host.ValueString(), diags); docker == nil {
		return spec, nil, nil, false
	}
	return spec, h, docker, true
}

// consulReadContainer refreshes the container part of a Consul resource's state. It
// returns nil when there is nothing more to read: the container is gone (the resource is
// removed from state, so the plan re-creates it), the node is unreachable (state kept,
// with a warning), or an error was reported.
func (d *providerData) consulReadContainer(ctx context.Context, role consul.Role, m *consulContainerModel, resp *resource.ReadResponse) (*conn.Host, *consul.Container) {
	host, name := m.Host.ValueString(), m.ContainerName.ValueString()
	h := d.consulOpenHost(ctx, m, !m.ContainerID.IsNull(), &resp.Diagnostics)
	if h == nil {
		return nil, nil
	}
	docker := consulDocker(h, host, &resp.Diagnostics)
	if docker == nil {
		return nil, nil
	}
	c, err := consul.Find(ctx, docker, name)
	if errors.Is(err, consul.ErrNotFound) {
		tflog.Warn(ctx, "consul "+consulRoleNoun(role)+" container is gone; removing it from state so the plan re-creates it",
			map[string]any{"host": host, "container": name})
		resp.State.RemoveResource(ctx)
		return nil, nil
	}
	if err == nil && c.Role != role {
		err = fmt.Errorf("the container runs a Consul %s, not a %s", c.Role, consulRoleNoun(role))
	}
	if err != nil {
		addConsulContainerError(&resp.Diagnostics, "Could Not Read Consul "+consulTitle(role)+" Container", host, name, err)
		return nil, nil
	}
	consulFillFromContainer(ctx, role, m, c, &resp.Diagnostics)
	return h, c
}

func consulTitle(role consul.Role) string {
	if role == consul.RoleServer {
		return "Server"
	}
	return "Agent"
}
