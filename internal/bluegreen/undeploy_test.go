package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"

	"github.com/microswarm/terraform-provider-microswarm/internal/swarmservice"
)

// stoppingSwarm is a manager whose removed services' tasks stop stopAfter after their
// removal (Docker's 2 s pause before it stops a networked task, then the grace period),
// and which refuses what a real one refuses meanwhile: a config or a network a service
// still names (Docker 20.10 removes a network as soon as its services are gone, while
// their tasks still run: measured on the demo, 2026-12-05). A task killed on its node is
// reported stopped only pause after its service's removal: the node had begun the
// graceful stop, whose pause comes first. It records when each thing went.
type stoppingSwarm struct {
	Engine    // only the methods below are called
	mu        sync.Mutex
	stopAfter time.Duration
	pause     time.Duration
	services  map[string]bool // by name (= ID here)
	removedAt map[string]time.Time
	killed    map[string]time.Time // a service's tasks killed on their node, and when
	configs   map[string]string    // ID: name
	labels    map[string]map[string]string
	network   bool
	gone      map[string]time.Time // what went, and when
}

func (s *stoppingSwarm) ServiceInspectWithRaw(_ context.Context, id string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.services[id] {
		return swarm.Service{}, nil, errdefs.NotFound(errors.New("no such service"))
	}
	return swarm.Service{ID: id, Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: id}}}, nil, nil
}

func (s *stoppingSwarm) ServiceRemove(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.services, id)
	s.removedAt[id] = time.Now()
	return nil
}

// stopped says whether the manager has heard that the tasks of removed service id
// stopped; s.mu held.
func (s *stoppingSwarm) stopped(id string, removedAt time.Time) bool {
	if _, killed := s.killed[id]; killed {
		return time.Since(removedAt) >= min(s.pause, s.stopAfter)
	}
	return time.Since(removedAt) >= s.stopAfter
}

func (s *stoppingSwarm) TaskList(context.Context, swarm.TaskListOptions) ([]swarm.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []swarm.Task
	for id, at := range s.removedAt {
		state := swarm.TaskStateRunning
		if s.stopped(id, at) {
			state = swarm.TaskStateShutdown
		}
		out = append(out, swarm.Task{ID: "task-" + id, ServiceID: id, NodeID: "node-a", Status: swarm.TaskStatus{State: state}})
	}
	return out, nil
}

func (s *stoppingSwarm) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []swarm.Node
	for id, labels := range s.labels {
		out = append(out, swarm.Node{ID: id, Spec: swarm.NodeSpec{Annotations: swarm.Annotations{Labels: labels}},
			Status: swarm.NodeStatus{State: swarm.NodeStateReady}, Description: swarm.NodeDescription{Hostname: id}})
	}
	return out, nil
}

func (s *stoppingSwarm) NodeInspectWithRaw(_ context.Context, id string) (swarm.Node, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return swarm.Node{ID: id, Spec: swarm.NodeSpec{Annotations: swarm.Annotations{Labels: s.labels[id]}}}, nil, nil
}

func (s *stoppingSwarm) NodeUpdate(_ context.Context, id string, _ swarm.Version, spec swarm.NodeSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.labels[id] = spec.Labels
	if len(spec.Labels) == 0 {
		s.gone["label on "+id] = time.Now()
	}
	return nil
}

func (s *stoppingSwarm) ConfigList(context.Context, swarm.ConfigListOptions) ([]swarm.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []swarm.Config
	for id, name := range s.configs {
		out = append(out, swarm.Config{ID: id, Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name,
			Labels: map[string]string{swarmservice.LabelOwner: "test"}}}})
	}
	return out, nil
}

func (s *stoppingSwarm) ConfigRemove(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.services) > 0 {
		return fmt.Errorf("config %s is in use by a service", id)
	}
	delete(s.configs, id)
	s.gone["config "+id] = time.Now()
	return nil
}

func (s *stoppingSwarm) NetworkInspect(_ context.Context, name string, _ network.InspectOptions) (network.Inspect, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.network {
		return network.Inspect{}, errdefs.NotFound(errors.New("no such network"))
	}
	return network.Inspect{ID: name, Name: name, Labels: map[string]string{swarmservice.LabelOwner: "test"}}, nil
}

