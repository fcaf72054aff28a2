package provider

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/providervalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/health"
)

var (
	_ provider.Provider                     = &microswarmProvider{}
	_ provider.ProviderWithConfigValidators = &microswarmProvider{}
)

// Environment variables that stand in for provider attributes.
const (
	envToken          = "DIGITALOCEAN_TOKEN"
	envTokenAlt       = "DIGITALOCEAN_ACCESS_TOKEN"
	envAPIURL         = "DIGITALOCEAN_API_URL"
	envSSHKey         = "MICROSWARM_SSH_PRIVATE_KEY"
	envSSHKeyFile     = "MICROSWARM_SSH_PRIVATE_KEY_FILE"
	envSSHUser        = "MICROSWARM_SSH_USER"
	envKnownHosts     = "MICROSWARM_SSH_KNOWN_HOSTS_FILE"
	envHostKeyPolicy  = "MICROSWARM_HOST_KEY_POLICY"
	envConnectTimeout = "MICROSWARM_CONNECT_TIMEOUT"
	envDockerCertPath = "DOCKER_CERT_PATH"
	envStackID        = "MICROSWARM_STACK_ID"
)

// New returns the provider factory for providerserver.Serve and the tests.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &microswarmProvider{version: version} }
}

type microswarmProvider struct {
	version string
}

type providerModel struct {
	DOToken           types.String `tfsdk:"do_token"`
	APIEndpoint       types.String `tfsdk:"api_endpoint"`
	SSHPrivateKey     types.String `tfsdk:"ssh_private_key"`
	SSHPrivateKeyFile types.String `tfsdk:"ssh_private_key_file"`
	SSHUser           types.String `tfsdk:"ssh_user"`
	SSHKnownHostsFile types.String `tfsdk:"ssh_known_hosts_file"`
	HostKeyPolicy     types.String `tfsdk:"host_key_policy"`
	ConnectTimeout    types.String `tfsdk:"connect_timeout"`
	DockerCertPath    types.String `tfsdk:"docker_cert_path"`
	StackID           types.String `tfsdk:"stack_id"`

	ConsulCAPEM           types.String `tfsdk:"consul_ca_pem"`
	ConsulClientCertPEM   types.String `tfsdk:"consul_client_cert_pem"`
	ConsulClientKeyPEM    types.String `tfsdk:"consul_client_key_pem"`
	ConsulManagementToken types.String `tfsdk:"consul_management_token"`
}

// providerData is what resources receive in Configure: one pool and one API client per
// provider run, shared by every resource.
type providerData struct {
	pool *conn.Pool
	// cloud is nil when no DigitalOcean token is configured; resources that need it
	// say so with cloudMissing.
	cloud *droplet.Client
	// sshPublicKey is the public half of the provider's SSH key (authorized_keys form),
	// registered with DigitalOcean for nodes that name no ssh_keys.
	sshPublicKey string
	version      string

	// registerKeyMu guards registeredKey: sshPublicKey is registered with the account
	// once per provider run, however many nodes are created in parallel. Only success is
	// kept: a failed attempt (a cancelled create, a passing API error) leaves the next
	// node free to try again.
	registerKeyMu sync.Mutex
	registeredKey string

	// catalogMu guards catalog, the account's regions, sizes and images, fetched once per
	// run (on success) to check droplet slugs at plan time.
	catalogMu sync.Mutex
	catalog   *droplet.Catalog

	// unreachableMu guards unreachable: hosts a tolerant probe found dead in this run, so
	// that the next resource on the same dead node (refreshes run in dependency order) does
	// not wait again.
	unreachableMu sync.Mutex
	unreachable   map[string]error
	// ledgerTokens holds the replace_token each failure ledger gave first in this run, so
	// that all the health data sources of one ledger answer one token in one plan.
	ledgerTokens health.RunTokens
	// liveness knows which droplets the API reports off, so refreshes and deletes do not
	// probe them over SSH.
	liveness droplet.Liveness

	// departures gathers the Consul servers whose delete began in this run, so that a
	// whole cluster going away skips the graceful leave, server by server.
	departures consul.Departures

	// dockerTLS says whether docker_cert_path gave TLS material for tcp:// hosts.
	dockerTLS bool

	// consul is how the switch gate and the health data source reach Consul (TLS, and
	// the management token their least-privilege tokens are made with).
	consul *consul.Access

	// stack ties the droplets this provider creates to its stack (stack_id and a secret
	// from the SSH key), so that only the same create of the same stack adopts a droplet
	// an interrupted apply left. Nil without an SSH key (droplet nodes refuse to plan then).
	stack *droplet.Stack
}

func (p *microswarmProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "microswarm"
	resp.Version = p.version
}

