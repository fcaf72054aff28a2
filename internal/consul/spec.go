package consul

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
)

// Role is the kind of agent a container runs; it is also the value of LabelRole.
type Role string

const (
	RoleServer Role = "consul-server"
	RoleAgent  Role = "consul-agent"
)

// Defaults users see in the schema.
const (
	DefaultImage               = "hashicorp/consul:1.20.5"
	DefaultServerContainerName = "consul-server"
	DefaultAgentContainerName  = "consul-agent"
	DefaultDatacenter          = "dc1"
	DefaultClientAddr          = "127.0.0.1"
)

// Labels on every container this package makes. The hash label is how a changed
// config, or a container someone recreated by hand, is told apart from ours.
const (
	LabelManagedBy  = "io.microswarm.managed-by"
	ManagedByValue  = "terraform-provider-microswarm"
	LabelRole       = "io.microswarm.role"
	LabelConfigHash = "io.microswarm.config-hash"
)

// Paths inside the container, as the official image (hashicorp/consul) lays them out. Its
// entrypoint, docker-entrypoint.sh, runs `agent ARGS` as
// `consul agent -data-dir=DataDir -config-dir=ConfigDir ARGS`, hands both directories to
// the consul user and drops to that user (su-exec) before Consul starts; so the provider
// passes neither directory, and what it copies into the container belongs to that user.
// tools/images/README.md lists what the image does and how the local one matches it.
const (
	Binary     = "/bin/consul"
	DataDir    = "/consul/data"
	ConfigDir  = "/consul/config"
	ConfigFile = ConfigDir + "/microswarm.json"
	TLSDir     = "/consul/tls"
	CAFile     = TLSDir + "/ca.pem"
	CertFile   = TLSDir + "/cert.pem"
	KeyFile    = TLSDir + "/key.pem"
)

// The user Consul runs as: the official image's consul user (uid 100, gid 1000, made by
// Alpine's adduser -S and addgroup). The container gets them as CONSUL_UID/CONSUL_GID, which
// the entrypoint drops to, so the files copied in with this owner are readable by Consul
// even from an image whose consul user has other ids.
const (
	UID = 100
	GID = 1000
)

// PortDisabled turns a listener off, as in Consul's own config.
const PortDisabled = -1

// Ports are the agent's listeners. Server, SerfWAN and GRPCTLS matter to servers only.
type Ports struct {
	// HTTP is the API port; with TLS the API is served over HTTPS on it and plain HTTP is off.
	HTTP    int
	DNS     int
	Server  int
	SerfLAN int
	SerfWAN int
	GRPCTLS int
}

// DefaultPorts are Consul's defaults for a role.
func DefaultPorts(role Role) Ports {
	p := Ports{HTTP: 8500, DNS: 8600, SerfLAN: 8301}
	if role == RoleServer {
		p.Server, p.SerfWAN, p.GRPCTLS = 8300, 8302, 8503
	}
	return p
}

// TLS is the agent's TLS material (PEM) and verification settings.
type TLS struct {
	CAPEM   string
	CertPEM string
	KeyPEM  string
	// KeyWriteOnly says the key was given write-only: Hash stands a marker for it, as for
	// a write-only gossip key, so a plan (which never has it) hashes as an apply does.
	KeyWriteOnly         bool
	VerifyIncoming       bool
	VerifyOutgoing       bool
	VerifyServerHostname bool
}

// Spec is everything one agent container is made from.
type Spec struct {
	Role          Role
	ContainerName string
	Image         string
	Datacenter    string
	// NodeName is the Consul node name; empty means the host's hostname.
	NodeName      string
	AdvertiseAddr string
	ClientAddr    string
	// BootstrapExpect is for servers only.
	BootstrapExpect int
	// RaftMultiplier scales a server's raft timings (performance.raft_multiplier, 1 to
	// 10); 0 leaves Consul's default, 5. At 1 an election takes about a second instead of
	// five. Servers only.
	RaftMultiplier int
	RetryJoin      []string
	UI             bool
	Ports          Ports
	// Encrypt is the gossip key (base64); it goes into the config file, never the command line.
	Encrypt string
	// EncryptWriteOnly says the key comes from a write-only attribute: the plan does not
	// have it, and a new key is rotated into the running cluster's keyring (RotateGossipKey)
	// rather than put into a new container, so Hash covers only that a key is set.
	EncryptWriteOnly bool
	TLS              *TLS
	// ACL turns ACLs on; nil leaves them off.
	ACL *ACL
}

