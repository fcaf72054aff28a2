package provider

import (
	"context"
	"crypto/tls"
	"fmt"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
)

// How the provider's own Consul readers, the microservice's switch gate and the health
// data source, reach a cluster with TLS and ACLs on. It is provider configuration, not a
// resource's: the provider block is never written to the state or the plan and takes
// ephemeral values, a data source cannot have write-only arguments, and a refresh (which
// reads the gate's Consul) has no write-only value.

const (
	envConsulCAPEM           = "MICROSWARM_CONSUL_CA_PEM"
	envConsulClientCertPEM   = "MICROSWARM_CONSUL_CLIENT_CERT_PEM"
	envConsulClientKeyPEM    = "MICROSWARM_CONSUL_CLIENT_KEY_PEM"
	envConsulManagementToken = "MICROSWARM_CONSUL_MANAGEMENT_TOKEN"
)

func consulProviderAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"consul_ca_pem": schema.StringAttribute{
			MarkdownDescription: "The CA (PEM) that signed the Consul agents' certificates, the `tls.ca_pem` of the cluster's " +
				"`microswarm_consul_server` and `microswarm_consul_agent`. Setting it makes the microservice's switch gate and the " +
				"`microswarm_health` data source speak HTTPS to the node's agent. Env: `" + envConsulCAPEM + "`.",
			Optional:   true,
			Validators: []validator.String{consulPEMValidator("certificate")},
		},
		"consul_client_cert_pem": schema.StringAttribute{
			MarkdownDescription: "A client certificate (PEM) signed by `consul_ca_pem`, presented to agents whose `tls.verify_incoming` is on " +
				"(the default), e.g. a `consul tls cert create -client` certificate or an agent's own `cert_pem`. Requires " +
				"`consul_client_key_pem`. Env: `" + envConsulClientCertPEM + "`.",
			Optional: true,
			Validators: []validator.String{consulPEMValidator("certificate"),
				stringvalidator.AlsoRequires(path.MatchRoot("consul_ca_pem"), path.MatchRoot("consul_client_key_pem"))},
		},
		"consul_client_key_pem": schema.StringAttribute{
			MarkdownDescription: "The private key (PEM) of `consul_client_cert_pem`. Provider configuration is never stored in the state; " +
				"feed it from an `ephemeral = true` variable. When it is also the key of a Consul resource's `tls.cert_pem` (one certificate " +
				"for the agents and the provider), refreshes and destroys use it to reach that agent's API instead of reading the agent's " +
				"write-only `tls.key_pem_wo` back from its container over SSH. Env: `" + envConsulClientKeyPEM + "`.",
			Optional:  true,
			Sensitive: true,
			Validators: []validator.String{consulPEMValidator("private key"),
				stringvalidator.AlsoRequires(path.MatchRoot("consul_client_cert_pem"))},
		},
		"consul_management_token": schema.StringAttribute{
			MarkdownDescription: "A Consul ACL management token (a UUID), for clusters with `acl` on. With it the provider makes (or finds " +
				"again) one least-privilege token per reader and talks to Consul only with those: `microswarm-gate` (read on services " +
				"and nodes) for the microservice's switch gate and refresh, and `microswarm-health` (the same, plus write on the KV prefix `" +
				consul.HealthLedgerPrefix + "` only) for the `microswarm_health` data source. The tokens' secrets are kept in memory for " +
				"the run and never written to the state or the plan; nor is this attribute, which can take an `ephemeral = true` variable " +
				"(the same one given to the Consul resources' `acl_token_wo`). A `consul_token` set on a data source is used instead. " +
				"Env: `" + envConsulManagementToken + "`.",
			Optional:   true,
			Sensitive:  true,
			Validators: []validator.String{stringCheck{"Invalid ACL Token", "must be a UUID", consul.ValidateACLToken}},
		},
	}
}

// consulAccess builds the readers' access from the resolved settings.
func (s *settings) consulAccess(diags *diag.Diagnostics) *consul.Access {
	a := &consul.Access{CAPEM: s.consulCAPEM, CertPEM: s.consulCertPEM, KeyPEM: s.consulKeyPEM, ManagementToken: s.consulManagementToken}
	if _, err := a.Config(""); err != nil {
		attrError(diags, path.Root("consul_ca_pem"), "Invalid Consul TLS Material", fmt.Sprintf(
			"%s (from the config or %s, %s and %s).", err, envConsulCAPEM, envConsulClientCertPEM, envConsulClientKeyPEM))
	}
	if s.consulManagementToken != "" {
		if err := consul.ValidateACLToken(s.consulManagementToken); err != nil {
			attrError(diags, path.Root("consul_management_token"), "Invalid ACL Token",
				fmt.Sprintf("%s (from the config or %s).", err, envConsulManagementToken))
		}
	}
	return a
}

// consulReader opens the Consul agent at address on node h (host names it) for one of
// the provider's readers: over HTTPS with the provider's CA when it has one, with token
// when given, else with the reader's least-privilege token.
func (d *providerData) consulReader(ctx context.Context, h *conn.Host, host string, cfg conn.ConsulConfig, reader consul.Reader) (*consulapi.Client, error) {
	access := d.consul
	if access == nil {
		access = &consul.Access{}
	}
	return access.Client(ctx, h.Consul, cfg, host, reader)
}

// consulReaderConfig is where the node's agent answers and how, for the provider's
// readers: address (default 127.0.0.1:8500, where the Consul resources serve HTTP, or
// HTTPS with tls) and the provider's TLS material.
func (d *providerData) consulReaderConfig(address string) (conn.ConsulConfig, error) {
	access := d.consul
	if access == nil {
		access = &consul.Access{}
	}
	return access.Config(address)
}

// consulHasToken says whether the readers talk to Consul with a token.
func (d *providerData) consulHasToken() bool {
	return d.consul != nil && d.consul.ManagementToken != ""
}

// consulWithKey gives TLS material whose key was given write-only (so no state has it)
// the provider's own consul_client_key_pem, when that is the key of its certificate:
// with one certificate for the agents and the provider (as the demo's, and
// pki.GenerateTLS's), a refresh or a destroy talks to the agent without an SSH command
// to read the key back from its container (consulRunningSpec). t itself is not changed.
func (d *providerData) consulWithKey(t *consul.TLS) *consul.TLS {
	if t == nil || t.KeyPEM != "" || !t.KeyWriteOnly || d == nil || d.consul == nil || d.consul.KeyPEM == "" {
		return t
	}
	if _, err := tls.X509KeyPair([]byte(t.CertPEM), []byte(d.consul.KeyPEM)); err != nil {
		return t
	}
	out := *t
	out.KeyPEM = d.consul.KeyPEM
	return &out
}

// consulWithToken gives spec the provider's consul_management_token when it has no ACL
// token of its own. A refresh and a destroy never get the write-only acl_token_wo
// (Terraform sends those to creates and updates only); without a token a default-deny
// agent would not say who its peers are, nor let the agent leave gracefully.
func (d *providerData) consulWithToken(spec consul.Spec) consul.Spec {
	if (spec.ACL != nil && spec.ACL.Token != "") || !d.consulHasToken() {
		return spec
	}
	acl := consul.ACL{}
	if spec.ACL != nil {
		acl = *spec.ACL
	}
	acl.Token = d.consul.ManagementToken
	spec.ACL = &acl
	return spec
}
