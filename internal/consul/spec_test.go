package consul

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

const testGossipKey = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="

func serverSpec() Spec {
	return Spec{
		Role:            RoleServer,
		ContainerName:   DefaultServerContainerName,
		Image:           DefaultImage,
		Datacenter:      DefaultDatacenter,
		AdvertiseAddr:   "10.10.0.2",
		ClientAddr:      DefaultClientAddr,
		BootstrapExpect: 3,
		RetryJoin:       []string{"10.10.0.2", "10.10.0.3", "10.10.0.4"},
		Ports:           DefaultPorts(RoleServer),
	}
}

func agentSpec() Spec {
	return Spec{
		Role:          RoleAgent,
		ContainerName: DefaultAgentContainerName,
		Image:         DefaultImage,
		Datacenter:    DefaultDatacenter,
		AdvertiseAddr: "10.10.0.5",
		ClientAddr:    DefaultClientAddr,
		RetryJoin:     []string{"10.10.0.2"},
		Ports:         DefaultPorts(RoleAgent),
	}
}

func TestArgsRenderTheAgentCommandLine(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		spec Spec
		want []string
	}{
		"server with defaults": {
			spec: serverSpec(),
			want: []string{"agent", "-server", "-bootstrap-expect=3", "-datacenter=dc1",
				"-bind=10.10.0.2", "-advertise=10.10.0.2", "-client=127.0.0.1",
				"-http-port=8500", "-https-port=-1", "-dns-port=8600", "-serf-lan-port=8301",
				"-server-port=8300", "-serf-wan-port=8302", "-grpc-tls-port=8503",
				"-retry-join=10.10.0.2", "-retry-join=10.10.0.3", "-retry-join=10.10.0.4"},
		},
		"agent with a node name and the ui": {
			spec: func() Spec { s := agentSpec(); s.NodeName = "web-1"; s.UI = true; return s }(),
			want: []string{"agent", "-datacenter=dc1", "-node=web-1",
				"-bind=10.10.0.5", "-advertise=10.10.0.5", "-client=127.0.0.1",
				"-http-port=8500", "-https-port=-1", "-dns-port=8600", "-serf-lan-port=8301",
				"-retry-join=10.10.0.2", "-ui"},
		},
		"server with raft at full speed": {
			spec: func() Spec { s := serverSpec(); s.RetryJoin = nil; s.RaftMultiplier = 1; return s }(),
			want: []string{"agent", "-server", "-bootstrap-expect=3", "-datacenter=dc1",
				"-bind=10.10.0.2", "-advertise=10.10.0.2", "-client=127.0.0.1",
				"-http-port=8500", "-https-port=-1", "-dns-port=8600", "-serf-lan-port=8301",
				"-server-port=8300", "-serf-wan-port=8302", "-grpc-tls-port=8503",
				"-hcl=performance { raft_multiplier = 1 }"},
		},
		"tls moves the api to https on the same port": {
			spec: func() Spec { s := agentSpec(); s.TLS = &TLS{}; s.Ports.HTTP = 9500; return s }(),
			want: []string{"agent", "-datacenter=dc1",
				"-bind=10.10.0.5", "-advertise=10.10.0.5", "-client=127.0.0.1",
				"-http-port=-1", "-https-port=9500", "-dns-port=8600", "-serf-lan-port=8301",
				"-retry-join=10.10.0.2"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := tc.spec.Args(); !slices.Equal(got, tc.want) {
				t.Errorf("Args()\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestSecretsNeverReachTheCommandLineOrLabels(t *testing.T) {
	t.Parallel()
	tlsMaterial := newTestTLS(t)
	s := serverSpec()
	s.Encrypt = testGossipKey
	s.TLS = &tlsMaterial
	visible := strings.Join(s.Args(), " ")
	for _, v := range s.Labels() {
		visible += " " + v
	}
	keyBody := strings.Split(s.TLS.KeyPEM, "\n")[1]
	for name, secret := range map[string]string{"gossip key": s.Encrypt, "tls key": keyBody} {
		if strings.Contains(visible, secret) {
			t.Errorf("the %s shows on the command line or in a label", name)
		}
	}
}

func TestParseArgsReadsBackWhatArgsRendered(t *testing.T) {
	t.Parallel()
	cases := map[string]Spec{
		"server": serverSpec(),
		"agent":  agentSpec(),
		"custom ports": func() Spec {
			s := serverSpec()
			s.Ports = Ports{HTTP: 18500, DNS: -1, Server: 18300, SerfLAN: 18301, SerfWAN: -1, GRPCTLS: -1}
			return s
		}(),
		"named node":      func() Spec { s := agentSpec(); s.NodeName = "n1"; s.UI = true; s.ClientAddr = "0.0.0.0"; return s }(),
		"https api":       func() Spec { s := serverSpec(); s.TLS = &TLS{}; s.Ports.HTTP = 8501; return s }(),
		"single join":     func() Spec { s := serverSpec(); s.BootstrapExpect = 1; s.RetryJoin = nil; return s }(),
		"raft multiplier": func() Spec { s := serverSpec(); s.RaftMultiplier = 10; return s }(),
	}
	for name, spec := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, https, err := ParseArgs(spec.Args())
			if err != nil {
				t.Fatal(err)
			}
			if https != (spec.TLS != nil) {
				t.Errorf("https = %t, want %t", https, spec.TLS != nil)
			}
			want := spec
			want.Image, want.ContainerName, want.TLS, want.Encrypt = "", "", nil, ""
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ParseArgs(Args())\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseArgsRejectsForeignCommands(t *testing.T) {
	t.Parallel()
	cases := map[string][]string{
		"not an agent":     {"version"},
		"empty":            nil,
		"unknown flag":     {"agent", "-dev"},
		"bare word":        {"agent", "server"},
		"bad port":         {"agent", "-http-port=web"},
		"bad expectations": {"agent", "-bootstrap-expect=three"},
		"foreign hcl":      {"agent", "-hcl=performance { raft_multiplier = 1 } ui_config { enabled = true }"},
		"hcl not a number": {"agent", "-hcl=performance { raft_multiplier = x }"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := ParseArgs(args); err == nil {
				t.Errorf("ParseArgs(%q) accepted it", args)
			}
		})
	}
}

func TestValidateGossipKey(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		key     string
		wantErr string
	}{
		"32 bytes":       {key: testGossipKey},
		"16 bytes":       {key: base64.StdEncoding.EncodeToString(make([]byte, 16))},
		"24 bytes":       {key: base64.StdEncoding.EncodeToString(make([]byte, 24))},
		"too short":      {key: base64.StdEncoding.EncodeToString(make([]byte, 8)), wantErr: "8 bytes"},
		"not base64":     {key: "not a key!", wantErr: "not standard base64"},
		"url alphabet":   {key: base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 32)), wantErr: "not standard base64"},
		"empty is short": {key: "", wantErr: "0 bytes"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := ValidateGossipKey(tc.key)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateSpec(t *testing.T) {
	t.Parallel()
	tlsMaterial := newTestTLS(t)
	otherTLS := newTestTLS(t)
	cases := map[string]struct {
		edit    func(*Spec)
		wantErr string
	}{
		"valid server":          {edit: func(*Spec) {}},
		"valid with secrets":    {edit: func(s *Spec) { s.Encrypt = testGossipKey; s.TLS = &tlsMaterial }},
		"no bootstrap_expect":   {edit: func(s *Spec) { s.BootstrapExpect = 0 }, wantErr: "bootstrap_expect"},
		"hostname as address":   {edit: func(s *Spec) { s.AdvertiseAddr = "node-1" }, wantErr: "advertise address"},
		"bad client address":    {edit: func(s *Spec) { s.ClientAddr = "localhost" }, wantErr: "client address"},
		"upper-case datacenter": {edit: func(s *Spec) { s.Datacenter = "DC1" }, wantErr: "datacenter"},
		"bad container name":    {edit: func(s *Spec) { s.ContainerName = "/consul" }, wantErr: "container name"},
		"bad node name":         {edit: func(s *Spec) { s.NodeName = "node_1" }, wantErr: "node name"},
		"http cannot be off":    {edit: func(s *Spec) { s.Ports.HTTP = -1 }, wantErr: "ports.http"},
		"dns can be off":        {edit: func(s *Spec) { s.Ports.DNS = -1 }},
		"port out of range":     {edit: func(s *Spec) { s.Ports.SerfLAN = 70000 }, wantErr: "ports.serf_lan"},
		"bad gossip key":        {edit: func(s *Spec) { s.Encrypt = "c2hvcnQ=" }, wantErr: "gossip key"},
		"mismatched tls pair":   {edit: func(s *Spec) { t := tlsMaterial; t.KeyPEM = otherTLS.KeyPEM; s.TLS = &t }, wantErr: "cert_pem and key_pem"},
		"tls without a ca":      {edit: func(s *Spec) { t := tlsMaterial; t.CAPEM = "nope"; s.TLS = &t }, wantErr: "ca_pem"},
		"retry_join with space": {edit: func(s *Spec) { s.RetryJoin = []string{"10.0.0.1 10.0.0.2"} }, wantErr: "retry_join"},
		"agent needs a join":    {edit: func(s *Spec) { s.Role = RoleAgent; s.RetryJoin = nil }, wantErr: "retry_join"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := serverSpec()
			tc.edit(&s)
			err := s.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestFilesHoldTheSecrets(t *testing.T) {
	t.Parallel()
	tlsMaterial := newTestTLS(t)
	cases := map[string]struct {
		edit      func(*Spec)
		wantJSON  map[string]any
		wantFiles []string
	}{
		"nothing secret: no update check, nothing else": {
			edit: func(*Spec) {}, wantJSON: map[string]any{"disable_update_check": true}, wantFiles: []string{ConfigFile},
		},
		"gossip key": {
			edit:      func(s *Spec) { s.Encrypt = testGossipKey },
			wantJSON:  map[string]any{"disable_update_check": true, "encrypt": testGossipKey},
			wantFiles: []string{ConfigFile},
		},
		"tls": {
			edit: func(s *Spec) { t := tlsMaterial; t.VerifyIncoming, t.VerifyServerHostname = true, true; s.TLS = &t },
			wantJSON: map[string]any{"disable_update_check": true, "tls": map[string]any{
				"defaults": map[string]any{"ca_file": CAFile, "cert_file": CertFile, "key_file": KeyFile,
					"verify_incoming": true, "verify_outgoing": false},
				"internal_rpc": map[string]any{"verify_server_hostname": true},
			}},
			wantFiles: []string{ConfigFile, CAFile, CertFile, KeyFile},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := serverSpec()
			tc.edit(&s)
			files := s.Files()
			var paths []string
			for _, f := range files {
				paths = append(paths, f.Path)
				if (f.Path == ConfigFile || f.Path == KeyFile) && f.Mode != 0o600 {
					t.Errorf("%s has mode %o, want 0600", f.Path, f.Mode)
				}
			}
			if !slices.Equal(paths, tc.wantFiles) {
				t.Errorf("files %q, want %q", paths, tc.wantFiles)
			}
			var got map[string]any
			if err := json.Unmarshal(files[0].Content, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.wantJSON) {
				t.Errorf("config\n got %v\nwant %v", got, tc.wantJSON)
			}
		})
	}
}

func TestHashFollowsEveryInput(t *testing.T) {
	t.Parallel()
	tlsMaterial := newTestTLS(t)
	base := serverSpec()
	if base.Hash() != serverSpec().Hash() {
		t.Fatal("the hash of equal specs differs")
	}
	changes := map[string]func(*Spec){
		"image":       func(s *Spec) { s.Image = "hashicorp/consul:1.21.0" },
		"ui":          func(s *Spec) { s.UI = true },
		"gossip key":  func(s *Spec) { s.Encrypt = testGossipKey },
		"tls":         func(s *Spec) { s.TLS = &tlsMaterial },
		"tls verify":  func(s *Spec) { t := tlsMaterial; t.VerifyOutgoing = true; s.TLS = &t },
		"a port":      func(s *Spec) { s.Ports.DNS = -1 },
		"client addr": func(s *Spec) { s.ClientAddr = "0.0.0.0" },
		"expect":      func(s *Spec) { s.BootstrapExpect = 5 },
	}
	// Where to find the cluster at start is not what a running member is made of.
	joins := serverSpec()
	joins.RetryJoin = joins.RetryJoin[:2]
	if joins.Hash() != base.Hash() {
		t.Error("changing retry_join changes the hash: a running member would restart for it")
	}
	seen := map[string]string{base.Hash(): "base"}
	for name, change := range changes {
		s := serverSpec()
		change(&s)
		h := s.Hash()
		if other, dup := seen[h]; dup {
			t.Errorf("changing %s gives the same hash as %s", name, other)
		}
		seen[h] = name
	}
}

func TestContainerRunsOnTheHostNetworkWithItsVolume(t *testing.T) {
	t.Parallel()
	s := serverSpec()
	cfg, host := s.ContainerConfig(), s.HostConfig()
	// The image's own entrypoint runs the agent (it adds the data and config directories
	// and drops to the consul user), told which user the copied files belong to.
	if cfg.Entrypoint != nil {
		t.Errorf("entrypoint %q overrides the image's", cfg.Entrypoint)
	}
	if !slices.Equal(cfg.Env, []string{"CONSUL_UID=100", "CONSUL_GID=1000"}) {
		t.Errorf("env %q", cfg.Env)
	}
	for _, a := range cfg.Cmd {
		if strings.HasPrefix(a, "-data-dir") || strings.HasPrefix(a, "-config-dir") {
			t.Errorf("command line %q has %s, which the entrypoint adds", cfg.Cmd, a)
		}
	}
	if cfg.Labels[LabelManagedBy] != ManagedByValue || cfg.Labels[LabelRole] != "consul-server" || cfg.Labels[LabelConfigHash] != s.Hash() {
		t.Errorf("labels %v", cfg.Labels)
	}
	if host.NetworkMode != "host" || host.RestartPolicy.Name != "unless-stopped" {
		t.Errorf("network %q, restart %q", host.NetworkMode, host.RestartPolicy.Name)
	}
	if len(host.Mounts) != 1 || host.Mounts[0].Source != "consul-server-data" || host.Mounts[0].Target != DataDir {
		t.Errorf("mounts %+v", host.Mounts)
	}
}

func TestAPIAddressAsSeenFromTheHost(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		edit                  func(*Spec)
		wantHTTPAddr, wantEnv string
	}{
		"loopback":          {edit: func(*Spec) {}, wantHTTPAddr: "127.0.0.1:8500"},
		"every address":     {edit: func(s *Spec) { s.ClientAddr = "0.0.0.0" }, wantHTTPAddr: "127.0.0.1:8500"},
		"a private address": {edit: func(s *Spec) { s.ClientAddr = "10.10.0.2"; s.Ports.HTTP = 18500 }, wantHTTPAddr: "10.10.0.2:18500"},
		"ipv6":              {edit: func(s *Spec) { s.ClientAddr = "::1" }, wantHTTPAddr: "[::1]:8500"},
		"tls":               {edit: func(s *Spec) { s.TLS = &TLS{} }, wantHTTPAddr: "https://127.0.0.1:8500", wantEnv: "CONSUL_CACERT=" + CAFile},
		// `consul leave` under default-deny ACLs needs the token (agent write).
		"acl token": {edit: func(s *Spec) { s.ACL = &ACL{DefaultPolicy: ACLDeny, Token: "t0k"} }, wantHTTPAddr: "127.0.0.1:8500", wantEnv: "CONSUL_HTTP_TOKEN=t0k"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := serverSpec()
			tc.edit(&s)
			if got := s.HTTPAddr(); got != tc.wantHTTPAddr {
				t.Errorf("HTTPAddr() = %q, want %q", got, tc.wantHTTPAddr)
			}
			env := s.CLIEnv()
			if env[0] != "CONSUL_HTTP_ADDR="+tc.wantHTTPAddr {
				t.Errorf("CLIEnv() = %q", env)
			}
			if tc.wantEnv != "" && !slices.Contains(env, tc.wantEnv) {
				t.Errorf("CLIEnv() = %q, want %q in it", env, tc.wantEnv)
			}
		})
	}
}

func TestTarFilesHasParentsFirst(t *testing.T) {
	t.Parallel()
	tlsMaterial := newTestTLS(t)
	s := serverSpec()
	s.TLS = &tlsMaterial
	r, err := tarFiles(s.Files())
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(r)
	var names []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if hdr.Uid != UID || hdr.Gid != GID {
			t.Errorf("%s belongs to %d:%d, not to the consul user %d:%d", hdr.Name, hdr.Uid, hdr.Gid, UID, GID)
		}
	}
	want := []string{"consul/", "consul/config/", "consul/tls/", "consul/config/microswarm.json", "consul/tls/ca.pem", "consul/tls/cert.pem", "consul/tls/key.pem"}
	if !slices.Equal(names, want) {
		t.Errorf("tar holds %q, want %q", names, want)
	}
}

func newTestTLS(t *testing.T) TLS {
	m := consultest.NewTLS(t)
	return TLS{CAPEM: m.CAPEM, CertPEM: m.CertPEM, KeyPEM: m.KeyPEM}
}

// A write-only key is not in the plan, and a new one is rotated into the keyring rather
// than into a new container: the hash says only that a key is set, and the container
// still gets the key itself.
func TestWriteOnlyKeyHashesAsAMarker(t *testing.T) {
	t.Parallel()
	planned := serverSpec()
	planned.EncryptWriteOnly = true
	applied := planned
	applied.Encrypt = testGossipKey
	rotated := planned
	rotated.Encrypt = "5yD9+jHbAKFX8z5x9pNRYl0WQvV7bTg8tB9m7DCHXq4="
	if planned.Hash() != applied.Hash() || applied.Hash() != rotated.Hash() {
		t.Error("the hash of a write-only key depends on the key: the plan (no key) and the apply disagree, or a rotation recreates the container")
	}
	if applied.Hash() == serverSpec().Hash() {
		t.Error("a write-only key hashes like no key: turning encryption on would not reach the container")
	}
	var cfg map[string]any
	if err := json.Unmarshal(applied.Files()[0].Content, &cfg); err != nil || cfg["encrypt"] != testGossipKey {
		t.Errorf("the config file holds %v (%v), want the write-only key", cfg["encrypt"], err)
	}
	if err := planned.Validate(); err == nil {
		t.Error("a write-only spec with no key validates: a container would start without encryption")
	}
	if err := applied.Validate(); err != nil {
		t.Error(err)
	}
}

// ACLs go into the config file; the management token only on servers (it bootstraps
// the ACL system) and never in the hash, so a plan without it agrees with the apply.
func TestACLConfig(t *testing.T) {
	t.Parallel()
	const token = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	for _, role := range []Role{RoleServer, RoleAgent} {
		s := serverSpec()
		if role == RoleAgent {
			s = agentSpec()
		}
		planned := s
		planned.ACL = &ACL{DefaultPolicy: ACLDeny}
		applied := s
		applied.ACL = &ACL{DefaultPolicy: ACLDeny, Token: token}
		if planned.Hash() != applied.Hash() || applied.Hash() == s.Hash() {
			t.Errorf("%s: the hash follows the token, or not the ACL setting", role)
		}
		var cfg struct {
			ACL struct {
				Enabled       bool              `json:"enabled"`
				DefaultPolicy string            `json:"default_policy"`
				Persist       bool              `json:"enable_token_persistence"`
				Tokens        map[string]string `json:"tokens"`
			} `json:"acl"`
		}
		if err := json.Unmarshal(applied.Files()[0].Content, &cfg); err != nil {
			t.Fatal(err)
		}
		a := cfg.ACL
		if !a.Enabled || a.DefaultPolicy != ACLDeny || !a.Persist || (a.Tokens["initial_management"] == token) != (role == RoleServer) {
			t.Errorf("%s: acl config %+v", role, a)
		}
		if err := planned.Validate(); err == nil || strings.Contains(err.Error(), token) {
			t.Errorf("%s: a spec with ACLs and no token validates (%v)", role, err)
		}
		if err := applied.Validate(); err != nil {
			t.Errorf("%s: %v", role, err)
		}
		for _, arg := range applied.Args() {
			if strings.Contains(arg, token) {
				t.Errorf("%s: the token is on the command line", role)
			}
		}
	}
}

// raft_multiplier is 1 to 10, and a server's setting only.
func TestValidateRaftMultiplier(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		spec Spec
		ok   bool
	}{
		"unset":       {serverSpec(), true},
		"1":           {func() Spec { s := serverSpec(); s.RaftMultiplier = 1; return s }(), true},
		"10":          {func() Spec { s := serverSpec(); s.RaftMultiplier = 10; return s }(), true},
		"11":          {func() Spec { s := serverSpec(); s.RaftMultiplier = 11; return s }(), false},
		"negative":    {func() Spec { s := serverSpec(); s.RaftMultiplier = -1; return s }(), false},
		"on a client": {func() Spec { s := agentSpec(); s.RaftMultiplier = 1; return s }(), false},
	} {
		if err := c.spec.Validate(); (err == nil) != c.ok {
			t.Errorf("%s: Validate() = %v, want ok=%t", name, err, c.ok)
		}
	}
}