var (
	containerNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)
	// DatacenterPattern is what Consul accepts as a datacenter name.
	DatacenterPattern = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	// NodeNamePattern keeps node names resolvable through Consul DNS.
	NodeNamePattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
)

// ContainerNamePattern is what Docker accepts as a container name.
func ContainerNamePattern() *regexp.Regexp { return containerNamePattern }

// ValidateGossipKey accepts what `consul keygen` prints: 32 (or 16 or 24) random bytes,
// standard base64.
func ValidateGossipKey(key string) error {
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return errors.New("the gossip key is not standard base64; generate one with `consul keygen`")
	}
	switch len(raw) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("the gossip key decodes to %d bytes; Consul wants 32 (or 16 or 24), as `consul keygen` prints", len(raw))
}

// ValidateIP accepts a single IPv4 or IPv6 address.
func ValidateIP(s string) error {
	if net.ParseIP(s) == nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	return nil
}

// ValidatePort accepts 1-65535, and -1 (off) when the listener may be turned off.
func ValidatePort(port int, mayDisable bool) error {
	if port >= 1 && port <= 65535 {
		return nil
	}
	if mayDisable && port == PortDisabled {
		return nil
	}
	if mayDisable {
		return fmt.Errorf("port %d is not 1-65535 or -1 (off)", port)
	}
	return fmt.Errorf("port %d is not 1-65535", port)
}

// ValidateTLS checks that the CA parses and that the certificate and key are a pair.
func ValidateTLS(t TLS) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(t.CAPEM)) {
		return errors.New("ca_pem holds no PEM certificate")
	}
	if _, err := tls.X509KeyPair([]byte(t.CertPEM), []byte(t.KeyPEM)); err != nil {
		return fmt.Errorf("cert_pem and key_pem are not a certificate and its key: %w", err)
	}
	return nil
}

