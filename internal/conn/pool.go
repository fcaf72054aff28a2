package conn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"
	consulapi "github.com/hashicorp/consul/api"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

const (
	DefaultUser           = "root"
	DefaultConnectTimeout = 30 * time.Second
	DefaultDockerSocket   = "/var/run/docker.sock"
	DefaultConsulAddr     = "127.0.0.1:8500"
)

// Options configure a Pool. The zero value of every field has a sensible default.
type Options struct {
	// User is the SSH user for hosts that name none.
	User string
	// PrivateKey is the PEM-encoded SSH private key for every ssh:// host.
	PrivateKey []byte
	// KnownHostsFile is an OpenSSH known_hosts file consulted for hosts with no pinned key.
	KnownHostsFile string
	// HostKeyPolicy decides about hosts nothing vouches for; default strict.
	HostKeyPolicy HostKeyPolicy
	// ConnectTimeout bounds dialing and the SSH handshake, and the wait for a channel.
	ConnectTimeout time.Duration
	// ReuseUntested is how long a connection that answered is reused without a keepalive
	// round trip first; default DefaultReuseUntested, negative for never.
	ReuseUntested time.Duration
	// KeepaliveInterval is how often an open connection is asked for a keepalive reply in
	// the background; one left unanswered for ConnectTimeout drops the connection.
	// Default DefaultKeepaliveInterval, negative for never.
	KeepaliveInterval time.Duration
	// DockerSocket is the engine's socket path on ssh:// hosts.
	DockerSocket string
	// TLS secures tcp:// hosts; required unless the host is a loopback address.
	TLS *TLSMaterial
}

// TLSMaterial is PEM-encoded client TLS material for tcp:// Docker hosts.
type TLSMaterial struct {
	CACert     []byte
	ClientCert []byte
	ClientKey  []byte
}

// Target is one host to reach, with the key pinned for it, if any.
type Target struct {
	// Host is ssh://user@host:port, unix:///path or tcp://host:port.
	Host string
	// HostKey pins the host's SSH key(s), authorized_keys form, one per line.
	HostKey string
	// TrustOnFirstUse accepts the key of a host nothing pins, whatever the policy; for a
	// resource that records the key it sees on first contact (Host.HostKey).
	TrustOnFirstUse bool
}

// Pool hands out connections to hosts, one SSH connection per endpoint, shared by every
// caller and re-dialled when it has died (a rebooted droplet, say).
type Pool struct {
	opts       Options
	signer     ssh.Signer
	knownHosts ssh.HostKeyCallback

	mu    sync.Mutex
	hosts map[string]*Host
}