func (p *microswarmProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Turns a declarative config into a running, self-healing microservice cluster: " +
			"DigitalOcean droplets that run Docker, Consul for service discovery and a Docker Swarm over them. " +
			"Every node is reached through pure-Go SSH with pinned host keys, so no `ssh` or `docker` binary is needed " +
			"(it runs in Terraform Cloud). Every attribute can also be set by the environment variable named in its description.",
		Attributes: map[string]schema.Attribute{
			"do_token": schema.StringAttribute{
				MarkdownDescription: "DigitalOcean API token. Env: `" + envToken + "` (or `" + envTokenAlt + "`). " +
					"Needed by `microswarm_droplet_node` only.",
				Optional:  true,
				Sensitive: true,
			},
			"api_endpoint": schema.StringAttribute{
				MarkdownDescription: "Base URL of the DigitalOcean API, for a proxy or the local cloud (`tools/localcloud`). " +
					"`https://`, or `http://` only to `localhost` or a loopback address: every request carries the token. " +
					"Env: `" + envAPIURL + "`. Default: the public DigitalOcean API.",
				Optional:   true,
				Validators: []validator.String{apiEndpointValidator{}},
			},
			"ssh_private_key": schema.StringAttribute{
				MarkdownDescription: "PEM or OpenSSH private key used to reach every `ssh://` host, unencrypted. " +
					"Env: `" + envSSHKey + "`. Conflicts with `ssh_private_key_file`.",
				Optional:   true,
				Sensitive:  true,
				Validators: []validator.String{sshPrivateKeyValidator{}},
			},
			"ssh_private_key_file": schema.StringAttribute{
				MarkdownDescription: "Path of the SSH private key file. Env: `" + envSSHKeyFile + "`. Conflicts with `ssh_private_key`.",
				Optional:            true,
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"ssh_user": schema.StringAttribute{
				MarkdownDescription: "SSH user for hosts that name none. Env: `" + envSSHUser + "`. Default: `root`.",
				Optional:            true,
				Validators:          []validator.String{stringvalidator.RegexMatches(userPattern, "must be a valid user name")},
			},
			"ssh_known_hosts_file": schema.StringAttribute{
				MarkdownDescription: "OpenSSH `known_hosts` file consulted for hosts whose resource pins no `host_key`. " +
					"Env: `" + envKnownHosts + "`.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"host_key_policy": schema.StringAttribute{
				MarkdownDescription: "What to do with a host whose key nothing vouches for (no `host_key`, not in known_hosts): " +
					describeOneOf(hostKeyPolicyNames()) + ". `strict` refuses it and shows its fingerprint; " +
					"`accept-new` trusts it on first use. A key that differs from a pinned one is always refused. " +
					"Env: `" + envHostKeyPolicy + "`. Default: `strict`.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.OneOf(hostKeyPolicyNames()...)},
			},
			"connect_timeout": schema.StringAttribute{
				MarkdownDescription: "How long dialing a host and the SSH handshake may take, as a Go duration (`30s`, `2m`); also how long a node may " +
					"take to answer a new channel on an open connection, after which the connection is taken for dead and dialled afresh. " +
					"Env: `" + envConnectTimeout + "`. Default: `30s`.",
				Optional:   true,
				Validators: []validator.String{positiveDurationValidator{}},
			},
			"stack_id": schema.StringAttribute{
				MarkdownDescription: "Names this stack among the stacks that share a DigitalOcean account, e.g. `stack_id = terraform.workspace`: " +
					"1-64 letters, digits, `-` or `_`. When an apply dies between a droplet's create request and Terraform saving it, " +
					"the next apply of the same node adopts that droplet (with a warning) instead of making a second one; it adopts " +
					"only a droplet no state is known to hold (no refresh has read it), made for the same name, region and settings " +
					"by a provider with the same `stack_id` and the same SSH key, in a run that is over (its lease lapsed). A create " +
					"in flight in another run is never adopted. Without `stack_id`, such a droplet could be another workspace's " +
					"(same configuration and key), so a plan that meets one fails and says what to do, before anything is created. " +
					"Set it (one per workspace) when stacks with the same node names share an account and an SSH key. " +
					"Droplets also carry it as the tag `" + droplet.StackTagPrefix + "ID` (not shown in their `tags`). " +
					"Changing it affects only droplets created afterwards. Env: `" + envStackID + "`. Default: none.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.RegexMatches(droplet.StackIDPattern, "must be 1-64 letters, digits, '-' or '_'")},
			},
			"docker_cert_path": schema.StringAttribute{
				MarkdownDescription: "Folder with `ca.pem`, `cert.pem` and `key.pem` for `tcp://` Docker hosts (TLS). " +
					"Env: `" + envDockerCertPath + "`.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.LengthAtLeast(1)},
			},
		},
	}
	for name, a := range consulProviderAttributes() {
		resp.Schema.Attributes[name] = a
	}
}

