package consultest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
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

// DevAgent is a real Consul agent in -dev mode on loopback ports, which forgets every
// registration when it restarts (as an agent without a data directory does).
type DevAgent struct {
	t        *testing.T
	bin      string
	HTTPPort int
	ports    []int
	cmd      *exec.Cmd
	extra    []string
}

// StartDevAgent starts a dev agent, stopped with the test; args are more agent flags
// (`-encrypt=KEY`, say).
func StartDevAgent(t *testing.T, args ...string) *DevAgent {
	t.Helper()
	a := &DevAgent{t: t, bin: Binary(t), HTTPPort: FreePort(t), extra: args}
	a.ports = []int{FreePort(t), FreePort(t), FreePort(t)}
	a.Start()
	t.Cleanup(a.Stop)
	return a
}

// Address is the agent's HTTP address, host:port.
func (a *DevAgent) Address() string { return "127.0.0.1:" + strconv.Itoa(a.HTTPPort) }

// Start (re)starts the agent on its ports.
func (a *DevAgent) Start() {
	a.t.Helper()
	a.cmd = exec.Command(a.bin, "agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1",
		"-http-port="+strconv.Itoa(a.HTTPPort), "-dns-port="+strconv.Itoa(a.ports[0]),
		"-serf-lan-port="+strconv.Itoa(a.ports[1]), "-server-port="+strconv.Itoa(a.ports[2]),
		"-grpc-port=-1", "-grpc-tls-port=-1", "-serf-wan-port=-1", "-data-dir="+a.t.TempDir())
	a.cmd.Args = append(a.cmd.Args, a.extra...)
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
}

// Stop kills the agent; the next Start is a fresh agent.
func (a *DevAgent) Stop() {
	if a.cmd != nil && a.cmd.Process != nil {
		_ = a.cmd.Process.Kill()
		_ = a.cmd.Wait()
	}
	a.cmd = nil
}