// NewPool checks the options and returns an empty pool.
func NewPool(opts Options) (*Pool, error) {
	if opts.User == "" {
		opts.User = DefaultUser
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.ReuseUntested == 0 {
		opts.ReuseUntested = DefaultReuseUntested
	}
	if opts.KeepaliveInterval == 0 {
		opts.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if opts.DockerSocket == "" {
		opts.DockerSocket = DefaultDockerSocket
	}
	if opts.HostKeyPolicy == "" {
		opts.HostKeyPolicy = HostKeyStrict
	}
	p := &Pool{opts: opts, hosts: map[string]*Host{}}
	if len(opts.PrivateKey) > 0 {
		signer, err := ssh.ParsePrivateKey(opts.PrivateKey)
		if err != nil {
			var missing *ssh.PassphraseMissingError
			if errors.As(err, &missing) {
				return nil, errors.New("the SSH private key is encrypted with a passphrase; provide an unencrypted key (keep it in a sensitive variable)")
			}
			return nil, fmt.Errorf("the SSH private key could not be parsed (want a PEM or OpenSSH private key): %w", err)
		}
		p.signer = signer
	}
	if opts.KnownHostsFile != "" {
		cb, err := knownhosts.New(opts.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("reading known_hosts file %s: %w", opts.KnownHostsFile, err)
		}
		p.knownHosts = cb
	}
	return p, nil
}

// User is the SSH user for hosts that name none.
func (p *Pool) User() string { return p.opts.User }

// Host is a reachable Docker host. It is shared: do not close its clients.
type Host struct {
	pool     *Pool
	endpoint Endpoint
	verifier hostKeyVerifier

	mu        sync.Mutex
	sshClient *ssh.Client
	hostKey   ssh.PublicKey
	docker    *client.Client
	// provenAt is when sshClient last answered: its handshake, a keepalive, a channel
	// (see Options.ReuseUntested).
	provenAt time.Time
}

// DefaultReuseUntested: a refresh or an apply opens dozens of channels on a node within a
// second (a switch, 30: about 0.3 s of keepalives on a busy node). A peer that vanished in
// that second is caught by the bound on opening a channel (openBounded).
const DefaultReuseUntested = time.Second

// reuseCheckTimeout bounds the keepalive round trip before a connection that has not
// answered for ReuseUntested is reused. A live sshd answers in milliseconds; one silent
// for this long is taken for dead (powered off, or its address now another droplet's),
// closed with every channel on it (idle HTTP connections of the host's Docker and Consul
// clients among them, which would otherwise hang the next call), and the host dialled
// again. Until 2026-12-05 that wait was the whole connect timeout, 30 s by default.
const reuseCheckTimeout = 5 * time.Second

// Open returns the pooled Host for a target, connecting (and verifying the host key)
// if there is no live connection yet.
func (p *Pool) Open(ctx context.Context, t Target) (*Host, error) {
	ep, err := ParseEndpoint(t.Host)
	if err != nil {
		return nil, err
	}
	if ep.Scheme == SchemeSSH && ep.User == "" {
		ep.User = p.opts.User
	}
	verifier := hostKeyVerifier{knownHosts: p.knownHosts, policy: p.opts.HostKeyPolicy}
	if t.TrustOnFirstUse {
		verifier.policy = HostKeyAcceptNew
	}
	if t.HostKey != "" {
		if verifier.pinned, err = ParseHostKeys(t.HostKey); err != nil {
			return nil, err
		}
	}

	key := ep.String()
	p.mu.Lock()
	h, ok := p.hosts[key]
	if !ok {
		h = &Host{pool: p, endpoint: ep, verifier: verifier}
		p.hosts[key] = h
	}
	p.mu.Unlock()

	switch ep.Scheme {
	case SchemeSSH:
		if p.signer == nil {
			return nil, fmt.Errorf("cannot reach %s: the provider has no SSH private key (set ssh_private_key or ssh_private_key_file)", ep)
		}
		if _, err := h.ssh(ctx, verifier); err != nil {
			return nil, err
		}
	case SchemeTCP:
		if p.opts.TLS == nil && !IsLoopback(ep.Host) {
			return nil, fmt.Errorf("refusing to reach the Docker API at %s without TLS: an unauthenticated Docker port is root on that host. Configure the provider's docker TLS material, or use ssh://", ep)
		}
	}
	return h, nil
}

// Close closes every pooled connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	hosts := p.hosts
	p.hosts = map[string]*Host{}
	p.mu.Unlock()
	var errs []error
	for _, h := range hosts {
		errs = append(errs, h.close())
	}
	return errors.Join(errs...)
}

// Endpoint is the parsed host.
func (h *Host) Endpoint() Endpoint { return h.endpoint }

// HostKey is the SSH host key the host presented (authorized_keys form), so callers can
// record it and pin it from then on; empty for non-SSH hosts.
func (h *Host) HostKey() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hostKey == nil {
		return ""
	}
	return AuthorizedKey(h.hostKey)
}

// ssh returns a live SSH client, dialling if there is none or the last one died. The
// verifier is the caller's: a pooled connection is only reused when its key passes it.
func (h *Host) ssh(ctx context.Context, v hostKeyVerifier) (*ssh.Client, error) {
	c, _, err := h.sshChecked(ctx, v)
	return c, err
}

// sshChecked is ssh, and says whether the connection was dialled or answered a keepalive
// just now (checked) rather than reused untested because it answered recently.
func (h *Host) sshChecked(ctx context.Context, v hostKeyVerifier) (c *ssh.Client, checked bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sshClient != nil {
		// Reuse only a live connection whose key this caller trusts. Otherwise dial again
		// and verify whatever answers now: a replaced droplet often gets the old one's
		// address, so a stale connection must not decide for the new host.
		if v.verify(h.endpoint.Address(), nil, h.hostKey) == nil {
			if time.Since(h.provenAt) < h.pool.opts.ReuseUntested {
				return h.sshClient, false, nil
			}
			if alive(h.sshClient, min(reuseCheckTimeout, h.pool.opts.ConnectTimeout)) {
				h.provenAt = time.Now()
				return h.sshClient, true, nil
			}
		}
		_ = h.sshClient.Close()
		h.sshClient = nil
	}
	client, key, err := h.pool.dialSSH(ctx, h.endpoint, v)
	if err != nil {
		return nil, false, err
	}
	h.sshClient, h.hostKey, h.verifier, h.provenAt = client, key, v, time.Now()
	go h.keepAlive(client)
	return client, true, nil
}

