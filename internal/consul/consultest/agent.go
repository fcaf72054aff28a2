package consultest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// Binary finds a consul binary for tests that run a real agent: $MICROSWARM_CONSUL_BIN,
// the build tools/images/gobin.sh caches, or consul on PATH. Without one the test is
// skipped, except in CI, where the images step must have built it.
func Binary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("MICROSWARM_CONSUL_BIN"); bin != "" {
		return bin
	}
	cache := os.Getenv("MICROSWARM_CACHE")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "microswarm")
		}
	}
	if cache != "" {
		if bin := filepath.Join(cache, "bin", "consul-1.20.5"); fileExists(bin) {
			return bin
		}
	}
	if bin, err := exec.LookPath("consul"); err == nil {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no consul binary in CI: tools/images/gobin.sh consul builds it")
	}
	t.Skip("no consul binary: run tools/images/gobin.sh consul or set MICROSWARM_CONSUL_BIN")
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("listener address %v is not TCP", l.Addr())
	}
	return addr.Port
}

// freePort is FreePort; a test of the retry replaces it.
var freePort = FreePort

// DevAgent is a real Consul agent in -dev mode on loopback ports, which forgets every
// registration when it restarts (as an agent without a data directory does).
type DevAgent struct {
	t        *testing.T
	bin      string
	HTTPPort int
	ports    []int
	extra    []string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the running agent's process has ended
	output   *tailBuffer
}

// readyWithin bounds how long StartDevAgent waits for the agent to elect itself. A dev
// agent does it in about a second; the bound is for a machine that runs the acceptance
// tests beside this package.
const readyWithin = 60 * time.Second

// StartDevAgent starts a dev agent, stopped with the test, and returns once it has a
// leader; args are more agent flags (`-encrypt=KEY`, say). FreePort's ports can be taken
// by another process before the agent binds them: an agent that exits before it is
// ready is started again on new ports, twice at most. A failure quotes the agent's output.
func StartDevAgent(t *testing.T, args ...string) *DevAgent {
	t.Helper()
	bin := Binary(t)
	for attempt := 1; ; attempt++ {
		a := &DevAgent{t: t, bin: bin, HTTPPort: freePort(t), extra: args}
		a.ports = []int{freePort(t), freePort(t), freePort(t)}
		a.Start()
		err := a.waitForLeader(readyWithin)
		if err == nil {
			t.Cleanup(a.Stop)
			return a
		}
		exited := a.hasExited()
		a.Stop()
		if !exited || attempt == 3 {
			t.Fatalf("consul dev agent (attempt %d): %v; its output ends:\n%s", attempt, err, a.output.String())
		}
		t.Logf("consul dev agent exited before it was ready, starting it on other ports: %v", err)
	}
}

// Address is the agent's HTTP address, host:port.
func (a *DevAgent) Address() string { return "127.0.0.1:" + strconv.Itoa(a.HTTPPort) }

// Start (re)starts the agent on its ports; it does not wait for it to be ready.
func (a *DevAgent) Start() {
	a.t.Helper()
	a.cmd = exec.Command(a.bin, "agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1",
		"-http-port="+strconv.Itoa(a.HTTPPort), "-dns-port="+strconv.Itoa(a.ports[0]),
		"-serf-lan-port="+strconv.Itoa(a.ports[1]), "-server-port="+strconv.Itoa(a.ports[2]),
		"-grpc-port=-1", "-grpc-tls-port=-1", "-serf-wan-port=-1", "-data-dir="+a.t.TempDir())
	a.cmd.Args = append(a.cmd.Args, a.extra...)
	a.output = &tailBuffer{max: 8 << 10}
	a.cmd.Stdout, a.cmd.Stderr = a.output, a.output
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	exited, cmd := make(chan struct{}), a.cmd
	a.exited = exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
}

// Stop kills the agent; the next Start is a fresh agent.
func (a *DevAgent) Stop() {
	if a.cmd != nil && a.cmd.Process != nil {
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
	a.cmd = nil
}

func (a *DevAgent) hasExited() bool {
	select {
	case <-a.exited:
		return true
	default:
		return false
	}
}

// waitForLeader polls the status endpoint, which needs no ACL token, until the agent
// names a leader, its process ends, or the time is up.
func (a *DevAgent) waitForLeader(within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + a.Address() + "/v1/status/leader"
	return wait.Until(ctx, wait.Options{What: "the dev agent's leader", Interval: 100 * time.Millisecond, MaxInterval: 100 * time.Millisecond},
		func(ctx context.Context) (bool, string, error) {
			if a.hasExited() {
				return false, "", fmt.Errorf("the agent exited (%v)", a.cmd.ProcessState)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return false, "", err
			}
			resp, err := client.Do(req)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			_ = resp.Body.Close()
			leader := strings.Trim(strings.TrimSpace(string(body)), `"`)
			return resp.StatusCode == http.StatusOK && leader != "", fmt.Sprintf("HTTP %d %q", resp.StatusCode, body), nil
		})
}

// tailBuffer keeps the last max bytes written to it, for a process's output.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
