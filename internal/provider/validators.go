package provider

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/swarm"
)

var userPattern = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

// describeOneOf renders allowed values for a MarkdownDescription, from the same list
// that feeds the OneOf validator.
func describeOneOf(values []string) string {
	quoted := make([]string, 0, len(values))
	for _, v := range values {
		quoted = append(quoted, "`"+v+"`")
	}
	return "one of " + strings.Join(quoted, ", ")
}

func oneOf(v string, allowed []string) bool { return slices.Contains(allowed, v) }

// skip reports whether a string value cannot be checked yet.
func skip(req validator.StringRequest) bool {
	return req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown()
}

// apiEndpointValidator accepts https URLs, and http URLs to loopback only.
type apiEndpointValidator struct{}

func (apiEndpointValidator) Description(context.Context) string {
	return "must be an https URL, or an http URL to localhost or a loopback address"
}
func (v apiEndpointValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (apiEndpointValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if skip(req) {
		return
	}
	err := checkAPIEndpoint(req.ConfigValue.ValueString())
	switch {
	case errors.Is(err, errPlainHTTP):
		attrError(&resp.Diagnostics, req.Path, "Insecure API Endpoint", err.Error()+".")
	case err != nil:
		attrError(&resp.Diagnostics, req.Path, "Invalid URL", err.Error()+".")
	}
}

// sshPrivateKeyValidator accepts an unencrypted private key that x/crypto/ssh can use.
type sshPrivateKeyValidator struct{}

func (sshPrivateKeyValidator) Description(context.Context) string {
	return "must be an unencrypted PEM or OpenSSH private key"
}
func (v sshPrivateKeyValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (sshPrivateKeyValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if skip(req) {
		return
	}
	if _, err := ssh.ParsePrivateKey([]byte(req.ConfigValue.ValueString())); err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			attrError(&resp.Diagnostics, req.Path, "Encrypted SSH Private Key",
				"The key is protected by a passphrase; provide an unencrypted key, kept in a sensitive variable.")
			return
		}
		attrError(&resp.Diagnostics, req.Path, "Invalid SSH Private Key",
			"the value is not a PEM or OpenSSH private key: "+err.Error()+".")
	}
}

// sshPublicKeyValidator accepts public keys in authorized_keys form, one per line.
type sshPublicKeyValidator struct{}

func (sshPublicKeyValidator) Description(context.Context) string {
	return `must be an SSH public key in authorized_keys form ("ssh-ed25519 AAAA...")`
}
func (v sshPublicKeyValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (sshPublicKeyValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if skip(req) {
		return
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.ConfigValue.ValueString())); err != nil {
		attrError(&resp.Diagnostics, req.Path, "Invalid SSH Public Key",
			`Want the form "ssh-ed25519 AAAA..." (as in authorized_keys): `+err.Error()+".")
	}
}

// positiveDurationValidator accepts Go durations greater than zero.
type positiveDurationValidator struct{}

func (positiveDurationValidator) Description(context.Context) string {
	return `must be a positive Go duration such as "30s" or "5m"`
}
func (v positiveDurationValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (positiveDurationValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if skip(req) {
		return
	}
	if _, err := parsePositiveDuration(req.ConfigValue.ValueString()); err != nil {
		attrError(&resp.Diagnostics, req.Path, "Invalid Duration", err.Error()+".")
	}
}

func parsePositiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration such as \"30s\" or \"5m\"", s)
	}
	return d, nil
}

// hostValidator accepts the host strings the connection pool understands.
type hostValidator struct{}

func (hostValidator) Description(context.Context) string {
	return "must be ssh://[user@]host[:port], unix:///path or tcp://host:port"
}
func (v hostValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (hostValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if skip(req) {
		return
	}
	if _, err := conn.ParseEndpoint(req.ConfigValue.ValueString()); err != nil {
		attrError(&resp.Diagnostics, req.Path, "Invalid Host", err.Error()+".")
	}
}

// attrError reports a config fault on an attribute, naming its path in the detail too:
// Terraform shows a path only as a source excerpt, which for values from variables or
// nested blocks does not say which attribute is wrong.
func attrError(diags *diag.Diagnostics, p path.Path, summary, detail string) {
	diags.AddAttributeError(p, summary, p.String()+": "+detail)
}

func attrWarning(diags *diag.Diagnostics, p path.Path, summary, detail string) {
	diags.AddAttributeWarning(p, summary, p.String()+": "+detail)
}

// stringCheck is a string validator from a description and a check function.
type stringCheck struct {
	summary, description string
	check                func(string) error
}

func (v stringCheck) Description(context.Context) string { return v.description }
func (v stringCheck) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (v stringCheck) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if skip(req) {
		return
	}
	if err := v.check(req.ConfigValue.ValueString()); err != nil {
		attrError(&resp.Diagnostics, req.Path, v.summary, err.Error()+".")
	}
}

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

