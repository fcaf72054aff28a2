package conn

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A command safe to repeat survives a session cut off without an exit status and a
// connection dropped mid-way (a fresh one is dialled); the server counts the dials.
func TestRunIdempotentRetriesTransportFaults(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	p := f.pool(t, nil)
	ctx := context.Background()
	h, err := p.Open(ctx, Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "counter")
	f.server.cutSessions.Store(1)
	f.server.dropOnExec.Store(1)
	out, err := h.RunIdempotent(ctx, "cat > "+file+" && echo done", "payload\n")
	if err != nil || out != "done\n" {
		t.Fatalf("RunIdempotent through a dropped connection and a cut session = %q, %v", out, err)
	}
	if got, _ := os.ReadFile(file); string(got) != "payload\n" {
		t.Fatalf("stdin on the last try: the file holds %q", got)
	}
	if n := f.server.accepted.Load(); n != 2 {
		t.Fatalf("the server accepted %d connections, want 2 (a fresh one after the drop)", n)
	}
}

// A command that ran and failed is not retried; transport faults that never end give
// up after the policy's tries with an error that says what was tried.
func TestRunIdempotentGivesUpAndSaysWhat(t *testing.T) {
	t.Parallel()
	f := newSSHFixture(t)
	p := f.pool(t, nil)
	ctx := context.Background()
	h, err := p.Open(ctx, Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	_, err = h.RunIdempotent(ctx, "echo x >> "+marker+"; exit 3", "")
	if err == nil || strings.Contains(err.Error(), "tried") {
		t.Fatalf("a failing command: %v; want its own error, not retries", err)
	}
	if got, _ := os.ReadFile(marker); string(got) != "x\n" {
		t.Fatalf("a failing command ran %d times, want once", strings.Count(string(got), "x"))
	}
	f.server.cutSessions.Store(100)
	_, err = h.RunIdempotent(ctx, "true", "")
	if err == nil || !strings.Contains(err.Error(), "tried 5 times") || !strings.Contains(err.Error(), "fresh connection") {
		t.Fatalf("sessions that always die: %v; want the tries named", err)
	}
}
