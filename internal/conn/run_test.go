package conn

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunOverThePinnedConnection(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	p := f.pool(t, nil)
	ctx := context.Background()
	h, err := p.Open(ctx, Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "authorized_keys")
	out, err := h.Run(ctx, "cat > "+file+" && echo written", strings.NewReader("ssh-ed25519 AAAA test\n"))
	if err != nil || out != "written\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	if got, _ := os.ReadFile(file); string(got) != "ssh-ed25519 AAAA test\n" {
		t.Fatalf("stdin did not reach the command: the file holds %q", got)
	}
	_, err = h.Run(ctx, "echo nope >&2; exit 3", nil)
	if err == nil || !strings.Contains(err.Error(), "nope") || !strings.Contains(err.Error(), "3") {
		t.Fatalf("a failing command: %v, want its exit status and standard error", err)
	}
}

// A connection that answered within ReuseUntested is reused without a keepalive round
// trip; an older one is asked once before it is reused.
func TestARecentlyAnsweringConnectionIsReusedWithoutAKeepalive(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	p := f.pool(t, func(o *Options) { o.ReuseUntested = time.Hour })
	ctx := context.Background()
	h, err := p.Open(ctx, Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := h.Run(ctx, "true", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.server.keepalives.Load(); n != 0 {
		t.Fatalf("5 commands on a connection that just answered sent %d keepalives; want none", n)
	}
	p.opts.ReuseUntested = -1
	if _, err := h.Run(ctx, "true", nil); err != nil {
		t.Fatal(err)
	}
	if n := f.server.keepalives.Load(); n != 1 {
		t.Fatalf("a command on a connection not known to answer sent %d keepalives; want 1", n)
	}
}

// A host that vanished without closing the connection, just after it answered: the
// command's channel is not waited for past the connect timeout; the connection is
// dropped and the command runs on a new one.
func TestAConnectionThatStopsAnsweringIsDroppedWithinTheConnectTimeout(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	p := f.pool(t, func(o *Options) { o.ReuseUntested = time.Hour; o.ConnectTimeout = 500 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := p.Open(ctx, Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Run(ctx, "true", nil); err != nil {
		t.Fatal(err)
	}
	f.server.silent.Add(1)
	out, err := h.Run(ctx, "echo again", nil)
	if err != nil || strings.TrimSpace(out) != "again" {
		t.Fatalf("a command after the host stopped answering = %q, %v; want it run on a new connection", out, err)
	}
	if n := f.server.accepted.Load(); n != 2 {
		t.Fatalf("server accepted %d connections; want 2 (the silent one dropped, one new)", n)
	}
}

// A connection that has not answered for a while and stays silent when asked (its host
// powered off in the middle of a run, or replaced by another at the same address) is not
// waited for the whole connect timeout before the host is dialled again: a live sshd
// answers a keepalive in milliseconds.
func TestASilentConnectionIsReplacedWithoutWaitingTheConnectTimeout(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	p := f.pool(t, func(o *Options) {
		o.ReuseUntested = -1 // every use asks first
		o.KeepaliveInterval = -1
		o.ConnectTimeout = time.Minute
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := p.Open(ctx, Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Run(ctx, "true", nil); err != nil { // the server serves the connection
		t.Fatal(err)
	}
	f.server.silent.Add(1)
	start := time.Now()
	out, err := h.Run(ctx, "echo again", nil)
	took := time.Since(start)
	if err != nil || strings.TrimSpace(out) != "again" {
		t.Fatalf("a command after the connection went silent = %q, %v; want it run on a new connection", out, err)
	}
	if took > reuseCheckTimeout+3*time.Second {
		t.Fatalf("the command ran %s after the connection went silent; want within the reuse check's %s and a dial, not the connect timeout", took, reuseCheckTimeout)
	}
	if n := f.server.accepted.Load(); n != 2 {
		t.Fatalf("server accepted %d connections; want 2 (the silent one closed, one new)", n)
	}
}

// A host that vanishes while a command runs there (powered off, its network cut): the
// background keepalive goes unanswered, so the connection is closed and the command
// fails within an interval and the connect timeout, though its caller set no deadline.
// Without the keepalive it waits until the kernel gives up on the TCP connection.
func TestACommandOnAHostThatVanishesFailsWithinTheKeepalive(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	p := f.pool(t, func(o *Options) {
		o.KeepaliveInterval = 200 * time.Millisecond
		o.ConnectTimeout = 500 * time.Millisecond
	})
	h, err := p.Open(context.Background(), Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.Run(context.Background(), "sleep 30", nil)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the command runs
	f.server.silent.Add(1)
	start := time.Now()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the command on a host that vanished succeeded")
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("the command failed %s after its host vanished; want within the keepalive's 0.7 s and some slack", took)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a command on a host that vanished still waits after 20 s; want it failed once a keepalive goes unanswered")
	}
}

// A forward the far end refuses (nothing listens on the port yet: a Consul starting) is
// the server's answer on a live connection. The connection stays, with every other
// channel on it (a swarm join in flight on the same node got EOF when the refusal dropped
// it), and is not dialled again.
func TestARefusedForwardKeepsTheConnectionAndItsOtherChannels(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	p := f.pool(t, func(o *Options) { o.ReuseUntested = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := p.Open(ctx, Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err != nil {
		t.Fatal(err)
	}
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = echo.Close() }()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := closed.Addr().String()
	_ = closed.Close()

	inFlight, err := h.DialContext(ctx, "tcp", echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = inFlight.Close() }()
	if _, err := h.DialContext(ctx, "tcp", refusedAddr); err == nil {
		t.Fatal("a forward to a port nothing listens on succeeded")
	}
	_ = inFlight.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := inFlight.Write([]byte("still there\n")); err != nil {
		t.Fatalf("the channel in flight was cut by the refused forward: %v", err)
	}
	got, err := bufio.NewReader(inFlight).ReadString('\n')
	if err != nil || got != "still there\n" {
		t.Fatalf("the channel in flight was cut by the refused forward: read %q, %v", got, err)
	}
	if n := f.server.accepted.Load(); n != 1 {
		t.Fatalf("server accepted %d connections; want 1 (a refused forward is an answer on a live connection)", n)
	}
}