// openChannel opens a channel (a forwarded connection, a session) on h's connection. If
// that connection was reused untested and the open fails as a dead connection does, it
// is dropped and the open tried once more on a checked or new one: a host that closed
// the connection (a reboot) costs no failed call.
func openChannel[T any](ctx context.Context, h *Host, open func(*ssh.Client) (T, error), discard func(T)) (T, error) {
	h.mu.Lock()
	v := h.verifier
	h.mu.Unlock()
	var zero T
	c, checked, err := h.sshChecked(ctx, v)
	if err != nil {
		return zero, err
	}
	t, err := openBounded(ctx, h, c, func() (T, error) { return open(c) }, discard)
	if err == nil || checked || ctx.Err() != nil || !connectionLost(err) {
		return t, err
	}
	h.drop(c)
	if c, err = h.ssh(ctx, v); err != nil {
		return zero, err
	}
	return openBounded(ctx, h, c, func() (T, error) { return open(c) }, discard)
}

// openBounded opens a channel on c (a forwarded connection, a session). The far end
// answers an open at once when it lives; one that does not answer within the connect
// timeout has vanished without closing, so c is dropped (the next use dials again) and
// the error is transient. An open that succeeds proves c alive.
func openBounded[T any](ctx context.Context, h *Host, c *ssh.Client, open func() (T, error), discard func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := open()
		done <- result{v, err}
	}()
	timer := time.NewTimer(h.pool.opts.ConnectTimeout)
	defer timer.Stop()
	var zero T
	select {
	case r := <-done:
		if r.err == nil {
			h.mu.Lock()
			if h.sshClient == c {
				h.provenAt = time.Now()
			}
			h.mu.Unlock()
		}
		return r.v, r.err
	case <-ctx.Done():
	case <-timer.C:
		h.drop(c)
	}
	go func() {
		if r := <-done; r.err == nil {
			discard(r.v)
		}
	}()
	if ctx.Err() != nil {
		return zero, ctx.Err()
	}
	return zero, fmt.Errorf("ssh: %s did not answer within %s: %w", h.endpoint.Address(), h.pool.opts.ConnectTimeout, net.ErrClosed)
}

// connectionLost reports whether a failed channel open says the connection itself is gone.
// A refused open (the far end's sshd answered that it could not reach the port or socket,
// a Consul not listening yet, say) proves the connection alive: dropping it would cut every
// other channel on it, a swarm join in flight among them.
func connectionLost(err error) bool {
	var refused *ssh.OpenChannelError
	return Transient(err) && !errors.As(err, &refused)
}

// drop closes c if it is still h's connection: the next use dials again.
func (h *Host) drop(c *ssh.Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sshClient == c {
		_ = c.Close()
		h.sshClient = nil
	}
}

func (p *Pool) dialSSH(ctx context.Context, ep Endpoint, v hostKeyVerifier) (*ssh.Client, ssh.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.ConnectTimeout)
	defer cancel()
	var seen ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User: ep.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(p.signer)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			seen = key
			return v.verify(ep.Address(), remote, key)
		},
		HostKeyAlgorithms: v.algorithms(ep.Address()),
		Timeout:           p.opts.ConnectTimeout,
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", ep.Address())
	if err != nil {
		return nil, nil, fmt.Errorf("ssh: cannot reach %s: %w", ep.Address(), err)
	}
	// The handshake has no context of its own: bound it by the deadline.
	if deadline, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	sshConn, chans, reqs, err := ssh.NewClientConn(raw, ep.Address(), cfg)
	stop()
	if err != nil {
		_ = raw.Close()
		var unknown *UnknownHostKeyError
		var mismatch *HostKeyMismatchError
		if errors.As(err, &unknown) || errors.As(err, &mismatch) {
			return nil, nil, errors.Unwrap(err)
		}
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("ssh: handshake with %s did not finish within %s: %w", ep.Address(), p.opts.ConnectTimeout, ctx.Err())
		}
		return nil, nil, fmt.Errorf("ssh: connecting to %s as %s: %w", ep.Address(), ep.User, err)
	}
	_ = raw.SetDeadline(time.Time{})
	return ssh.NewClient(sshConn, chans, reqs), seen, nil
}

