package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
)

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

// consulServerSettings are a server's own settings, for the code servers and agents
// share; an agent's are the zero value (nulls).
type consulServerSettings struct {
	BootstrapExpect types.Int64
	RaftMultiplier  types.Int64
}

// consulSpecOf maps a model to a spec. ok is false while a value is unknown (at plan time).
func consulSpecOf(ctx context.Context, role consul.Role, m consulContainerModel, server consulServerSettings, diags *diag.Diagnostics) (spec consul.Spec, ok bool) {
	values := []attr.Value{m.ContainerName, m.Image, m.Datacenter, m.NodeName, m.AdvertiseAddr, m.ClientAddr, m.RetryJoin, m.UI, m.Encrypt, m.EncryptWOVer, m.TLS, m.ACL, m.ACLTokenWOVer, m.Ports,
		server.BootstrapExpect, server.RaftMultiplier}
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
		BootstrapExpect: int(server.BootstrapExpect.ValueInt64()),
		RaftMultiplier:  int(server.RaftMultiplier.ValueInt64()),
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

// fillConsulModel records what the container really runs: the plan then shows
// any drift (another image, other flags) as a change.
func fillConsulModel(ctx context.Context, role consul.Role, m *consulContainerModel, c *consul.Container, diags *diag.Diagnostics) {
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
