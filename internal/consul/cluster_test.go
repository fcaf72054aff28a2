package consul

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
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
		st, err := WaitServerReady(ctx, server, alive)
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
}
