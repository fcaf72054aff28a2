package conn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	consulapi "github.com/hashicorp/consul/api"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		in      string
		want    Endpoint
		wantErr string
	}{
		"ssh with user and port": {in: "ssh://core@10.0.0.1:2222", want: Endpoint{Scheme: SchemeSSH, User: "core", Host: "10.0.0.1", Port: 2222}},
		"ssh default port":       {in: "ssh://root@node1", want: Endpoint{Scheme: SchemeSSH, User: "root", Host: "node1", Port: 22}},
		"ssh no user":            {in: "ssh://node1", want: Endpoint{Scheme: SchemeSSH, Host: "node1", Port: 22}},
		"ssh ipv6":               {in: "ssh://root@[::1]:22", want: Endpoint{Scheme: SchemeSSH, User: "root", Host: "::1", Port: 22}},
		"unix":                   {in: "unix:///var/run/docker.sock", want: Endpoint{Scheme: SchemeUnix, Path: "/var/run/docker.sock"}},
		"tcp":                    {in: "tcp://10.0.0.5:2376", want: Endpoint{Scheme: SchemeTCP, Host: "10.0.0.5", Port: 2376}},
		"tcp needs port":         {in: "tcp://10.0.0.5", wantErr: "need a port"},
		"no scheme":              {in: "10.0.0.5", wantErr: "no scheme"},
		"bad scheme":             {in: "http://10.0.0.5", wantErr: "unsupported scheme"},
		"password refused":       {in: "ssh://root:hunter2@10.0.0.5", wantErr: "passwords are not accepted"},
		"bad port":               {in: "ssh://root@10.0.0.5:99999", wantErr: "port must be"},
		"relative unix path":     {in: "unix://docker.sock", wantErr: "absolute socket path"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseEndpoint(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseEndpoint(%q) error = %v, want it to mention %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEndpoint(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("ParseEndpoint(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if again, err := ParseEndpoint(got.String()); err != nil || again != got {
				t.Fatalf("round trip of %q via %q = %+v, %v", tc.in, got.String(), again, err)
			}
		})
	}
}

// sshFixture is an in-process SSH server plus a pool holding the key it accepts.
type sshFixture struct {
	server *testSSHServer
	key    []byte
}

func newSSHFixture(t *testing.T) sshFixture {
	t.Helper()
	signer, key := newTestKey(t)
	return sshFixture{server: startTestSSHServer(t, signer.PublicKey()), key: key}
}

