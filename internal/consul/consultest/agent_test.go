package consultest

import (
	"net"
	"strings"
	"testing"
)

// An agent whose port another process took between FreePort and the agent's bind exits at
// once; StartDevAgent starts it again on other ports instead of failing the test later
// with "no leader".
func TestDevAgentWhosePortIsTakenStartsOnOtherPorts(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	calls := 0
	freePort = func(t *testing.T) int {
		calls++
		if calls == 1 { // the first agent's HTTP port
			return takenPort
		}
		return FreePort(t)
	}
	defer func() { freePort = FreePort }()

	a := StartDevAgent(t)
	if a.HTTPPort == takenPort {
		t.Fatalf("the agent is on the taken port %d", takenPort)
	}
	if calls != 8 {
		t.Fatalf("%d ports picked, want 8: two agents of four ports", calls)
	}
	if !strings.Contains(a.output.String(), "Consul agent running") {
		t.Fatalf("the agent's output does not say it runs:\n%s", a.output.String())
	}
}
