package provider

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// testAccProtoV6ProviderFactories serve the provider in-process to the real terraform.
var testAccProtoV6ProviderFactories = map[string]func() (tfprotov6.ProviderServer, error){
	"microswarm": providerserver.NewProtocol6WithError(New("test")()),
}

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }

// A droplet node block makes terraform configure the provider during plan.
const anyNode = `
resource "microswarm_droplet_node" "n" {
  name   = "n1"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
}
`

func TestProviderConfigIsValidatedAtPlanTime(t *testing.T) {
	tlsPEMs := consultest.NewTLS(t)
	cases := map[string]struct {
		config  string
		env     map[string]string
		wantErr string
	}{
		"api_endpoint must be http(s)": {config: `api_endpoint = "ftp://example.invalid"`, wantErr: `Invalid URL`},
		"ssh_private_key must parse":   {config: `ssh_private_key = "not a key"`, wantErr: `Invalid SSH Private Key`},
		"one ssh key source":           {config: "ssh_private_key_file = \"/k\"\nssh_private_key = \"x\"", wantErr: `(?s)ssh_private_key.*ssh_private_key_file|Invalid Attribute Combination`},
		"host_key_policy is an enum":   {config: `host_key_policy = "yolo"`, wantErr: `value must be one of`},
		"connect_timeout is positive":  {config: `connect_timeout = "-1s"`, wantErr: `Invalid Duration`},
		"ssh_user is a user name":      {config: `ssh_user = "root; rm"`, wantErr: `must be a valid user name`},
		"env policy is checked too":    {env: map[string]string{envHostKeyPolicy: "yolo"}, wantErr: `Invalid Host Key Policy`},
		"env timeout is checked too":   {env: map[string]string{envConnectTimeout: "soon"}, wantErr: `Invalid Connect Timeout`},
		"env endpoint is checked too":  {env: map[string]string{envAPIURL: "not-a-url"}, wantErr: `Invalid API Endpoint`},
		"stack_id goes into a tag":     {config: `stack_id = "prod.eu"`, wantErr: `(?s)stack_id.*1-64 letters, digits`},
		"stack_id is not too long":     {config: `stack_id = "` + strings.Repeat("s", 65) + `"`, wantErr: `(?s)stack_id.*1-64 letters, digits`},
		"env stack_id is checked too":  {env: map[string]string{envStackID: "prod eu"}, wantErr: `(?s)Invalid Stack ID.*stack_id: "prod eu"`},
		// The token would travel in clear: refused at plan time when literal...
		"plain http to a remote host": {config: `api_endpoint = "http://api.example.invalid/"`, wantErr: `(?s)Insecure API Endpoint.*api_endpoint`},
		"plain http to a remote IP":   {config: `api_endpoint = "http://192.0.2.7:8080"`, wantErr: `(?s)Insecure API Endpoint.*api_endpoint`},
		// ...and in Configure when it comes from the environment.
		"env plain http to a remote host":    {env: map[string]string{envAPIURL: "http://api.example.invalid"}, wantErr: `(?s)Insecure API Endpoint.*api_endpoint`},
		"consul_ca_pem is a certificate":     {config: `consul_ca_pem = "not a pem"`, wantErr: `(?s)consul_ca_pem.*PEM certificate`},
		"a consul client cert needs its key": {config: "consul_ca_pem = " + pemLiteral(tlsPEMs.CAPEM) + "\nconsul_client_cert_pem = " + pemLiteral(tlsPEMs.CertPEM), wantErr: `(?s)consul_client_key_pem.*must be specified`},
		"consul_management_token is a UUID":  {config: `consul_management_token = "root"`, wantErr: `(?s)consul_management_token.*UUID`},
		"env consul token is checked too":    {env: map[string]string{envConsulManagementToken: "root"}, wantErr: `(?s)Invalid ACL Token.*MICROSWARM_CONSUL_MANAGEMENT_TOKEN`},
		"env consul cert needs the CA":       {env: map[string]string{envConsulClientCertPEM: tlsPEMs.CertPEM, envConsulClientKeyPEM: tlsPEMs.KeyPEM}, wantErr: `(?s)Invalid Consul TLS Material.*needs the CA`},
		"droplets need a token at plan":      {env: map[string]string{envToken: "", envTokenAlt: ""}, wantErr: `Missing DigitalOcean Token`},
		"droplets need an ssh key at plan":   {env: map[string]string{envSSHKey: "", envSSHKeyFile: ""}, wantErr: `Missing SSH Private Key`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			resource.UnitTest(t, resource.TestCase{
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				Steps: []resource.TestStep{{
					Config:      "provider \"microswarm\" {\n" + tc.config + "\n}\n" + anyNode,
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(tc.wantErr),
				}},
			})
		})
	}
}

func TestAPIEndpointRefusesPlainHTTPToRemoteHosts(t *testing.T) {
	t.Parallel()
	cases := map[string]bool{ // endpoint: accepted
		"https://api.digitalocean.com":  true,
		"http://127.0.0.1:8081":         true,
		"http://127.5.6.7":              true,
		"http://localhost:8081/":        true,
		"http://[::1]:8081":             true,
		"http://api.example.invalid":    false,
		"http://10.0.0.5:8081":          false,
		"http://localhost.example.com/": false,
		"http://[2001:db8::1]:80":       false,
	}
	for endpoint, accepted := range cases {
		t.Run(endpoint, func(t *testing.T) {
			t.Parallel()
			err := checkAPIEndpoint(endpoint)
			if accepted && err != nil {
				t.Fatalf("checkAPIEndpoint(%q) = %v, want it accepted", endpoint, err)
			}
			if !accepted && !errors.Is(err, errPlainHTTP) {
				t.Fatalf("checkAPIEndpoint(%q) = %v, want a plain-http refusal", endpoint, err)
			}
		})
	}
}

// pemLiteral is a PEM as an HCL heredoc.
func pemLiteral(pem string) string { return "<<EOT\n" + pem + "EOT\n" }
