package registrator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

const testAppImage = "microswarm/demo-app:1.0.0"

// hostEngine is this machine's Docker engine with the images the test runs.
func hostEngine(t *testing.T) *client.Client {
	t.Helper()
	return testkit.HostEngine(t, testAppImage)
}

// The HEALTHCHECK runApp gives the app: fast, and one failure makes it unhealthy.
const appHealthInterval, appHealthTimeout = time.Second, time.Second

// runApp starts the demo app with a fast HEALTHCHECK, published on a loopback port, and
// removes it with the test. It returns the container ID and the app's URL.
func runApp(t *testing.T, docker *client.Client, name string, env []string) (string, string) {
	t.Helper()
	ctx := context.Background()
	created, err := docker.ContainerCreate(ctx, &container.Config{
		Image: testAppImage,
		Env:   env,
		Healthcheck: &container.HealthConfig{
			Test: []string{"CMD", "/demo-app", "-check"}, Interval: appHealthInterval, Timeout: appHealthTimeout, Retries: 1,
		},
		ExposedPorts: nat.PortSet{"8080/tcp": {}},
	}, &container.HostConfig{
		PortBindings: nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "0"}}},
	}, nil, nil, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = docker.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	if err := docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	inspect, err := docker.ContainerInspect(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	binding := inspect.NetworkSettings.Ports["8080/tcp"]
	if len(binding) == 0 {
		t.Fatalf("port 8080 not published: %v", inspect.NetworkSettings.Ports)
	}
	return created.ID, "http://127.0.0.1:" + binding[0].HostPort
}

// instances is Consul's health view of a service: ID -> check ID suffix -> status.
func instances(t *testing.T, health *consulapi.Health, service string) map[string]map[string]string {
	t.Helper()
	entries, _, err := health.Service(service, "", false, nil)
	if err != nil {
		return nil
	}
	out := map[string]map[string]string{}
	for _, e := range entries {
		checks := map[string]string{}
		for _, c := range e.Checks {
			if c.ServiceID == "" {
				continue
			}
			checks[c.CheckID[strings.LastIndex(c.CheckID, ":")+1:]] = c.Status
		}
		out[e.Service.ID] = checks
	}
	return out
}

func waitFor(t *testing.T, within time.Duration, what string, done func() bool) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	start := time.Now()
	err := wait.Until(ctx, wait.Options{What: what, Interval: 20 * time.Millisecond, Factor: 1},
		func(context.Context) (bool, string, error) { return done(), "", nil })
	if err != nil {
		t.Fatalf("%s: not within %s", what, within)
	}
	return time.Since(start)
}

// TestBridge runs the bridge between this machine's real Docker engine and a real Consul
// agent, and checks what a user of the catalog sees.
func TestBridge(t *testing.T) {
	docker := hostEngine(t)
	agent := consultest.StartDevAgent(t)
	cfg := consulapi.DefaultConfig()
	cfg.Address = agent.Address()
	consulAgent, err := ConnectAgent(cfg, 100, 100*time.Millisecond, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	consulClient, err := consulapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	health := consulClient.Health()

	ctx, cancel := context.WithCancel(context.Background())
	bridge := NewBridge(docker, consulAgent, Config{
		IP: "127.0.0.1", Resync: time.Second, Cleanup: true,
		AgentWatch: 200 * time.Millisecond, HealthRefresh: time.Second, Logf: t.Logf,
	})
	done := make(chan error, 1)
	go func() { done <- bridge.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	suffix := fmt.Sprintf("%06d", rand.IntN(1000000))
	service := "regtest-" + suffix
	id, url := runApp(t, docker, "regtest-app-"+suffix, []string{
		"SERVICE_NAME=" + service, "SERVICE_TAGS=blue", "SERVICE_CHECK_HTTP=/health", "SERVICE_CHECK_INTERVAL=1s",
		// Keeps serving 3 s after SIGTERM, as a draining service does.
		"SHUTDOWN_DELAY=3s",
	})
	info, err := docker.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	serviceID := info.Name + ":regtest-app-" + suffix + ":8080"

	t.Run("registered and passing", func(t *testing.T) {
		took := waitFor(t, 20*time.Second, "registered with both checks passing", func() bool {
			c := instances(t, health, service)[serviceID]
			return c["check"] == consulapi.HealthPassing && c["docker-health"] == consulapi.HealthPassing
		})
		t.Logf("registered and passing %s after start", took)
		entries, _, err := health.Service(service, "blue", false, nil)
		if err != nil || len(entries) != 1 {
			t.Fatalf("catalog by tag: %v %v", entries, err)
		}
		if got := fmt.Sprintf("http://%s:%d", entries[0].Service.Address, entries[0].Service.Port); got != url {
			t.Errorf("registered at %s, the app answers at %s", got, url)
		}
	})

	// Docker's part is up to an interval (to the next probe) and a probe's timeout (a probe
	// that hangs fails then); the bridge's part, from Docker's health_status event to the
	// check in Consul, is allowed half a second. Two intervals alone left the bridge no
	// time when a loaded machine made a probe's exec take its whole timeout.
	t.Run("a failing HEALTHCHECK turns critical within an interval, a probe timeout and half a second", func(t *testing.T) {
		resp, err := http.Post(url+"/fail", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		took := waitFor(t, appHealthInterval+appHealthTimeout+500*time.Millisecond, "docker-health critical", func() bool {
			return instances(t, health, service)[serviceID]["docker-health"] == consulapi.HealthCritical
		})
		t.Logf("critical in Consul %s after the app started failing", took)
	})

	t.Run("an agent restart loses nothing for long", func(t *testing.T) {
		agent.Stop()
		agent.Start()
		took := waitFor(t, 10*time.Second, "registered again after the agent restart", func() bool {
			_, ok := instances(t, health, service)[serviceID]
			return ok
		})
		t.Logf("registered again %s after the agent restart began", took)
	})

	t.Run("cleanup removes this node's registrations of gone containers only", func(t *testing.T) {
		ghost := info.Name + ":regtest-ghost-" + suffix + ":80"
		other := "regtest-other-" + suffix
		for _, reg := range []*consulapi.AgentServiceRegistration{{ID: ghost, Name: "ghost"}, {ID: other, Name: other}} {
			if err := consulAgent.ServiceRegister(reg); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 5*time.Second, "the ghost cleaned up", func() bool {
			have, err := consulAgent.Services()
			return err == nil && have[ghost] == nil
		})
		have, err := consulAgent.Services()
		if err != nil || have[other] == nil {
			t.Fatalf("cleanup removed a registration that is not the node's: %v %v", have, err)
		}
	})

	t.Run("a stopping container is deregistered before it dies", func(t *testing.T) {
		stopped := make(chan error, 1)
		timeout := 10
		go func() {
			stopped <- docker.ContainerStop(context.Background(), id, container.StopOptions{Timeout: &timeout})
		}()
		waitFor(t, 3*time.Second, "deregistered on stop", func() bool {
			_, ok := instances(t, health, service)[serviceID]
			return !ok
		})
		inspect, err := docker.ContainerInspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !inspect.State.Running {
			t.Fatalf("deregistered only after the container died (state %s)", inspect.State.Status)
		}
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		// It must stay deregistered through resyncs while it is gone.
		time.Sleep(1500 * time.Millisecond)
		if _, ok := instances(t, health, service)[serviceID]; ok {
			t.Fatal("registered again after it stopped")
		}
	})
}
