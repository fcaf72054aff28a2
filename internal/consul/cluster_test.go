package consul

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// lockedBuffer collects an agent's output for the failure message.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startAgent runs spec's agent as a process on loopback (not in a container), with the
// command line the container would get, and returns a client for its API.
func startAgent(t *testing.T, bin string, spec Spec) *consulapi.Client {
	t.Helper()
	dataDir, configDir := t.TempDir(), t.TempDir()
	for _, f := range spec.Files() {
		if f.Path == ConfigFile {
			if err := os.WriteFile(filepath.Join(configDir, "microswarm.json"), f.Content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// As the image's entrypoint runs `agent ARGS`: the two directories go first.
	args := append([]string{"agent", "-data-dir=" + dataDir, "-config-dir=" + configDir}, spec.Args()[1:]...)
	cmd := exec.Command(bin, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", spec.NodeName, out.String())
		}
	})
	api, err := consulapi.NewClient(&consulapi.Config{Address: spec.APIAddress()})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func loopbackSpec(t *testing.T, role Role, node string) Spec {
	s := Spec{
		Role: role, ContainerName: node, Image: DefaultImage, Datacenter: DefaultDatacenter, NodeName: node,
		AdvertiseAddr: "127.0.0.1", ClientAddr: "127.0.0.1",
		Ports: Ports{HTTP: consultest.FreePort(t), DNS: PortDisabled, SerfLAN: consultest.FreePort(t)},
	}
	if role == RoleServer {
		s.BootstrapExpect = 1
		s.Ports.Server, s.Ports.SerfWAN, s.Ports.GRPCTLS = consultest.FreePort(t), PortDisabled, PortDisabled
	}
	return s
}

// TestAgainstARealAgent runs the readiness waits and the restart lock against real
// Consul agents on loopback: one server and one client joined to it.
func TestAgainstARealAgent(t *testing.T) {
	bin := consultest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alive := func(context.Context) error { return nil }

	serverSpec := loopbackSpec(t, RoleServer, "s1")
	serverSpec.Encrypt = testGossipKey
	server := startAgent(t, bin, serverSpec)

	t.Run("the server becomes a voter with a leader", func(t *testing.T) {
		st, err := WaitServerReady(ctx, server, alive, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Voter || st.Leader == "" || st.NodeID == "" || st.NodeName != "s1" || st.Voters != 1 {
			t.Errorf("status %+v", st)
		}
		h, err := WaitServersHealthy(ctx, server, "")
		if err != nil || !h.Healthy || h.Servers != 1 {
			t.Errorf("health %+v, %v", h, err)
		}
	})

	t.Run("the agent does not call home for updates", func(t *testing.T) {
		var self struct {
			DebugConfig struct{ DisableUpdateCheck bool }
		}
		if _, err := server.Raw().Query("/v1/agent/self", &self, nil); err != nil {
			t.Fatal(err)
		}
		if !self.DebugConfig.DisableUpdateCheck {
			t.Error("the agent runs with its update check on: it asks HashiCorp's checkpoint service about new versions")
		}
	})

	// Started once the server listens: a failed first join is retried only after 30s.
	agentSpec := loopbackSpec(t, RoleAgent, "c1")
	agentSpec.Encrypt = testGossipKey
	agentSpec.RetryJoin = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(serverSpec.Ports.SerfLAN))}
	agent := startAgent(t, bin, agentSpec)

	t.Run("the client joins as an alive member in the catalog", func(t *testing.T) {
		st, err := WaitAgentJoined(ctx, agent, alive)
		if err != nil {
			t.Fatal(err)
		}
		if removed, err := WaitCatalogName(ctx, agent, st.Self); err != nil || removed != "" {
			t.Fatalf("waiting for the catalog: removed %q, %v", removed, err)
		}
		if st, err = ReadAgentStatus(ctx, agent); err != nil {
			t.Fatal(err)
		}
		if st.MemberStatus != "alive" || !st.InCatalog || st.Servers != 1 || st.NodeName != "c1" {
			t.Errorf("status %+v", st)
		}
	})

	t.Run("the restart lock admits one holder at a time", func(t *testing.T) {
		first, err := AcquireLock(ctx, server, RestartLockKey, "first")
		if err != nil {
			t.Fatal(err)
		}
		secondCtx, cancelSecond := context.WithCancel(ctx)
		defer cancelSecond()
		got := make(chan *Lock, 1)
		go func() {
			// Through the client agent: any agent reaches the same lock.
			l, err := AcquireLock(secondCtx, agent, RestartLockKey, "second")
			if err != nil {
				t.Errorf("second holder: %v", err)
			}
			got <- l
		}()
		select {
		case <-got:
			t.Fatal("the second holder got the lock while the first held it")
		case <-time.After(2 * time.Second):
		}
		pair, _, err := server.KV().Get(RestartLockKey, nil)
		if err != nil || pair == nil || string(pair.Value) != "first" {
			t.Errorf("the lock key holds %+v (%v), want the first holder", pair, err)
		}
		released := time.Now()
		if err := first.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case second := <-got:
			t.Logf("the second holder got the lock %s after the release", time.Since(released).Round(time.Millisecond))
			if second != nil {
				if err := second.Release(ctx); err != nil {
					t.Error(err)
				}
			}
		case <-ctx.Done():
			t.Fatal("the second holder never got the lock")
		}
	})

	t.Run("a gossip key rotation leaves the new key alone in every member's keyring", func(t *testing.T) {
		const newKey = "5yD9+jHbAKFX8z5x9pNRYl0WQvV7bTg8tB9m7DCHXq4="
		// Through both agents at once, as two resources of one cluster would.
		results := make(chan error, 2)
		for _, api := range []*consulapi.Client{server, agent} {
			go func() {
				_, err := RotateGossipKey(ctx, api.Operator(), newKey)
				results <- err
			}()
		}
		for range 2 {
			if err := <-results; err != nil {
				t.Fatal(err)
			}
		}
		list, err := server.Operator().KeyringList(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, pool := range list {
			if len(pool.Keys) != 1 || pool.Keys[newKey] != pool.NumNodes || pool.PrimaryKeys[newKey] != pool.NumNodes {
				t.Errorf("pool (wan %v) of %d nodes: %d keys, the new key on %d, primary on %d; want it alone on every node",
					pool.WAN, pool.NumNodes, len(pool.Keys), pool.Keys[newKey], pool.PrimaryKeys[newKey])
			}
		}
		again, err := RotateGossipKey(ctx, server.Operator(), newKey)
		if err != nil || again.Installed || again.Removed != 0 {
			t.Errorf("a second rotation to the same key did %+v (%v), want nothing", again, err)
		}
		// The client still gossips with the server, now under the new key.
		if st, err := WaitAgentJoined(ctx, agent, alive); err != nil || st.MemberStatus != "alive" {
			t.Errorf("after the rotation the client is %+v (%v)", st, err)
		}
		if _, err := RotateGossipKey(ctx, server.Operator(), "not-a-key"); err == nil || strings.Contains(err.Error(), "not-a-key") {
			t.Errorf("a bad key gave %v, want an error that does not repeat it", err)
		}
	})
}

// TestACLsAgainstARealAgent runs a server with ACLs on (default deny, the management
// token write-only in its config): the agent gets its own token, anonymous writes are
// refused, and the tokens the provider makes can do what they are for and nothing more.
func TestACLsAgainstARealAgent(t *testing.T) {
	bin := consultest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const management = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	spec := loopbackSpec(t, RoleServer, "s1")
	spec.ACL = &ACL{DefaultPolicy: ACLDeny, Token: management}
	anonymous := startAgent(t, bin, spec)
	withToken := func(token string) *consulapi.Client {
		c, err := consulapi.NewClient(&consulapi.Config{Address: spec.APIAddress(), Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	admin := withToken(management)
	if _, err := WaitServerReady(ctx, admin, func(context.Context) error { return nil }, nil, nil); err != nil {
		t.Fatal(err)
	}
	var agentTok ManagedToken
	err := wait.Until(ctx, waitOptions("the agent token"), func(ctx context.Context) (bool, string, error) {
		var err error
		agentTok, err = EnsureAgentToken(ctx, admin)
		return err == nil, fmt.Sprint(err), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	again, err := EnsureAgentToken(ctx, admin)
	if err != nil || again.AccessorID != agentTok.AccessorID {
		t.Errorf("a second EnsureAgentToken made %s (%v), want the same token %s", again.AccessorID, err, agentTok.AccessorID)
	}
	registrator, err := EnsureToken(ctx, admin, "registrator", RegistratorRules)
	if err != nil {
		t.Fatal(err)
	}
	health, err := EnsureToken(ctx, admin, "health", HealthRules)
	if err != nil {
		t.Fatal(err)
	}
	kv := func(c *consulapi.Client, key string) error {
		_, err := c.KV().Put(&consulapi.KVPair{Key: key, Value: []byte("forged")}, nil)
		return err
	}
	register := func(c *consulapi.Client) error {
		return c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "forged", Port: 80})
	}
	denied := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("%s: %v, want 403 (ACL denied)", what, err)
		}
	}
	denied("an anonymous write to the health ledger", kv(anonymous, HealthLedgerPrefix+"app"))
	denied("an anonymous service registration", register(anonymous))
	denied("the registrator token writing KV", kv(withToken(registrator.SecretID), HealthLedgerPrefix+"app"))
	denied("the health token writing outside the ledger", kv(withToken(health.SecretID), "microswarm/consul-restart-lock"))
	denied("the health token registering a service", register(withToken(health.SecretID)))
	denied("the agent token writing KV", kv(withToken(agentTok.SecretID), HealthLedgerPrefix+"app"))
	if err := register(withToken(registrator.SecretID)); err != nil {
		t.Errorf("the registrator token cannot register a service: %v", err)
	}
	if err := kv(withToken(health.SecretID), HealthLedgerPrefix+"app"); err != nil {
		t.Errorf("the health token cannot write the ledger: %v", err)
	}
	// With its agent token the server registers its own node in the catalog.
	err = wait.Until(ctx, waitOptions("the server's node in the catalog"), func(ctx context.Context) (bool, string, error) {
		node, _, err := admin.Catalog().Node("s1", nil)
		return err == nil && node != nil && node.Node != nil, fmt.Sprint(err), nil
	})
	if err != nil {
		t.Error(err)
	}
}
