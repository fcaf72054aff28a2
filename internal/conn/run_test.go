package conn

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