func (f sshFixture) pool(t *testing.T, mutate func(*Options)) *Pool {
	t.Helper()
	opts := Options{PrivateKey: f.key, ConnectTimeout: 5 * time.Second}
	if mutate != nil {
		mutate(&opts)
	}
	p, err := NewPool(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestWrongClientKeyIsRefused(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	_, otherKey := newTestKey(t)
	p := f.pool(t, func(o *Options) { o.PrivateKey = otherKey })
	_, err := p.Open(context.Background(), Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("Open with a key the server does not accept: err = %v, want an authentication failure", err)
	}
}

func TestUnknownHostKeyIsRefusedWithItsFingerprint(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	p := f.pool(t, nil)
	_, err := p.Open(context.Background(), Target{Host: f.server.host()})
	var unknown *UnknownHostKeyError
	if !errors.As(err, &unknown) {
		t.Fatalf("Open of a host nothing vouches for: err = %v, want UnknownHostKeyError", err)
	}
	fingerprint := ssh.FingerprintSHA256(f.server.hostKey.PublicKey())
	for _, want := range []string{fingerprint, "host_key = ", f.server.hostKeyLine(), "known_hosts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestChangedHostKeyIsRefused(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	other, _ := newTestKey(t)
	p := f.pool(t, func(o *Options) { o.HostKeyPolicy = HostKeyAcceptNew })
	_, err := p.Open(context.Background(), Target{Host: f.server.host(), HostKey: AuthorizedKey(other.PublicKey())})
	var mismatch *HostKeyMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Open with a different pinned key: err = %v, want HostKeyMismatchError even under accept-new", err)
	}
	if !strings.Contains(err.Error(), ssh.FingerprintSHA256(f.server.hostKey.PublicKey())) {
		t.Errorf("error %q does not name the presented key's fingerprint", err)
	}
}

func TestKnownHostsFileIsHonoured(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	other, _ := newTestKey(t)
	dir := t.TempDir()
	address := strings.TrimPrefix(f.server.host(), "ssh://root@")
	host, port, _ := net.SplitHostPort(address)
	write := func(name string, key ssh.PublicKey) string {
		path := filepath.Join(dir, name)
		line := fmt.Sprintf("[%s]:%s %s\n", host, port, AuthorizedKey(key))
		if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := f.pool(t, func(o *Options) { o.KnownHostsFile = write("good", f.server.hostKey.PublicKey()) })
	if _, err := good.Open(context.Background(), Target{Host: f.server.host()}); err != nil {
		t.Fatalf("Open with the key in known_hosts: %v", err)
	}
	bad := f.pool(t, func(o *Options) { o.KnownHostsFile = write("bad", other.PublicKey()) })
	_, err := bad.Open(context.Background(), Target{Host: f.server.host()})
	var mismatch *HostKeyMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Open with another key in known_hosts: err = %v, want HostKeyMismatchError", err)
	}
}

func TestAcceptNewReportsTheKeyItTrusted(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	p := f.pool(t, func(o *Options) { o.HostKeyPolicy = HostKeyAcceptNew })
	h, err := p.Open(context.Background(), Target{Host: f.server.host()})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.HostKey(), f.server.hostKeyLine(); got != want {
		t.Fatalf("HostKey() = %q, want the server's key %q", got, want)
	}
}

// requireEngine returns the local engine's socket, skipping outside CI when none runs.
func requireEngine(t *testing.T) string {
	t.Helper()
	const socket = "/var/run/docker.sock"
	if c, err := net.Dial("unix", socket); err == nil {
		_ = c.Close()
		return socket
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no Docker engine at %s (CI must start one: tools/ensure-engine.sh)", socket)
	}
	t.Skipf("no Docker engine at %s; run tools/ensure-engine.sh", socket)
	return ""
}

func TestDockerThroughForwardedSocketReusesOneConnection(t *testing.T) {
	t.Parallel()
	socket := requireEngine(t)
	f := newSSHFixture(t)
	p := f.pool(t, func(o *Options) { o.DockerSocket = socket })
	ctx := context.Background()
	target := Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()}

	h, err := p.Open(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	docker, err := h.Docker()
	if err != nil {
		t.Fatal(err)
	}
	info, err := docker.Info(ctx)
	if err != nil {
		t.Fatalf("docker info through SSH: %v", err)
	}
	if info.ID == "" || info.ServerVersion == "" {
		t.Fatalf("docker info through SSH returned %+v", info)
	}
	if _, err := docker.ImageList(ctx, image.ListOptions{}); err != nil {
		t.Fatalf("image list through SSH: %v", err)
	}

	again, err := p.Open(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if again != h {
		t.Fatal("a second Open of the same host returned a new Host; want the pooled one")
	}
	if _, err := again.Docker(); err != nil {
		t.Fatal(err)
	}
	if _, err := docker.ServerVersion(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.server.accepted.Load(); n != 1 {
		t.Fatalf("server accepted %d SSH connections for two Opens and several API calls, want 1", n)
	}

	// A host that drops the connection (a reboot) is re-dialled on the next call.
	f.server.dropConnections()
	if _, err := p.Open(ctx, target); err != nil {
		t.Fatalf("Open after the connection died: %v", err)
	}
	if _, err := docker.Ping(ctx); err != nil {
		t.Fatalf("docker ping after the connection died: %v", err)
	}
	if n := f.server.accepted.Load(); n != 2 {
		t.Fatalf("server accepted %d SSH connections after a drop, want exactly one re-dial (2)", n)
	}
}

// A host whose connection goes silent (powered off, or its address now another droplet's)
// with the Docker client's HTTP connections idle on it: the next call is not made on one
// of those, which would hang, but on a new connection, once the silent one is closed.
func TestDockerAfterTheConnectionWentSilentUsesANewOne(t *testing.T) {
	t.Parallel()
	socket := requireEngine(t)
	f := newSSHFixture(t)
	p := f.pool(t, func(o *Options) {
		o.DockerSocket = socket
		o.ReuseUntested = -1 // every use asks first
		o.KeepaliveInterval = -1
		o.ConnectTimeout = time.Minute
	})
	target := Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()}
	h, err := p.Open(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	docker, err := h.Docker()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docker.Ping(context.Background()); err != nil { // leaves an idle connection
		t.Fatal(err)
	}
	f.server.silent.Add(1)
	if _, err := p.Open(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := docker.Ping(ctx); err != nil {
		t.Fatalf("docker ping after the connection went silent: %v; want it made on a new connection", err)
	}
	if n := f.server.accepted.Load(); n != 2 {
		t.Fatalf("server accepted %d SSH connections; want 2 (the silent one closed, one new)", n)
	}
}

func TestReplacedHostAtTheSameAddressIsVerifiedAfresh(t *testing.T) {
	t.Parallel()
	signer, key := newTestKey(t)
	old := startTestSSHServer(t, signer.PublicKey())
	p := sshFixture{server: old, key: key}.pool(t, nil)
	ctx := context.Background()
	if _, err := p.Open(ctx, Target{Host: old.host(), HostKey: old.hostKeyLine()}); err != nil {
		t.Fatal(err)
	}

	// The host is replaced: a new one, with its own key, answers at the old address.
	replacement := old.replace(t, signer.PublicKey())
	h, err := p.Open(ctx, Target{Host: replacement.host(), HostKey: replacement.hostKeyLine()})
	if err != nil {
		t.Fatalf("Open of the replacement with its own pinned key: %v", err)
	}
	if got := h.HostKey(); got != replacement.hostKeyLine() {
		t.Fatalf("HostKey() = %q, want the replacement's key", got)
	}
	// The old pin no longer matches what answers there.
	_, err = p.Open(ctx, Target{Host: replacement.host(), HostKey: old.hostKeyLine()})
	var mismatch *HostKeyMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Open with the old host's pin: err = %v, want HostKeyMismatchError", err)
	}
}

func TestConsulThroughForwardedPort(t *testing.T) {
	t.Parallel()
	httpAddr := startConsulAgent(t)
	f := newSSHFixture(t)
	p := f.pool(t, nil)
	h, err := p.Open(context.Background(), Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err != nil {
		t.Fatal(err)
	}
	consul, err := h.Consul(ConsulConfig{Address: httpAddr})
	if err != nil {
		t.Fatal(err)
	}
	var leader string
	deadline := time.Now().Add(30 * time.Second)
	for leader == "" && time.Now().Before(deadline) {
		leader, _ = consul.Status().Leader()
		if leader == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if leader == "" {
		t.Fatal("consul through SSH never reported a leader")
	}
	if _, err := consul.KV().Put(&consulapi.KVPair{Key: "microswarm/probe", Value: []byte("through-ssh")}, nil); err != nil {
		t.Fatalf("KV put through SSH: %v", err)
	}
	pair, _, err := consul.KV().Get("microswarm/probe", nil)
	if err != nil || pair == nil || string(pair.Value) != "through-ssh" {
		t.Fatalf("KV get through SSH = %+v, %v", pair, err)
	}
}

func TestUnixHostReachesTheLocalEngine(t *testing.T) {
	t.Parallel()
	socket := requireEngine(t)
	p, err := NewPool(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h, err := p.Open(context.Background(), Target{Host: "unix://" + socket})
	if err != nil {
		t.Fatal(err)
	}
	docker, err := h.Docker()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docker.Ping(context.Background()); err != nil {
		t.Fatalf("ping the local engine: %v", err)
	}
}

func TestPlainTCPToARemoteEngineIsRefused(t *testing.T) {
	t.Parallel()
	p, err := NewPool(Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Open(context.Background(), Target{Host: "tcp://198.51.100.7:2375"})
	if err == nil || !strings.Contains(err.Error(), "without TLS") {
		t.Fatalf("Open tcp:// without TLS: err = %v, want a refusal", err)
	}
}

func TestSSHHostNeedsAPrivateKey(t *testing.T) {
	t.Parallel()
	p, err := NewPool(Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Open(context.Background(), Target{Host: "ssh://root@127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "ssh_private_key") {
		t.Fatalf("Open ssh:// with no key: err = %v, want it to name ssh_private_key", err)
	}
}

// startConsulAgent runs a real Consul dev agent from the cached build on free loopback
// ports and returns its HTTP address.
func startConsulAgent(t *testing.T) string {
	t.Helper()
	return consultest.StartDevAgent(t).Address()
}
