package provider

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
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
		resp.Diagnostics.AddAttributeError(req.Path, "Insecure API Endpoint", req.Path.String()+": "+err.Error()+".")
	case err != nil:
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid URL", req.Path.String()+": "+err.Error()+".")
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
			resp.Diagnostics.AddAttributeError(req.Path, "Encrypted SSH Private Key",
				"The key is protected by a passphrase; provide an unencrypted key, kept in a sensitive variable.")
			return
		}
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid SSH Private Key",
			"The value is not a PEM or OpenSSH private key: "+err.Error()+".")
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
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid SSH Public Key",
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
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Duration", err.Error()+".")
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
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Host", err.Error()+".")
	}
}