// Validate checks a spec before anything is created from it.
func (s Spec) Validate() error {
	var errs []error
	if s.Role != RoleServer && s.Role != RoleAgent {
		errs = append(errs, fmt.Errorf("unknown role %q", s.Role))
	}
	if !containerNamePattern.MatchString(s.ContainerName) {
		errs = append(errs, fmt.Errorf("%q is not a valid container name", s.ContainerName))
	}
	if strings.TrimSpace(s.Image) == "" || strings.ContainsAny(s.Image, " \t\n") {
		errs = append(errs, fmt.Errorf("%q is not an image reference", s.Image))
	}
	if !DatacenterPattern.MatchString(s.Datacenter) {
		errs = append(errs, fmt.Errorf("%q is not a valid datacenter name (lower-case letters, digits, '_' and '-')", s.Datacenter))
	}
	if s.NodeName != "" && !NodeNamePattern.MatchString(s.NodeName) {
		errs = append(errs, fmt.Errorf("%q is not a valid node name", s.NodeName))
	}
	if err := ValidateIP(s.AdvertiseAddr); err != nil {
		errs = append(errs, fmt.Errorf("advertise address: %w", err))
	}
	if err := ValidateIP(s.ClientAddr); err != nil {
		errs = append(errs, fmt.Errorf("client address: %w", err))
	}
	if s.Role == RoleServer && s.BootstrapExpect < 1 {
		errs = append(errs, fmt.Errorf("bootstrap_expect must be at least 1, got %d", s.BootstrapExpect))
	}
	if s.RaftMultiplier != 0 && (s.Role != RoleServer || s.RaftMultiplier < 1 || s.RaftMultiplier > MaxRaftMultiplier) {
		errs = append(errs, fmt.Errorf("raft_multiplier must be 1 to %d, on a server only, got %d", MaxRaftMultiplier, s.RaftMultiplier))
	}
	if s.Role == RoleAgent && len(s.RetryJoin) == 0 {
		errs = append(errs, errors.New("a client agent needs at least one retry_join address"))
	}
	for _, j := range s.RetryJoin {
		if strings.TrimSpace(j) == "" || strings.ContainsAny(j, " \t\n") {
			errs = append(errs, fmt.Errorf("retry_join entry %q is empty or has spaces", j))
		}
	}
	errs = append(errs, s.validatePorts()...)
	if s.Encrypt != "" {
		if err := ValidateGossipKey(s.Encrypt); err != nil {
			errs = append(errs, err)
		}
	} else if s.EncryptWriteOnly {
		errs = append(errs, errors.New("the write-only gossip key is missing (encrypt_wo is set only in the configuration, never in the plan or state)"))
	}
	if s.TLS != nil {
		if err := ValidateTLS(*s.TLS); err != nil {
			errs = append(errs, err)
		}
	}
	if s.ACL != nil {
		if !slices.Contains(ACLPolicies, s.ACL.DefaultPolicy) {
			errs = append(errs, fmt.Errorf("acl default policy %q is not one of %v", s.ACL.DefaultPolicy, ACLPolicies))
		}
		if err := ValidateACLToken(s.ACL.Token); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s Spec) validatePorts() []error {
	var errs []error
	check := func(name string, port int, mayDisable bool) {
		if err := ValidatePort(port, mayDisable); err != nil {
			errs = append(errs, fmt.Errorf("ports.%s: %w", name, err))
		}
	}
	check("http", s.Ports.HTTP, false)
	check("dns", s.Ports.DNS, true)
	check("serf_lan", s.Ports.SerfLAN, false)
	if s.Role == RoleServer {
		check("server", s.Ports.Server, false)
		check("serf_wan", s.Ports.SerfWAN, true)
		check("grpc_tls", s.Ports.GRPCTLS, true)
	}
	return errs
}

// Args is the agent's command line after the entrypoint. Only non-secret settings are
// here: they are readable by anyone who can inspect the container.
func (s Spec) Args() []string {
	args := []string{"agent"}
	if s.Role == RoleServer {
		args = append(args, "-server", "-bootstrap-expect="+strconv.Itoa(s.BootstrapExpect))
	}
	args = append(args, "-datacenter="+s.Datacenter)
	if s.NodeName != "" {
		args = append(args, "-node="+s.NodeName)
	}
	// The image's entrypoint adds -data-dir and -config-dir (see DataDir): passing
	// -config-dir again would load every file in it twice.
	args = append(args,
		"-bind="+s.AdvertiseAddr,
		"-advertise="+s.AdvertiseAddr,
		"-client="+s.ClientAddr,
	)
	if s.TLS != nil {
		args = append(args, "-http-port=-1", "-https-port="+strconv.Itoa(s.Ports.HTTP))
	} else {
		args = append(args, "-http-port="+strconv.Itoa(s.Ports.HTTP), "-https-port=-1")
	}
	args = append(args, "-dns-port="+strconv.Itoa(s.Ports.DNS), "-serf-lan-port="+strconv.Itoa(s.Ports.SerfLAN))
	if s.Role == RoleServer {
		args = append(args,
			"-server-port="+strconv.Itoa(s.Ports.Server),
			"-serf-wan-port="+strconv.Itoa(s.Ports.SerfWAN),
			"-grpc-tls-port="+strconv.Itoa(s.Ports.GRPCTLS),
		)
	}
	if s.Role == RoleServer && s.RaftMultiplier != 0 {
		// No flag of its own: a one-setting HCL fragment, which ParseArgs reads back.
		args = append(args, fmt.Sprintf("-hcl=%s", fmt.Sprintf(raftMultiplierHCL, s.RaftMultiplier)))
	}
	for _, j := range s.RetryJoin {
		args = append(args, "-retry-join="+j)
	}
	if s.UI {
		args = append(args, "-ui")
	}
	return args
}

// MaxRaftMultiplier is the largest performance.raft_multiplier Consul accepts.
const MaxRaftMultiplier = 10

// raftMultiplierHCL is the -hcl fragment that sets the raft multiplier.
const raftMultiplierHCL = "performance { raft_multiplier = %d }"

// ParseArgs reads a command line Args rendered back into a spec, for Read and import.
// Image and ContainerName are not on the command line; secrets and TLS material are not
// either, so https only says whether the API is served over TLS.
func ParseArgs(args []string) (spec Spec, https bool, err error) {
	if len(args) == 0 || args[0] != "agent" {
		return Spec{}, false, fmt.Errorf("the command %q does not run a Consul agent", strings.Join(args, " "))
	}
	spec.Role = RoleAgent
	httpPort, httpsPort := 0, 0
	ports := map[string]*int{
		"dns-port": &spec.Ports.DNS, "serf-lan-port": &spec.Ports.SerfLAN, "server-port": &spec.Ports.Server,
		"serf-wan-port": &spec.Ports.SerfWAN, "grpc-tls-port": &spec.Ports.GRPCTLS,
		"http-port": &httpPort, "https-port": &httpsPort,
	}
	for _, arg := range args[1:] {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") {
			return Spec{}, false, fmt.Errorf("unexpected argument %q", arg)
		}
		if target, ok := ports[name]; ok {
			n, err := strconv.Atoi(value)
			if err != nil {
				return Spec{}, false, fmt.Errorf("flag -%s: %q is not a port", name, value)
			}
			*target = n
			continue
		}
		switch name {
		case "server":
			spec.Role = RoleServer
		case "ui":
			spec.UI = !hasValue || value == "true"
		case "bootstrap-expect":
			n, err := strconv.Atoi(value)
			if err != nil {
				return Spec{}, false, fmt.Errorf("flag -bootstrap-expect: %q is not a number", value)
			}
			spec.BootstrapExpect = n
		case "datacenter":
			spec.Datacenter = value
		case "node":
			spec.NodeName = value
		case "advertise":
			spec.AdvertiseAddr = value
		case "client":
			spec.ClientAddr = value
		case "retry-join":
			spec.RetryJoin = append(spec.RetryJoin, value)
		case "hcl":
			if _, err := fmt.Sscanf(value, raftMultiplierHCL, &spec.RaftMultiplier); err != nil || fmt.Sprintf(raftMultiplierHCL, spec.RaftMultiplier) != value {
				return Spec{}, false, fmt.Errorf("flag -hcl: %q is not a setting this provider makes", value)
			}
		case "bind", "data-dir", "config-dir":
			// Equal to another flag, or (from containers made before the image's entrypoint
			// was used) fixed by this package.
		default:
			return Spec{}, false, fmt.Errorf("unknown flag %q", arg)
		}
	}
	https = httpPort == PortDisabled && httpsPort > 0
	spec.Ports.HTTP = httpPort
	if https {
		spec.Ports.HTTP = httpsPort
	}
	return spec, https, nil
}