// imageValidator accepts a Docker image reference.
func imageValidator() validator.String {
	return stringCheck{"Invalid Image Reference", "must be an image reference such as hashicorp/consul:1.20.5 or microswarm/registrator:0.1.0", func(s string) error {
		if _, err := reference.ParseNormalizedNamed(s); err != nil {
			return fmt.Errorf("%q: %w", s, err)
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

// advertiseAddrValidator accepts what `docker swarm init --advertise-addr` does: an IP
// or a network interface name, optionally with a port.
func advertiseAddrValidator() validator.String {
	const desc = `must be an IP address or interface name, optionally with a port ("10.10.0.5", "10.10.0.5:2377", "eth1")`
	return stringCheck{"Invalid Advertise Address", desc, func(s string) error {
		if err := swarm.CheckAdvertiseAddr(s); err != nil {
			return fmt.Errorf("%q %s: %w", s, desc, err)
		}
		return nil
	}}
}

// addrPoolsValidator accepts swarm address pools: IPv4 networks that do not overlap.
type addrPoolsValidator struct{}

func (addrPoolsValidator) Description(context.Context) string {
	return `must be IPv4 networks in CIDR form that do not overlap, e.g. ["10.20.0.0/16"]`
}
func (v addrPoolsValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (addrPoolsValidator) ValidateList(ctx context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	pools, known := knownStrings(ctx, req.ConfigValue)
	if !known {
		return
	}
	if i, err := swarm.CheckAddrPools(pools); err != nil {
		attrError(&resp.Diagnostics, req.Path.AtListIndex(i), "Invalid Address Pool", err.Error()+".")
	}
}

// knownStrings is a list's strings, and whether all of them are known.
func knownStrings(ctx context.Context, l types.List) ([]string, bool) {
	if l.IsNull() || l.IsUnknown() {
		return nil, false
	}
	var elems []types.String
	if l.ElementsAs(ctx, &elems, false).HasError() {
		return nil, false
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		if e.IsUnknown() || e.IsNull() {
			return nil, false
		}
		out = append(out, e.ValueString())
	}
	return out, true
}

// minDurationValidator accepts Go durations of at least min.
type minDurationValidator struct{ min time.Duration }

func (v minDurationValidator) Description(context.Context) string {
	return fmt.Sprintf("must be a Go duration of at least %s", v.min)
}
func (v minDurationValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (v minDurationValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if skip(req) {
		return
	}
	d, err := time.ParseDuration(req.ConfigValue.ValueString())
	if err == nil && d < v.min {
		attrError(&resp.Diagnostics, req.Path, "Invalid Duration", fmt.Sprintf("%q is shorter than %s: Docker refuses certificates valid for less than an hour.", req.ConfigValue.ValueString(), v.min))
	}
}

// withDurationValidators swaps the validators of a timeouts attribute's durations for
// positiveDurationValidator, whose error names the attribute's path.
func withDurationValidators(a schema.Attribute) schema.Attribute {
	nested, ok := a.(schema.SingleNestedAttribute)
	if !ok {
		return a
	}
	attrs := map[string]schema.Attribute{}
	for name, inner := range nested.Attributes {
		if s, ok := inner.(schema.StringAttribute); ok {
			s.Validators = []validator.String{positiveDurationValidator{}}
			inner = s
		}
		attrs[name] = inner
	}
	nested.Attributes = attrs
	return nested
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

// checkHostKeyBeside refuses a host key beside a host that is not reached over SSH: the
// key would pin nothing, and the user believes the node is pinned.
func checkHostKeyBeside(at path.Path, host, hostKey types.String, diags *diag.Diagnostics) {
	if host.IsNull() || host.IsUnknown() || hostKey.IsNull() || hostKey.IsUnknown() {
		return
	}
	ep, err := conn.ParseEndpoint(host.ValueString())
	if err == nil && ep.Scheme != conn.SchemeSSH {
		attrError(diags, at, "Host Key Without an SSH Host", fmt.Sprintf(
			"the host %s is not reached over SSH, so a host key pins nothing; remove host_key, or use an ssh:// host.", host.ValueString()))
	}
}

// pemIs reports whether s holds a PEM block of the kind (as consulPEMValidator checks),
// so that material those validators refuse is not reported twice.
func pemIs(s, kind string) bool {
	check, ok := consulPEMValidator(kind).(stringCheck)
	return ok && check.check(s) == nil
}

// providerTagValidator refuses, in a droplet's tags, the tags the provider writes itself
// and hides from `tags` (an idempotency, pending or stack tag): Read could never show them.
func providerTagValidator() validator.String {
	return stringCheck{"Reserved Tag", "must not be one of the provider's own tags (" + droplet.IdempotencyTagPrefix + "..., " +
		droplet.PendingTagPrefix + "..., " + droplet.StackTagPrefix + "...)", func(s string) error {
		if droplet.IsProviderTag(s) {
			return fmt.Errorf("%q is a tag the provider writes itself and hides from tags; choose another", s)
		}
		return nil
	}}
}

// stringsOf lists an enum's values as strings, for OneOf validators and descriptions.
func stringsOf[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}