func (s *stoppingSwarm) NetworkRemove(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.services) > 0 {
		return fmt.Errorf("network %s is in use by a service", id)
	}
	s.network = false
	s.gone["network"] = time.Now()
	return nil
}

// removingNode is a proxy node whose directory removal is recorded.
type removingNode struct {
	NodeFiles
	s    *stoppingSwarm
	name string
}

func (n removingNode) RemoveAll(context.Context, string) error {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	n.s.gone["directory on "+n.name] = time.Now()
	return nil
}

// killingNode is a node whose engine kills the tasks of the services it is given; a task
// killed while its service is not yet removed is recorded as restarted.
type killingNode struct {
	s         *stoppingSwarm
	restarted *[]string
}

func (n killingNode) Kill(_ context.Context, ids []string) ([]string, error) {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	var stopped []string
	for _, id := range ids {
		if n.s.services[id] {
			*n.restarted = append(*n.restarted, id) // swarm starts a killed task of a live service again
			continue
		}
		n.s.killed[id] = time.Now()
		stopped = append(stopped, "task-"+id)
	}
	return stopped, nil
}

// newStoppingSwarm is a manager running services, whose tasks stop stopAfter after their
// removal, or are heard of as stopped after Docker's 2 s pause when killed, with the
// service's network and nothing else.
func newStoppingSwarm(stopAfter time.Duration, services ...string) *stoppingSwarm {
	s := &stoppingSwarm{stopAfter: stopAfter, pause: 2 * time.Second, services: map[string]bool{}, removedAt: map[string]time.Time{},
		killed: map[string]time.Time{}, configs: map[string]string{}, labels: map[string]map[string]string{},
		network: true, gone: map[string]time.Time{}}
	for _, name := range services {
		s.services[name] = true
	}
	return s
}

// killingProxyNodes are world()'s proxies as proxy nodes of s whose engines kill tasks;
// a kill before a service's removal is recorded in restarted.
func killingProxyNodes(s *stoppingSwarm, fakes []*fakeProxy, restarted *[]string) []ProxyNode {
	var nodes []ProxyNode
	for _, p := range fakes {
		nodes = append(nodes, ProxyNode{Name: p.name, SwarmID: p.name, Files: removingNode{s: s, name: p.name}, Proxy: p,
			Tasks: killingNode{s: s, restarted: restarted}})
	}
	return nodes
}

