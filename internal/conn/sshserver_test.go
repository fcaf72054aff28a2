package conn

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testSSHServer is a real SSH server (x/crypto/ssh, server side) that accepts one client
// key and forwards direct-streamlocal and direct-tcpip channels to real local sockets,
// as OpenSSH's sshd does on a droplet.
type testSSHServer struct {
	addr      string
	hostKey   ssh.Signer
	accepted  atomic.Int32
	listener  *sharedListener
	config    *ssh.ServerConfig
	mu        sync.Mutex
	liveConns []net.Conn
	// cutSessions ends the next N exec sessions without running them or an exit status;
	// dropOnExec drops the whole connection on the next N execs.
	cutSessions atomic.Int32
	dropOnExec  atomic.Int32
	// keepalives counts keepalive requests. silent makes the connections open so far
	// answer nothing more (a host that vanished without closing them); new ones are served.
	keepalives atomic.Int32
	silent     atomic.Int32
}

func newTestKey(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, pem.EncodeToMemory(block)
}

func startTestSSHServer(t *testing.T, authorized ssh.PublicKey) *testSSHServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sh := &sharedListener{Listener: l}
	s := newTestSSHServer(t, sh, authorized)
	go sh.loop()
	t.Cleanup(s.stop)
	return s
}

// sharedListener is one listening socket whose connections go to the server that holds
// the address now: a replacement host takes the address over without it ever being free
// for another process to bind in between.
type sharedListener struct {
	net.Listener
	mu      sync.Mutex
	current *testSSHServer
}

func (sh *sharedListener) loop() {
	for {
		c, err := sh.Accept()
		if err != nil {
			return
		}
		sh.mu.Lock()
		s := sh.current
		sh.mu.Unlock()
		s.accepted.Add(1)
		s.mu.Lock()
		s.liveConns = append(s.liveConns, c)
		s.mu.Unlock()
		go s.serve(c, s.config)
	}
}

// newTestSSHServer makes a server with a fresh host key and makes it the one sh serves.
func newTestSSHServer(t *testing.T, sh *sharedListener, authorized ssh.PublicKey) *testSSHServer {
	t.Helper()
	hostKey, _ := newTestKey(t)
	s := &testSSHServer{addr: sh.Addr().String(), hostKey: hostKey, listener: sh}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(authorized.Marshal()) {
				return nil, nil
			}
			return nil, errUnauthorized
		},
	}
	s.config.AddHostKey(hostKey)
	sh.mu.Lock()
	sh.current = s
	sh.mu.Unlock()
	return s
}

// replace is the host replaced by a new one, with its own key, at the same address: every
// connection to the old one dies, and new ones reach the replacement.
func (s *testSSHServer) replace(t *testing.T, authorized ssh.PublicKey) *testSSHServer {
	t.Helper()
	s.dropConnections()
	return newTestSSHServer(t, s.listener, authorized)
}

// stop closes the listener and every connection, as a deleted host would.
func (s *testSSHServer) stop() {
	_ = s.listener.Close()
	s.dropConnections()
}

var errUnauthorized = errors.New("public key not authorized")

func (s *testSSHServer) host() string {
	host, port, _ := net.SplitHostPort(s.addr)
	return "ssh://root@" + host + ":" + port
}

func (s *testSSHServer) hostKeyLine() string { return AuthorizedKey(s.hostKey.PublicKey()) }

// dropConnections kills every live connection, as a rebooting host would.
func (s *testSSHServer) dropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.liveConns {
		_ = c.Close()
	}
	s.liveConns = nil
}

func (s *testSSHServer) serve(c net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		_ = c.Close()
		return
	}
	generation := s.silent.Load()
	vanished := func() bool { return s.silent.Load() > generation }
	go func() {
		for r := range reqs {
			if r.Type == "keepalive@openssh.com" {
				s.keepalives.Add(1)
			}
			if r.WantReply && !vanished() {
				_ = r.Reply(r.Type == "keepalive@openssh.com", nil)
			}
		}
	}()
	for nc := range chans {
		if vanished() {
			continue // never answered: the client waits
		}
		var network, address string
		switch nc.ChannelType() {
		case "direct-streamlocal@openssh.com":
			var msg struct {
				SocketPath string
				Reserved0  string
				Reserved1  uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &msg); err != nil {
				_ = nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			network, address = "unix", msg.SocketPath
		case "direct-tcpip":
			var msg struct {
				Host       string
				Port       uint32
				OriginHost string
				OriginPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &msg); err != nil {
				_ = nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			network, address = "tcp", net.JoinHostPort(msg.Host, strconv.Itoa(int(msg.Port)))
		case "session":
			ch, chReqs, err := nc.Accept()
			if err == nil {
				go s.serveSession(c, ch, chReqs)
			}
			continue
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "not supported")
			continue
		}
		target, err := net.Dial(network, address)
		if err != nil {
			_ = nc.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			_ = target.Close()
			continue
		}
		go ssh.DiscardRequests(chReqs)
		go func() {
			defer ch.Close()
			defer target.Close()
			done := make(chan struct{}, 2)
			// Once the host has vanished, a forwarded connection carries nothing more either
			// way, as a powered-off host's would.
			go func() { _, _ = io.Copy(frozen{ch, vanished}, target); done <- struct{}{} }()
			go func() { _, _ = io.Copy(frozen{target, vanished}, ch); done <- struct{}{} }()
			<-done
		}()
	}
}

// serveSession runs an "exec" request with the local shell, as sshd would on the node.
func (s *testSSHServer) serveSession(c net.Conn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for r := range reqs {
		if r.Type != "exec" {
			_ = r.Reply(false, nil)
			continue
		}
		var msg struct{ Command string }
		if err := ssh.Unmarshal(r.Payload, &msg); err != nil {
			_ = r.Reply(false, nil)
			return
		}
		_ = r.Reply(true, nil)
		if s.dropOnExec.Add(-1) >= 0 {
			_ = c.Close()
			return
		}
		if s.cutSessions.Add(-1) >= 0 {
			return // the channel closes with no exit status
		}
		cmd := exec.Command("sh", "-c", msg.Command)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				status = uint32(exit.ExitCode())
			}
		}
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

// frozen writes to w until vanished, then swallows everything: the other end hears
// nothing more and is not told so.
type frozen struct {
	w        io.Writer
	vanished func() bool
}

func (f frozen) Write(p []byte) (int, error) {
	if f.vanished() {
		return len(p), nil
	}
	return f.w.Write(p)
}
