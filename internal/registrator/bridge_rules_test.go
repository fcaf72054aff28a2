package registrator

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	consulapi "github.com/hashicorp/consul/api"
)

// fakeEngine is an engine whose containers the test sets; it sends no events (the tests
// hand them to Handle, or miss them on purpose).
type fakeEngine struct {
	containers map[string]container.InspectResponse
}

func (e *fakeEngine) Info(context.Context) (system.Info, error) {
	return system.Info{Name: "node1", Swarm: swarm.Info{NodeAddr: "10.0.0.5"}}, nil
}

func (e *fakeEngine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	var out []container.Summary
	for _, id := range slices.Sorted(maps.Keys(e.containers)) {
		if e.containers[id].State.Running {
			out = append(out, container.Summary{ID: id})
		}
	}
	return out, nil
}

func (e *fakeEngine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	return e.containers[id], nil
}

func (e *fakeEngine) NetworkInspect(context.Context, string, network.InspectOptions) (network.Inspect, error) {
	return network.Inspect{Driver: "bridge"}, nil
}

func (e *fakeEngine) ServiceInspectWithRaw(context.Context, string, swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	return swarm.Service{}, nil, nil
}

func (e *fakeEngine) Events(context.Context, events.ListOptions) (<-chan events.Message, <-chan error) {
	return nil, nil
}

// fakeAgent is a Consul agent's service table and TTL check states.
type fakeAgent struct {
	services map[string]*consulapi.AgentService
	ttl      map[string]string // check ID -> status
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{services: map[string]*consulapi.AgentService{}, ttl: map[string]string{}}
}

func (a *fakeAgent) ServiceRegisterOpts(s *consulapi.AgentServiceRegistration, _ consulapi.ServiceRegisterOpts) error {
	a.services[s.ID] = &consulapi.AgentService{ID: s.ID, Service: s.Name, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.Meta}
	for _, c := range s.Checks {
		if c.TTL != "" {
			a.ttl[c.CheckID] = c.Status
		}
	}
	return nil
}

func (a *fakeAgent) ServiceDeregister(id string) error {
	delete(a.services, id)
	return nil
}

func (a *fakeAgent) Services() (map[string]*consulapi.AgentService, error) {
	return maps.Clone(a.services), nil
}

func (a *fakeAgent) UpdateTTL(checkID, _, status string) error {
	a.ttl[checkID] = status
	return nil
}

// running is the captured `docker run -p 19090:8080` container with a HEALTHCHECK in the
// given Docker health state.
func running(t *testing.T, health string) container.InspectResponse {
	t.Helper()
	inspect := loadInspect(t, "plain_published.json")
	state := *inspect.State
	state.Running = true
	state.Health = &container.Health{Status: health}
	inspect.State = &state
	return inspect
}

func newTestBridge(t *testing.T, engine *fakeEngine, agent *fakeAgent, cfg Config) *Bridge {
	t.Helper()
	cfg.Logf = t.Logf
	b := NewBridge(engine, agent, cfg)
	if err := b.identify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResyncReinspectsKnownContainers: a health event missed while the event stream was
// down (the container turned unhealthy, nothing told the bridge) is caught by the next
// resync, so a stale passing TTL is not refreshed for ever.
func TestResyncReinspectsKnownContainers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inspect := running(t, container.Healthy)
	engine := &fakeEngine{containers: map[string]container.InspectResponse{inspect.ID: inspect}}
	agent := newFakeAgent()
	b := newTestBridge(t, engine, agent, Config{})
	ids := b.Registered()
	if len(ids) != 1 {
		t.Fatalf("registered %v", ids)
	}
	check := ids[0] + ":docker-health"
	if agent.ttl[check] != consulapi.HealthPassing {
		t.Fatalf("healthy container's TTL: %q", agent.ttl[check])
	}

	engine.containers[inspect.ID] = running(t, container.Unhealthy) // its health_status event is lost
	b.refreshHealth()
	if agent.ttl[check] != consulapi.HealthPassing {
		t.Fatalf("(the refresh alone re-asserts what the bridge believes: %q)", agent.ttl[check])
	}
	if err := b.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if agent.ttl[check] != consulapi.HealthCritical {
		t.Fatalf("after a resync the unhealthy container's TTL is %q, want critical", agent.ttl[check])
	}
	b.refreshHealth()
	if agent.ttl[check] != consulapi.HealthCritical {
		t.Fatalf("the refresh put back %q", agent.ttl[check])
	}
	if len(agent.services) != 1 {
		t.Fatalf("services %v", agent.services)
	}
}

// TestDeregisterOnSuccess: with -deregister on-success a container that exited 0 is
// deregistered, one that failed stays registered (for its checks to tell), and a stop
// signal alone deregisters nothing.
func TestDeregisterOnSuccess(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		mode, exitCode string
		kept           bool
	}{
		"on-success, exit 0":   {DeregisterOnSuccess, "0", false},
		"on-success, exit 1":   {DeregisterOnSuccess, "1", true},
		"always, exit 1":       {DeregisterAlways, "1", false},
		"on-success, exit 137": {DeregisterOnSuccess, "137", true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			inspect := running(t, container.Healthy)
			engine := &fakeEngine{containers: map[string]container.InspectResponse{inspect.ID: inspect}}
			agent := newFakeAgent()
			b := newTestBridge(t, engine, agent, Config{Deregister: tc.mode})
			actor := events.Actor{ID: inspect.ID, Attributes: map[string]string{"signal": "15"}}
			b.Handle(ctx, events.Message{Action: events.ActionKill, Actor: actor})
			if tc.mode == DeregisterOnSuccess && len(agent.services) != 1 {
				t.Fatalf("on-success deregistered on the stop signal: %v", agent.services)
			}
			actor.Attributes = map[string]string{"exitCode": tc.exitCode}
			b.Handle(ctx, events.Message{Action: events.ActionDie, Actor: actor})
			if kept := len(agent.services) == 1; kept != tc.kept {
				t.Fatalf("after exit %s in mode %s: registered %v, want kept=%v", tc.exitCode, tc.mode, agent.services, tc.kept)
			}
		})
	}
}

// TestCleanupOnlyThisNode: -cleanup deregisters this node's registrations whose
// containers are gone, and nothing of another node's or of anyone else's.
func TestCleanupOnlyThisNode(t *testing.T) {
	t.Parallel()
	inspect := running(t, container.Healthy)
	engine := &fakeEngine{containers: map[string]container.InspectResponse{inspect.ID: inspect}}
	agent := newFakeAgent()
	for _, id := range []string{"node1:ghost:80", "node2:app:80", "node10:app:80", "web", "node1-web"} {
		agent.services[id] = &consulapi.AgentService{ID: id, Service: "x"}
	}
	b := newTestBridge(t, engine, agent, Config{Cleanup: true})
	want := append([]string{"node10:app:80", "node1-web", "node2:app:80", "web"}, b.Registered()...)
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(agent.services)); !slices.Equal(got, want) {
		t.Fatalf("after cleanup: %v, want %v", got, want)
	}
}