// A delete does not wait out swarm's graceful stop of tasks nothing routes to any more
// (its 2 s pause, then the app's shutdown): once their services are removed and no proxy
// holds a request in flight, the reached nodes kill them, so everything is gone in a
// fraction of that. Nor does it wait for the manager to hear of the kills, which comes
// only after that pause: the nodes saw the tasks stop.
func TestUndeployKillsTheRemovedServicesTasksOnTheReachedNodes(t *testing.T) {
	t.Parallel()
	svc := Service{Name: "web", Network: "web-net"}
	proxy := ProxyDeployment{Service: svc}
	s := newStoppingSwarm(5*time.Second, proxy.ProxyName(), svc.ServiceName(Blue), svc.ServiceName(Green))
	s.configs["c1"] = "web-proxy-cfg-1"
	s.labels["node-a"] = map[string]string{proxy.NodeLabel(): "true"}
	var restarted []string
	_, fakes, _ := world()
	nodes := killingProxyNodes(s, fakes, &restarted)
	// One request is still in flight to green through node-b for 300 ms: the tasks go
	// only once it is answered.
	fakes[1].add(Green, Counters{InFlight: 1})
	var answered time.Time
	go func() {
		time.Sleep(300 * time.Millisecond)
		s.mu.Lock()
		answered = time.Now()
		s.mu.Unlock()
		fakes[1].add(Green, Counters{InFlight: 0})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := Undeploy(ctx, s, svc, nodes, "test"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(restarted) > 0 {
		t.Errorf("tasks killed before their service was removed (swarm starts them again): %v", restarted)
	}
	if len(s.services) > 0 || len(s.configs) > 0 || s.network {
		t.Fatalf("left behind: services %v, configs %v, network %t", s.services, s.configs, s.network)
	}
	for _, name := range []string{proxy.ProxyName(), svc.ServiceName(Blue), svc.ServiceName(Green)} {
		switch at, ok := s.killed[name]; {
		case !ok:
			t.Errorf("the tasks of %s were left to swarm's graceful stop", name)
		case answered.IsZero() || at.Before(answered):
			t.Errorf("the tasks of %s were killed with a request in flight", name)
		}
	}
	if took >= time.Second {
		t.Errorf("the delete took %s, waiting for swarm's graceful stop (%s) or its news of the kills (%s)", took.Round(time.Millisecond), s.stopAfter, s.pause)
	}
}

// A service's delete waits for its tasks only once: what only the services held (the
// proxy's configs, the nodes' label, the nodes' directories) goes while the tasks stop,
// and the network, which the tasks hold, after. Everything goes either way.
func TestUndeployCleansUpWhileTheTasksStop(t *testing.T) {
	t.Parallel()
	svc := Service{Name: "web", Network: "web-net"}
	proxy := ProxyDeployment{Service: svc}
	s := newStoppingSwarm(400*time.Millisecond, proxy.ProxyName(), svc.ServiceName(Blue), svc.ServiceName(Green))
	s.configs = map[string]string{"c1": "web-proxy-cfg-1", "c2": "web-proxy-cfg-2"}
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		s.labels[name] = map[string]string{proxy.NodeLabel(): "true"}
	}
	var nodes []ProxyNode
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		nodes = append(nodes, ProxyNode{Name: name, SwarmID: name, Files: removingNode{s: s, name: name}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Undeploy(ctx, s, svc, nodes, "test"); err != nil {
		t.Fatal(err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.services) > 0 || len(s.configs) > 0 || s.network {
		t.Fatalf("left behind: services %v, configs %v, network %t", s.services, s.configs, s.network)
	}
	var stopped time.Time // when the last task stopped
	for _, at := range s.removedAt {
		if at.Add(s.stopAfter).After(stopped) {
			stopped = at.Add(s.stopAfter)
		}
	}
	want := []string{"config c1", "config c2", "label on node-a", "label on node-b", "label on node-c",
		"directory on node-a", "directory on node-b", "directory on node-c"}
	var late []string
	for _, what := range want {
		at, ok := s.gone[what]
		switch {
		case !ok:
			t.Errorf("%s was not removed", what)
		case !at.Before(stopped):
			late = append(late, fmt.Sprintf("%s %s after", what, at.Sub(stopped).Round(time.Millisecond)))
		}
	}
	if len(late) > 0 {
		t.Errorf("removed only once the tasks had stopped (a wait the delete pays on top of theirs): %s", strings.Join(late, "; "))
	}
	if at, ok := s.gone["network"]; !ok || at.Before(stopped) {
		t.Errorf("the network went at %v, the tasks stopped at %v", at, stopped)
	}
}

// A proxy that keeps a request in flight past the bound, or a node without a proxy to
// ask, leaves the tasks to swarm's graceful stop: nothing open is cut.
func TestUndeployLeavesBusyTasksToTheGracefulStop(t *testing.T) {
	t.Parallel()
	for name, busy := range map[string]bool{"a request in flight": true, "a node without a proxy": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			svc := Service{Name: "web", Network: "web-net"}
			proxy := ProxyDeployment{Service: svc}
			s := newStoppingSwarm(killIdleWithin+500*time.Millisecond, proxy.ProxyName(), svc.ServiceName(Blue))
			var restarted []string
			_, fakes, _ := world()
			nodes := killingProxyNodes(s, fakes, &restarted)
			if busy {
				fakes[0].add(Blue, Counters{InFlight: 1})
			} else {
				nodes[1].Proxy = nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := Undeploy(ctx, s, svc, nodes, "test"); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.killed) > 0 {
				t.Errorf("killed %v", s.killed)
			}
			if len(s.services) > 0 || s.network {
				t.Errorf("left behind: services %v, network %t", s.services, s.network)
			}
		})
	}
}
