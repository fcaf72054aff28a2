package consul

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

// A dead agent's catalog entry under the name a new agent joins with (what a quorum lost
// leaves when the node is replaced under its name): with its serfHealth passing, the new
// agent cannot register over it, and the catalog keeps reporting the dead agent's
// services. ClearStaleCatalogName removes it, and the node is then the new agent's, with
// its services and none of the dead one's. Real agents on loopback.
func TestClearStaleCatalogNameRemovesADeadAgentsEntry(t *testing.T) {
	bin := consultest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alive := func(context.Context) error { return nil }

	serverSpec := loopbackSpec(t, RoleServer, "s1")
	server := startAgent(t, bin, serverSpec)
	if _, err := WaitServerReady(ctx, server, alive, nil, nil); err != nil {
		t.Fatal(err)
	}
	const deadID = "3dcd4606-293e-a62f-3e71-2ea8709dc0aa"
	_, err := server.Catalog().Register(&consulapi.CatalogRegistration{
		ID: deadID, Node: "c1", Address: "127.0.0.1",
		Service: &consulapi.AgentService{ID: "ghost-1", Service: "ghost", Port: 8080},
		Checks: consulapi.HealthChecks{
			{Node: "c1", CheckID: "serfHealth", Name: "Serf Health Status", Status: consulapi.HealthPassing},
			{Node: "c1", CheckID: "service:ghost-1", Name: "ghost", Status: consulapi.HealthPassing, ServiceID: "ghost-1"},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}

	agentSpec := loopbackSpec(t, RoleAgent, "c1")
	agentSpec.RetryJoin = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(serverSpec.Ports.SerfLAN))}
	agent := startAgent(t, bin, agentSpec)
	for try := 0; ; try++ { // once its API listens
		err := agent.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{ID: "real-1", Name: "real", Port: 9090})
		if err == nil {
			break
		}
		if try == 100 {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, err := WaitAgentJoined(ctx, agent, alive)
	if err != nil {
		t.Fatal(err)
	}
	mismatches := func() []string {
		members, err := Members(ctx, server)
		if err != nil {
			t.Fatal(err)
		}
		out, err := CatalogMismatches(ctx, server, members)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := mismatches(); len(got) != 1 || !strings.Contains(got[0], "c1 (member "+st.NodeID+", catalog node "+deadID+")") {
		t.Errorf("mismatches before the claim: %q, want c1 held as the dead node", got)
	}
	removed, err := ClearStaleCatalogName(ctx, agent, st.Self)
	if err != nil {
		t.Fatal(err)
	}
	if removed != deadID {
		t.Errorf("the clear reports %q removed, want the dead agent's %s", removed, deadID)
	}
	// Without ACLs no token is set to make the agent sync at once: its service's next
	// change does (the check of a registrator's service changes every few seconds).
	if err := agent.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{ID: "real-2", Name: "real", Port: 9091}); err != nil {
		t.Fatal(err)
	}
	if again, err := WaitCatalogName(ctx, agent, st.Self); err != nil || again != "" {
		t.Fatalf("the wait for the catalog gave %q, %v; want the node with nothing more removed", again, err)
	}
	// The node is the new agent's, and its services follow once the agent syncs.
	deadline := time.Now().Add(time.Minute)
	for {
		node, _, err := server.Catalog().Node("c1", nil)
		if err != nil {
			t.Fatal(err)
		}
		var services []string
		for _, s := range node.Services {
			services = append(services, s.Service)
		}
		if !strings.EqualFold(node.Node.ID, st.NodeID) {
			t.Fatalf("the catalog's c1 is node %s, want the agent's %s", node.Node.ID, st.NodeID)
		}
		if strings.Contains(strings.Join(services, ","), "ghost") {
			t.Fatalf("the catalog's c1 still holds the dead agent's service: %v", services)
		}
		if strings.Contains(strings.Join(services, ","), "real") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's service never reached the catalog: %v", services)
		}
		time.Sleep(250 * time.Millisecond)
	}

	if got := mismatches(); len(got) != 0 {
		t.Errorf("mismatches after the claim: %q, want none", got)
	}
	// Once claimed, nothing more is done.
	again, err := ClaimCatalogName(ctx, agent, st.Self)
	if err != nil || !again.Claimed || again.Removed != "" {
		t.Errorf("a second claim gave %+v (%v), want it claimed with nothing removed", again, err)
	}
}