// File is one file copied into the container before it starts.
type File struct {
	Path    string
	Mode    int64
	Content []byte
}

// Files are the config file (always present, so -config-dir always has something to
// read) and the TLS material.
func (s Spec) Files() []File {
	// No call home: an agent checks HashiCorp's update service by default, traffic a
	// cluster (and the local cloud's nodes) must not make.
	cfg := map[string]any{"disable_update_check": true}
	if s.Encrypt != "" {
		cfg["encrypt"] = s.Encrypt
	}
	files := []File{}
	if s.TLS != nil {
		cfg["tls"] = map[string]any{
			"defaults": map[string]any{
				"ca_file":         CAFile,
				"cert_file":       CertFile,
				"key_file":        KeyFile,
				"verify_incoming": s.TLS.VerifyIncoming,
				"verify_outgoing": s.TLS.VerifyOutgoing,
			},
			"internal_rpc": map[string]any{
				"verify_server_hostname": s.TLS.VerifyServerHostname,
			},
		}
		files = append(files,
			File{Path: CAFile, Mode: 0o644, Content: []byte(s.TLS.CAPEM)},
			File{Path: CertFile, Mode: 0o644, Content: []byte(s.TLS.CertPEM)},
			File{Path: KeyFile, Mode: 0o600, Content: []byte(s.TLS.KeyPEM)},
		)
	}
	if s.ACL != nil {
		acl := map[string]any{
			"enabled":        true,
			"default_policy": s.ACL.DefaultPolicy,
			// The agent token the provider sets through the API survives restarts.
			"enable_token_persistence": true,
		}
		if s.Role == RoleServer {
			acl["tokens"] = map[string]any{"initial_management": s.ACL.Token}
		}
		cfg["acl"] = acl
	}
	// encoding/json sorts map keys, so the file, and the hash, are stable.
	body, _ := json.MarshalIndent(cfg, "", "  ")
	return append([]File{{Path: ConfigFile, Mode: 0o600, Content: append(body, '\n')}}, files...)
}

