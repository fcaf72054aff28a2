package provider

import (
	"context"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
)

// consulAdvertiseValidator accepts an address an agent can bind to and advertise.
func consulAdvertiseValidator() validator.String {
	return stringCheck{"Invalid Advertise Address", "must be the node's own IP address (not 0.0.0.0)", func(s string) error {
		if err := consul.ValidateAdvertiseIP(s); err != nil {
			return fmt.Errorf("%w; Consul binds to and advertises an address, not a name", err)
		}
		return nil
	}}
}

// consulIPValidator accepts one IP address.
func consulIPValidator() validator.String {
	return stringCheck{"Invalid IP Address", "must be an IP address", func(s string) error {
		if err := consul.ValidateIP(s); err != nil {
			return fmt.Errorf("%w; Consul listens on an address, not a name", err)
		}
		return nil
	}}
}

// consulGossipKeyValidator accepts what `consul keygen` prints.
func consulGossipKeyValidator() validator.String {
	return stringCheck{"Invalid Gossip Key", "must be a base64 gossip key of 32 (or 16 or 24) bytes, as `consul keygen` prints", consul.ValidateGossipKey}
}

// consulPEMValidator accepts a PEM document of the given kind.
func consulPEMValidator(kind string) validator.String {
	return stringCheck{"Invalid PEM", "must be a PEM " + kind, func(s string) error {
		block, _ := pem.Decode([]byte(s))
		ok := block != nil
		if ok && kind == "certificate" {
			ok = block.Type == "CERTIFICATE"
		} else if ok {
			ok = strings.HasSuffix(block.Type, "PRIVATE KEY")
		}
		if !ok {
			return fmt.Errorf("the value is not a PEM %s (-----BEGIN ...-----)", kind)
		}
		return nil
	}}
}

// consulRetryJoinValidators: entries are addresses, IP:port or cloud auto-join strings.
func consulRetryJoinValidators() []validator.List {
	return []validator.List{
		listvalidator.SizeAtLeast(1),
		listvalidator.ValueStringsAre(stringCheck{"Invalid Retry Join Address",
			"must be an IP, IP:PORT, a host name or a cloud auto-join string (provider=...)", consul.ValidateJoinAddr}),
	}
}

// consulValidateConfig checks what spans a Consul resource's attributes: a host key only
// beside an ssh:// host, listeners on distinct ports, and TLS material that fits.
func consulValidateConfig(ctx context.Context, role consul.Role, cfg tfsdk.Config, diags *diag.Diagnostics) {
	var host, hostKey types.String
	diags.Append(cfg.GetAttribute(ctx, path.Root("host"), &host)...)
	diags.Append(cfg.GetAttribute(ctx, path.Root("host_key"), &hostKey)...)
	if diags.HasError() {
		return
	}
	checkHostKeyBeside(path.Root("host_key"), host, hostKey, diags)

	var ports types.Object
	diags.Append(cfg.GetAttribute(ctx, path.Root("ports"), &ports)...)
	if !ports.IsNull() && !ports.IsUnknown() {
		p, set, known := consul.DefaultPorts(role), map[string]bool{}, true
		attrs := ports.Attributes()
		for _, port := range consulPortsOf(role) {
			v, _ := attrs[port.name].(types.Int64)
			switch {
			case v.IsUnknown():
				known = false
			case !v.IsNull():
				*port.get(&p) = int(v.ValueInt64())
				set[port.name] = true
			}
		}
		for _, c := range consul.PortClashes(role, p) {
			if !known {
				break
			}
			name, other := c.Name, c.Other
			if !set[name] && set[other] {
				name, other = other, name // report it where the config set it
			}
			attrError(diags, path.Root("ports").AtName(name), "Colliding Consul Ports",
				fmt.Sprintf("%s and %s both listen on port %d; give each listener its own port (or -1 to turn one off where allowed).", name, other, c.Port))
		}
	}

	var t types.Object
	diags.Append(cfg.GetAttribute(ctx, path.Root("tls"), &t)...)
	checkOneTLSKey(ctx, t, diags)
	if m := consulTLSOf(ctx, t); m != nil && pemIs(m.CAPEM, "certificate") && pemIs(m.CertPEM, "certificate") && pemIs(m.KeyPEM, "private key") {
		if err := consul.CheckTLS(*m); err != nil {
			field := err.Field
			if field == "key_pem" && m.KeyWriteOnly {
				field = "key_pem_wo"
			}
			attrError(diags, path.Root("tls").AtName(field), "Invalid Consul TLS Material", err.Err.Error()+".")
		}
	}
}

// checkOneTLSKey asks for exactly one of tls.key_pem and tls.key_pem_wo.
func checkOneTLSKey(ctx context.Context, obj types.Object, diags *diag.Diagnostics) {
	if obj.IsNull() || obj.IsUnknown() {
		return
	}
	var t consulTLSModel
	if d := obj.As(ctx, &t, basetypes.ObjectAsOptions{}); d.HasError() || t.KeyPEM.IsUnknown() || t.KeyPEMWO.IsUnknown() {
		return
	}
	switch {
	case t.KeyPEM.IsNull() && t.KeyPEMWO.IsNull():
		attrError(diags, path.Root("tls").AtName("key_pem_wo"), "Missing Consul TLS Key",
			"the private key of cert_pem is required: set key_pem_wo (write-only, never stored; Terraform 1.11 or later) or key_pem (stored in the state).")
	case !t.KeyPEM.IsNull() && !t.KeyPEMWO.IsNull():
		attrError(diags, path.Root("tls").AtName("key_pem"), "Conflicting Consul TLS Keys",
			"set only one of key_pem and key_pem_wo; remove key_pem to keep the key out of the state.")
	}
}

// pemIs reports whether s holds a PEM block of the kind (as consulPEMValidator checks),
// so that material those validators refuse is not reported twice.
func pemIs(s, kind string) bool {
	check, ok := consulPEMValidator(kind).(stringCheck)
	return ok && check.check(s) == nil
}