func (p *microswarmProvider) ConfigValidators(context.Context) []provider.ConfigValidator {
	return []provider.ConfigValidator{
		providervalidator.Conflicting(path.MatchRoot("ssh_private_key"), path.MatchRoot("ssh_private_key_file")),
	}
}

func (p *microswarmProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var cfg providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	settings := resolveSettings(cfg, os.Getenv)
	settings.validate(&resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}

	data := &providerData{version: p.version, consul: settings.consulAccess(&resp.Diagnostics)}
	if resp.Diagnostics.HasError() {
		return
	}
	opts := conn.Options{
		User:           settings.sshUser,
		KnownHostsFile: settings.knownHostsFile,
		HostKeyPolicy:  conn.HostKeyPolicy(settings.hostKeyPolicy),
		ConnectTimeout: settings.connectTimeout,
	}
	switch {
	case settings.sshKey != "":
		opts.PrivateKey = []byte(settings.sshKey)
	case settings.sshKeyFile != "":
		key, err := os.ReadFile(settings.sshKeyFile)
		if err != nil {
			attrError(&resp.Diagnostics, path.Root("ssh_private_key_file"), "Unreadable SSH Private Key File",
				fmt.Sprintf("Reading %s: %s.", settings.sshKeyFile, err))
			return
		}
		opts.PrivateKey = key
	}
	if len(opts.PrivateKey) > 0 {
		signer, err := ssh.ParsePrivateKey(opts.PrivateKey)
		if err != nil {
			attrError(&resp.Diagnostics, settings.sshKeyPath(), "Invalid SSH Private Key",
				"The SSH private key could not be parsed: "+err.Error()+". Provide an unencrypted PEM or OpenSSH private key.")
			return
		}
		data.sshPublicKey = conn.AuthorizedKey(signer.PublicKey())
		stack, err := droplet.NewStack(settings.stackID, opts.PrivateKey)
		if err != nil {
			attrError(&resp.Diagnostics, settings.sshKeyPath(), "Invalid SSH Private Key",
				"Deriving the stack's secret from the SSH private key: "+err.Error()+".")
			return
		}
		data.stack = stack
	}
	if settings.dockerCertPath != "" {
		material, err := conn.LoadTLSMaterial(settings.dockerCertPath)
		if err != nil {
			attrError(&resp.Diagnostics, path.Root("docker_cert_path"), "Unreadable Docker TLS Material", err.Error())
			return
		}
		opts.TLS = material
		data.dockerTLS = true
	}
	pool, err := conn.NewPool(opts)
	if err != nil {
		resp.Diagnostics.AddError("Invalid Connection Settings", err.Error())
		return
	}
	data.pool = pool

	if settings.token != "" {
		cloud, err := droplet.NewClient(droplet.ClientOptions{
			Token:     settings.token,
			BaseURL:   settings.apiEndpoint,
			UserAgent: "terraform-provider-microswarm/" + p.version,
		})
		if err != nil {
			attrError(&resp.Diagnostics, path.Root("api_endpoint"), "Invalid DigitalOcean API Settings", err.Error())
			return
		}
		data.cloud = cloud
	}

	resp.ResourceData = data
	resp.DataSourceData = data
}

func (p *microswarmProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		NewDropletNodeResource,
		NewSwarmClusterResource,
		NewConsulServerResource, NewConsulAgentResource,
		NewRegistratorResource,
		NewMicroserviceResource,
	}
}

func (p *microswarmProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{NewHealthDataSource}
}

// settings are the provider's effective configuration: attributes, else environment
// variables, else defaults.
type settings struct {
	token, apiEndpoint            string
	sshKey, sshKeyFile, sshUser   string
	knownHostsFile, hostKeyPolicy string
	connectTimeoutText            string
	connectTimeout                time.Duration
	dockerCertPath                string
	stackID                       string
	consulCAPEM, consulCertPEM    string
	consulKeyPEM                  string
	consulManagementToken         string
}

