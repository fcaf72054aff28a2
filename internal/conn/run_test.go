package conn

import (
	"context"
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
