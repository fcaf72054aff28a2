package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Workspaces for tests that need terraform as users run it: its own process (to be
// killed with SIGKILL or SIGINT, alone or with its process group), the provider as a
// plugin binary it starts (through dev_overrides), a state file per workspace.

var (
	buildOnce   sync.Once
	pluginDir   string
	pluginError error
)

// providerPlugin is the provider binary that workspaces run (built by Run).
func providerPlugin(t *testing.T) string {
	t.Helper()
	buildPlugin()
	if pluginError != nil {
		t.Fatal(pluginError)
	}
	return pluginDir
}

// buildPlugin builds the provider binary once per test process. Run calls it before any
// test: built later, in the middle of a long run, it would take in whatever the tree
// holds by then, not the code the test binary was compiled from.
func buildPlugin() {
	buildOnce.Do(func() {
		root, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			pluginError = fmt.Errorf("finding the module: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "microswarm-plugin-")
		if err != nil {
			pluginError = err
			return
		}
		pluginDir = dir
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "terraform-provider-microswarm"), ".")
		build.Dir = filepath.Dir(strings.TrimSpace(string(root)))
		if out, err := build.CombinedOutput(); err != nil {
			pluginError = fmt.Errorf("building the provider: %w: %s", err, out)
		}
	})
}

// removePlugin deletes the built provider (Run calls it).
func removePlugin() {
	if pluginDir != "" {
		_ = os.RemoveAll(pluginDir)
	}
}

// Workspace is a directory with a configuration and its own state.
type Workspace struct {
	t   *testing.T
	Dir string
	env []string
}

// NewWorkspace writes config to a new directory that terraform, with the provider built
// from this tree, applies against the tests' API.
func NewWorkspace(t *testing.T, config string) *Workspace {
	t.Helper()
	plugins := providerPlugin(t)
	dir := t.TempDir()
	cli := fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"microswarm/microswarm\" = %q\n  }\n  direct {}\n}\n", plugins)
	if err := os.WriteFile(filepath.Join(dir, "cli.tfrc"), []byte(cli), 0o600); err != nil {
		t.Fatal(err)
	}
	terraformBlock := "terraform {\n  required_providers {\n    microswarm = { source = \"microswarm/microswarm\" }\n  }\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(terraformBlock+config), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(dir, "cli.tfrc"), "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1")
	return &Workspace{t: t, Dir: dir, env: env}
}

// Command is one terraform command, started in a process group of its own.
type Command struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

type lockedWriter struct{ r *Command }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.out.Write(p)
}

// Start starts terraform with args (-no-color is added). Whatever is left of its
// process group (a provider that outlived a killed terraform) is killed when the test ends.
func (w *Workspace) Start(args ...string) *Command {
	w.t.Helper()
	path := os.Getenv("TF_ACC_TERRAFORM_PATH")
	if path == "" {
		path = "terraform"
	}
	cmd := exec.Command(path, append(args, "-no-color")...)
	cmd.Dir, cmd.Env = w.Dir, w.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r := &Command{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = lockedWriter{r}, lockedWriter{r}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	w.t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	return r
}

// Output is what terraform printed so far.
func (r *Command) Output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// WaitWithin waits for terraform to end, at most d. A terraform still running then (a
// provider that ignores the interrupt, a hang) is killed with its process group, and the
// test fails with what it printed.
func (r *Command) WaitWithin(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(d):
	}
	r.Signal(syscall.SIGKILL, true)
	<-r.done
	t.Fatalf("terraform %s did not end within %s:\n%s", strings.Join(r.cmd.Args[1:], " "), d, r.Output())
	return nil
}

// Signal sends sig to terraform alone, or to its whole process group (the provider too).
func (r *Command) Signal(sig syscall.Signal, group bool) {
	pid := r.cmd.Process.Pid
	if group {
		pid = -pid
	}
	_ = syscall.Kill(pid, sig)
}

// WaitFor waits until terraform printed text, or ended, or the timeout passed.
func (r *Command) WaitFor(text string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(r.Output(), text) {
			return true
		}
		select {
		case <-r.done:
			return strings.Contains(r.Output(), text)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// Terraform runs one command to its end and returns its output.
func (w *Workspace) Terraform(ctx context.Context, args ...string) (string, error) {
	w.t.Helper()
	r := w.Start(args...)
	select {
	case <-r.done:
	case <-ctx.Done():
		r.Signal(syscall.SIGKILL, true)
		<-r.done
		return r.Output(), ctx.Err()
	}
	if r.err != nil {
		return r.Output(), fmt.Errorf("terraform %s: %w\n%s", strings.Join(args, " "), r.err, r.Output())
	}
	return r.Output(), nil
}

// StateIDs returns the ids of the resources of a type in the workspace's state.
func (w *Workspace) StateIDs(resourceType string) []string {
	w.t.Helper()
	data, err := os.ReadFile(filepath.Join(w.Dir, "terraform.tfstate"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		w.t.Fatal(err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil // terraform was killed before it wrote a state
	}
	var st struct {
		Resources []struct {
			Type      string `json:"type"`
			Mode      string `json:"mode"`
			Instances []struct {
				Attributes map[string]any `json:"attributes"`
			} `json:"instances"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		w.t.Fatalf("reading the state of %s: %v", w.Dir, err)
	}
	var ids []string
	for _, r := range st.Resources {
		if r.Type != resourceType || r.Mode != "managed" {
			continue
		}
		for _, i := range r.Instances {
			if id, ok := i.Attributes["id"].(string); ok {
				ids = append(ids, id)
			}
		}
	}
	return ids
}