// DialContext opens a connection from the host's point of view: over SSH the far end
// dials it, so "127.0.0.1:8500" is the host's own loopback.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if h.endpoint.Scheme != SchemeSSH {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	// ssh.Client.Dial covers tcp; unix goes through direct-streamlocal. A failure to dial
	// the host comes back as it is; one to forward says what was forwarded.
	return openChannel(ctx, h, func(c *ssh.Client) (net.Conn, error) {
		conn, err := c.Dial(network, addr)
		if err != nil {
			return nil, fmt.Errorf("ssh: forwarding to %s %s on %s: %w", network, addr, h.endpoint.Address(), err)
		}
		return conn, nil
	}, func(c net.Conn) { _ = c.Close() })
}

// Docker returns the host's Docker API client (API version negotiated with the engine).
func (h *Host) Docker() (*client.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.docker != nil {
		return h.docker, nil
	}
	opts := []client.Opt{client.WithAPIVersionNegotiation()}
	switch h.endpoint.Scheme {
	case SchemeSSH:
		socket := h.pool.opts.DockerSocket
		opts = append(opts,
			client.WithHost("unix://"+socket),
			client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
				return h.DialContext(ctx, "unix", socket)
			}))
	case SchemeUnix:
		opts = append(opts, client.WithHost(h.endpoint.String()))
	case SchemeTCP:
		opts = append(opts, client.WithHost(h.endpoint.String()))
		if m := h.pool.opts.TLS; m != nil {
			cfg, err := m.clientConfig()
			if err != nil {
				return nil, err
			}
			opts = append(opts, client.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}),
				client.WithScheme("https"))
		}
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", h.endpoint, err)
	}
	h.docker = c
	return c, nil
}

// ConsulConfig says where the Consul HTTP API is, as seen from the host.
type ConsulConfig struct {
	// Address is host:port from the host's point of view; default 127.0.0.1:8500.
	Address string
	// Scheme is http or https.
	Scheme string
	// Token is an ACL token.
	Token string
	// TLS is used with https.
	TLS *tls.Config
}

// Consul returns a Consul API client whose requests the host makes: over SSH they are
// forwarded, so the agent's HTTP port never has to be exposed.
func (h *Host) Consul(cfg ConsulConfig) (*consulapi.Client, error) {
	address := cfg.Address
	if address == "" {
		address = DefaultConsulAddr
	}
	transport := &http.Transport{
		DialContext:         h.DialContext,
		TLSClientConfig:     cfg.TLS,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	c, err := consulapi.NewClient(&consulapi.Config{
		Address:    address,
		Scheme:     cfg.Scheme,
		Token:      cfg.Token,
		HttpClient: &http.Client{Transport: transport},
	})
	if err != nil {
		return nil, fmt.Errorf("consul client for %s via %s: %w", address, h.endpoint, err)
	}
	return c, nil
}

func (h *Host) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	if h.docker != nil {
		errs = append(errs, h.docker.Close())
		h.docker = nil
	}
	if h.sshClient != nil {
		errs = append(errs, h.sshClient.Close())
		h.sshClient = nil
	}
	return errors.Join(errs...)
}

func (m *TLSMaterial) clientConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(m.CACert) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(m.CACert) {
			return nil, errors.New("docker TLS: the CA certificate is not valid PEM")
		}
		cfg.RootCAs = pool
	}
	if len(m.ClientCert) > 0 || len(m.ClientKey) > 0 {
		pair, err := tls.X509KeyPair(m.ClientCert, m.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("docker TLS: client certificate and key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// LoadTLSMaterial reads ca.pem, cert.pem and key.pem from a DOCKER_CERT_PATH-style folder.
func LoadTLSMaterial(dir string) (*TLSMaterial, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(dir + "/" + name)
		if err != nil {
			return nil, fmt.Errorf("docker TLS: %w", err)
		}
		return b, nil
	}
	var m TLSMaterial
	var err error
	if m.CACert, err = read("ca.pem"); err != nil {
		return nil, err
	}
	if m.ClientCert, err = read("cert.pem"); err != nil {
		return nil, err
	}
	if m.ClientKey, err = read("key.pem"); err != nil {
		return nil, err
	}
	return &m, nil
}

// IsLoopback says host names this machine's loopback: localhost (any case) or a
// loopback address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
