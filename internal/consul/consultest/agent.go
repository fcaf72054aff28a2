package consultest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
