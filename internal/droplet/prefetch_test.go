package droplet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// prefetchNode runs the prefetch script in a real shell on this machine, with only sh,
// setsid, nohup and, if withDocker, a stub docker that takes pullFor to pull each image and
// logs its arguments; the node's log is redirected into the test's directory.
func prefetchNode(t *testing.T, withDocker bool, pullFor time.Duration) (RunFunc, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"sh", "setsid", "nohup", "sleep"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s here: %v", tool, err)
		}
		if err := os.Symlink(path, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	calls := filepath.Join(dir, "docker.log")
	if withDocker {
		stub := fmt.Sprintf("#!/bin/sh\nsleep %.3f\necho \"$*\" >>%s\n", pullFor.Seconds(), calls)
		if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := prefetchLog
	prefetchLog = filepath.Join(dir, "prefetch.log")
	t.Cleanup(func() { prefetchLog = old })
	run := func(ctx context.Context, script string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "sh"), "-c", script)
		cmd.Env = []string{"PATH=" + bin}
		out, err := cmd.Output()
		return string(out), err
	}
	return run, calls
}

// TestPrefetchImagesPullsInOrderInTheBackground: the call returns while the pulls run, and
// the node then pulls each image once, in the order given.
func TestPrefetchImagesPullsInOrderInTheBackground(t *testing.T) {
	run, calls := prefetchNode(t, true, 500*time.Millisecond)
	start := time.Now()
	state, err := PrefetchImages(t.Context(), run, []string{"hashicorp/consul:1.20.5", "haproxy:2.6"})
	if err != nil || state != "started" {
		t.Fatalf("PrefetchImages = %q, %v; want started", state, err)
	}
	if took := time.Since(start); took >= 500*time.Millisecond {
		t.Errorf("PrefetchImages took %s: it waited for a pull", took)
	}
	want := "pull -q hashicorp/consul:1.20.5\npull -q haproxy:2.6\n"
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := os.ReadFile(calls)
		if string(got) == want {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(prefetchLog)
			t.Fatalf("the node's docker was called with:\n%s\nwant:\n%s\nthe node's prefetch log:\n%s", got, want, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPrefetchImagesWithoutTheDockerCLIDoesNothing(t *testing.T) {
	run, _ := prefetchNode(t, false, 0)
	if state, err := PrefetchImages(t.Context(), run, []string{"haproxy:2.6"}); err != nil || state != "absent" {
		t.Fatalf("PrefetchImages = %q, %v; want absent", state, err)
	}
}

func TestPrefetchImagesRefusesWhatIsNoReference(t *testing.T) {
	ran := false
	run := func(context.Context, string) (string, error) { ran = true; return "started", nil }
	for _, ref := range []string{"", "x'; rm -rf /; '", "a\nb"} {
		if _, err := PrefetchImages(t.Context(), run, []string{"haproxy:2.6", ref}); err == nil {
			t.Errorf("PrefetchImages accepted %q", ref)
		}
	}
	if ran {
		t.Error("a script ran with a bad reference")
	}
	if state, err := PrefetchImages(t.Context(), run, nil); err != nil || state != "" || ran {
		t.Errorf("no images: %q, %v, ran %v; want nothing run", state, err, ran)
	}
}