// VolumeName is the named volume holding the agent's data (node ID, raft log, keyring).
func (s Spec) VolumeName() string { return s.ContainerName + "-data" }

// Hash identifies everything the container is made from. It covers the secrets too, so
// a changed key is a changed container; a SHA-256 of high-entropy keys reveals nothing.
//
// RetryJoin is left out: it only says where to find the cluster when the agent starts, so
// a running member need not restart when it changes (a replaced node's new address would
// otherwise restart every healthy server at once, with the quorum already one short).
func (s Spec) Hash() string {
	s.RetryJoin = nil
	if s.EncryptWriteOnly {
		s.Encrypt = writeOnlyKeyMarker
	}
	if s.ACL != nil {
		acl := *s.ACL
		acl.Token = writeOnlyKeyMarker
		s.ACL = &acl
	}
	if s.TLS != nil && s.TLS.KeyWriteOnly {
		t := *s.TLS
		t.KeyPEM = writeOnlyKeyMarker
		s.TLS = &t
	}
	cfg, host := s.containerConfig(), s.HostConfig()
	h := sha256.New()
	enc := json.NewEncoder(h)
	_ = enc.Encode([]any{"v3", cfg.Image, cfg.Entrypoint, cfg.Cmd, cfg.Env, host.NetworkMode, host.RestartPolicy, host.Mounts, host.LogConfig})
	for _, f := range s.Files() {
		_ = enc.Encode([]any{f.Path, f.Mode, f.Content})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeOnlyKeyMarker stands for a write-only key or token in Hash.
const writeOnlyKeyMarker = "(write-only)"

// Labels mark the container as this provider's, with its role and config hash.
func (s Spec) Labels() map[string]string {
	return map[string]string{
		LabelManagedBy:  ManagedByValue,
		LabelRole:       string(s.Role),
		LabelConfigHash: s.Hash(),
	}
}

// containerConfig runs the image's own entrypoint (no Entrypoint here), which runs Consul
// as UID:GID; CLI commands the provider execs in the container run as root and read the
// same files.
func (s Spec) containerConfig() *container.Config {
	return &container.Config{
		Image: s.Image,
		Cmd:   s.Args(),
		Env:   []string{"CONSUL_UID=" + strconv.Itoa(UID), "CONSUL_GID=" + strconv.Itoa(GID)},
	}
}

// ContainerConfig is the container's config, labels included.
func (s Spec) ContainerConfig() *container.Config {
	cfg := s.containerConfig()
	cfg.Labels = s.Labels()
	return cfg
}

// HostConfig runs the agent on the host's network (Consul must see and advertise the
// node's own addresses), restarts it with the engine, and keeps its data on the volume.
func (s Spec) HostConfig() *container.HostConfig {
	return &container.HostConfig{
		NetworkMode:   "host",
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: s.VolumeName(), Target: DataDir}},
		// Bounded logs: an agent runs for months on a small droplet.
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
	}
}

// APIAddress is the agent's HTTP(S) API as seen from its host: the client address, or
// loopback when the agent listens on every address.
func (s Spec) APIAddress() string {
	host := s.ClientAddr
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(s.Ports.HTTP))
}

// APIScheme is https when the agent has TLS.
func (s Spec) APIScheme() string {
	if s.TLS != nil {
		return "https"
	}
	return "http"
}

// HTTPAddr is the API address in the form CONSUL_HTTP_ADDR takes: host:port, with an
// https:// prefix when the API is served over TLS.
func (s Spec) HTTPAddr() string {
	if s.TLS != nil {
		return "https://" + s.APIAddress()
	}
	return s.APIAddress()
}

// CLIEnv is the environment the consul CLI needs inside the container to reach the agent.
func (s Spec) CLIEnv() []string {
	env := []string{"CONSUL_HTTP_ADDR=" + s.HTTPAddr()}
	if s.TLS != nil {
		env = append(env, "CONSUL_CACERT="+CAFile, "CONSUL_CLIENT_CERT="+CertFile, "CONSUL_CLIENT_KEY="+KeyFile)
	}
	// The exec's environment, not the container's: no inspect output shows it.
	if s.ACL != nil && s.ACL.Token != "" {
		env = append(env, "CONSUL_HTTP_TOKEN="+s.ACL.Token)
	}
	return env
}