func resolveSettings(cfg providerModel, getenv func(string) string) settings {
	pick := func(v types.String, envs ...string) string {
		if !v.IsNull() && !v.IsUnknown() {
			return v.ValueString()
		}
		for _, e := range envs {
			if s := getenv(e); s != "" {
				return s
			}
		}
		return ""
	}
	s := settings{
		token:              pick(cfg.DOToken, envToken, envTokenAlt),
		apiEndpoint:        pick(cfg.APIEndpoint, envAPIURL),
		sshKey:             pick(cfg.SSHPrivateKey, envSSHKey),
		sshKeyFile:         pick(cfg.SSHPrivateKeyFile, envSSHKeyFile),
		sshUser:            pick(cfg.SSHUser, envSSHUser),
		knownHostsFile:     pick(cfg.SSHKnownHostsFile, envKnownHosts),
		hostKeyPolicy:      pick(cfg.HostKeyPolicy, envHostKeyPolicy),
		connectTimeoutText: pick(cfg.ConnectTimeout, envConnectTimeout),
		dockerCertPath:     pick(cfg.DockerCertPath, envDockerCertPath),
		stackID:            pick(cfg.StackID, envStackID),

		consulCAPEM:           pick(cfg.ConsulCAPEM, envConsulCAPEM),
		consulCertPEM:         pick(cfg.ConsulClientCertPEM, envConsulClientCertPEM),
		consulKeyPEM:          pick(cfg.ConsulClientKeyPEM, envConsulClientKeyPEM),
		consulManagementToken: pick(cfg.ConsulManagementToken, envConsulManagementToken),
	}
	// An attribute wins over the environment, so a key file from the environment
	// does not conflict with a key set in the config, and vice versa.
	if s.sshKey != "" && s.sshKeyFile != "" {
		if !cfg.SSHPrivateKey.IsNull() {
			s.sshKeyFile = ""
		} else if !cfg.SSHPrivateKeyFile.IsNull() {
			s.sshKey = ""
		}
	}
	if s.sshUser == "" {
		s.sshUser = conn.DefaultUser
	}
	if s.hostKeyPolicy == "" {
		s.hostKeyPolicy = string(conn.HostKeyStrict)
	}
	return s
}

// validate checks what the schema validators could not see: values from the environment.
func (s *settings) validate(diags *diag.Diagnostics) {
	if s.apiEndpoint != "" {
		if err := checkAPIEndpoint(s.apiEndpoint); errors.Is(err, errPlainHTTP) {
			attrError(diags, path.Root("api_endpoint"), "Insecure API Endpoint",
				fmt.Sprintf("api_endpoint: %s (from the config or %s).", err, envAPIURL))
		} else if err != nil {
			attrError(diags, path.Root("api_endpoint"), "Invalid API Endpoint", fmt.Sprintf("api_endpoint: %s (from the config or %s).", err, envAPIURL))
		}
	}
	if s.sshKey != "" && s.sshKeyFile != "" {
		attrError(diags, path.Root("ssh_private_key"), "Conflicting SSH Keys",
			fmt.Sprintf("Both %s and %s are set; set only one.", envSSHKey, envSSHKeyFile))
	}
	if !oneOf(s.hostKeyPolicy, hostKeyPolicyNames()) {
		attrError(diags, path.Root("host_key_policy"), "Invalid Host Key Policy",
			fmt.Sprintf("%q (from %s) is not one of %s.", s.hostKeyPolicy, envHostKeyPolicy, strings.Join(hostKeyPolicyNames(), ", ")))
	}
	if !userPattern.MatchString(s.sshUser) {
		attrError(diags, path.Root("ssh_user"), "Invalid SSH User", fmt.Sprintf("%q (from %s) is not a valid user name.", s.sshUser, envSSHUser))
	}
	if s.stackID != "" && !droplet.StackIDPattern.MatchString(s.stackID) {
		attrError(diags, path.Root("stack_id"), "Invalid Stack ID",
			fmt.Sprintf("stack_id: %q (from the config or %s) must be 1-64 letters, digits, '-' or '_'.", s.stackID, envStackID))
	}
	s.connectTimeout = conn.DefaultConnectTimeout
	if s.connectTimeoutText != "" {
		d, err := parsePositiveDuration(s.connectTimeoutText)
		if err != nil {
			attrError(diags, path.Root("connect_timeout"), "Invalid Connect Timeout", fmt.Sprintf("%s (from the config or %s).", err, envConnectTimeout))
		}
		s.connectTimeout = d
	}
}

func (s *settings) sshKeyPath() path.Path {
	if s.sshKey != "" {
		return path.Root("ssh_private_key")
	}
	return path.Root("ssh_private_key_file")
}

func hostKeyPolicyNames() []string { return stringsOf(conn.HostKeyPolicies) }

func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	return nil
}

// errPlainHTTP is wrapped by checkAPIEndpoint's error for http:// to a remote host.
var errPlainHTTP = errors.New("plain http to a non-loopback host")

// checkAPIEndpoint accepts https URLs, and http only to loopback (the local cloud):
// every request carries the API token, which plain http would send in clear.
func checkAPIEndpoint(raw string) error {
	if err := checkHTTPURL(raw); err != nil {
		return err
	}
	u, _ := url.Parse(raw)
	if u.Scheme == "https" || conn.IsLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%w: %q would send the DigitalOcean token in clear; use https://, or http:// only to localhost or a loopback address", errPlainHTTP, raw)
}
