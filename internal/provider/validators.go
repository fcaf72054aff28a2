package provider

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
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

// imageValidator accepts a Docker image reference.
func imageValidator() validator.String {
	return stringCheck{"Invalid Image Reference", "must be an image reference such as hashicorp/consul:1.20.5 or microswarm/registrator:0.1.0", func(s string) error {
		if _, err := reference.ParseNormalizedNamed(s); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
		return nil
	}}
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

// stringsOf lists an enum's values as strings, for OneOf validators and descriptions.
func stringsOf[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}
