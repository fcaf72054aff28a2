package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
)

// A new proxy image on the same port: the node's port is steered to a stand-in before
// the proxy is replaced and back after the new one answers, on every node; whatever
// step fails, a steering rule never outlives the stand-in it points at, and the next
// run finishes the handover.

// fakeSwarm is a manager with three nodes, where every task runs at once. Its log and
// the fake nodes' log are one, in order.
type fakeSwarm struct {
	mu       sync.Mutex
	services map[string]swarm.Service
	nodes    []string
	log      *[]string
	// lag is how many task listings after an update still show the previous spec, as
	// a real update rolling node by node does; previous holds it by service ID.
	lag      int
	stale    map[string]int
	previous map[string]swarm.ServiceSpec
}

func newFakeSwarm(log *[]string) *fakeSwarm {
	return &fakeSwarm{services: map[string]swarm.Service{}, nodes: []string{"node-a", "node-b", "node-c"}, log: log,
		stale: map[string]int{}, previous: map[string]swarm.ServiceSpec{}}
}

func (f *fakeSwarm) logf(format string, args ...any) {
	*f.log = append(*f.log, fmt.Sprintf(format, args...))
}

func (f *fakeSwarm) find(idOrName string) (swarm.Service, bool) {
	for _, s := range f.services {
		if s.ID == idOrName || s.Spec.Name == idOrName {
			return s, true
		}
	}
	return swarm.Service{}, false
}

func (f *fakeSwarm) ServiceCreate(_ context.Context, spec swarm.ServiceSpec, _ swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := "id-" + spec.Name
	f.services[id] = swarm.Service{ID: id, Spec: spec, Meta: swarm.Meta{Version: swarm.Version{Index: 1}}}
	f.logf("create %s %s", spec.Name, imageOf(spec))
	return swarm.ServiceCreateResponse{ID: id}, nil
}

func (f *fakeSwarm) ServiceInspectWithRaw(_ context.Context, id string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.find(id); ok {
		return s, nil, nil
	}
	return swarm.Service{}, nil, errdefs.NotFound(errors.New("no such service: " + id))
}

func (f *fakeSwarm) ServiceUpdate(_ context.Context, id string, _ swarm.Version, spec swarm.ServiceSpec, _ swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.find(id)
	if !ok {
		return swarm.ServiceUpdateResponse{}, errdefs.NotFound(errors.New("no such service"))
	}
	if imageOf(spec) == "haproxy:broken" {
		// Its tasks fail to start: swarm rolls the update back to the previous spec.
		f.logf("update %s %s rolled back", spec.Name, imageOf(spec))
		s.UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateStateRollbackCompleted, Message: "rollback completed"}
		s.Version.Index++
		f.services[s.ID] = s
		return swarm.ServiceUpdateResponse{}, nil
	}
	if imageOf(s.Spec) != imageOf(spec) {
		f.logf("update %s %s", spec.Name, imageOf(spec))
	}
	if publishedPort(s.Spec) != publishedPort(spec) {
		f.logf("update %s port %d", spec.Name, publishedPort(spec))
	}
	if s.Spec.UpdateConfig != nil && spec.UpdateConfig != nil && s.Spec.UpdateConfig.Order != spec.UpdateConfig.Order {
		f.logf("update %s order %s (tasks settled: %t)", spec.Name, spec.UpdateConfig.Order, f.stale[s.ID] == 0)
	}
	if !reflect.DeepEqual(s.Spec.TaskTemplate, spec.TaskTemplate) || publishedPort(s.Spec) != publishedPort(spec) {
		f.previous[s.ID], f.stale[s.ID] = s.Spec, f.lag
	}
	s.Spec, s.Version.Index = spec, s.Version.Index+1
	f.services[s.ID] = s
	return swarm.ServiceUpdateResponse{}, nil
}

func (f *fakeSwarm) ServiceRemove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.find(id)
	if !ok {
		return errdefs.NotFound(errors.New("no such service"))
	}
	delete(f.services, s.ID)
	f.logf("remove %s", s.Spec.Name)
	return nil
}

func (f *fakeSwarm) ServiceList(context.Context, swarm.ServiceListOptions) ([]swarm.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []swarm.Service
	for _, s := range f.services {
		s.ServiceStatus = &swarm.ServiceStatus{DesiredTasks: uint64(len(f.nodes))}
		out = append(out, s)
	}
	return out, nil
}

// TaskList: every service runs one task of its current spec on every node, published
// on its port, or on one the engine picked. A "service" filter keeps that service's
// tasks, as the engine's does.
func (f *fakeSwarm) TaskList(_ context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []swarm.Task
	for _, s := range f.services {
		if ids := opts.Filters.Get("service"); len(ids) > 0 && !slices.Contains(ids, s.ID) {
			continue
		}
		if f.stale[s.ID] > 0 {
			f.stale[s.ID]--
			s.Spec = f.previous[s.ID]
		}
		port := publishedPort(s.Spec)
		if port == 0 {
			port = 30000 + int(s.Version.Index)
		}
		for _, n := range f.nodes {
			out = append(out, swarm.Task{ID: s.ID + "." + n, ServiceID: s.ID, NodeID: n, Spec: s.Spec.TaskTemplate,
				DesiredState: swarm.TaskStateRunning,
				Status:       swarm.TaskStatus{State: swarm.TaskStateRunning, PortStatus: swarm.PortStatus{Ports: []swarm.PortConfig{{PublishedPort: uint32(port)}}}}})
		}
	}
	return out, nil
}

func (f *fakeSwarm) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	var out []swarm.Node
	for _, n := range f.nodes {
		out = append(out, swarm.Node{ID: n, Status: swarm.NodeStatus{State: swarm.NodeStateReady}, Description: swarm.NodeDescription{Hostname: n}})
	}
	return out, nil
}

// fakeNode is one proxy node's files and NAT rules.
type fakeNode struct {
	name  string
	log   *[]string
	files map[string]string
	rules map[string]int // tag: the port steered to
	// failSteer and failUnsteer make those fail while set.
	failSteer, failUnsteer error
	// tracked is how many more times Tracked answers non-zero for a port (every
	// container's connections are forgotten after that many asks); -1 never.
	tracked map[int]int
}

func (n *fakeNode) Prepare(_ context.Context, dir string, _, _ int, file, content string) error {
	if n.files[file] == "" {
		n.files[file] = content
	}
	return nil
}
func (n *fakeNode) Write(_ context.Context, file, content string) error {
	n.files[file] = content
	return nil
}
func (n *fakeNode) Read(_ context.Context, file string) (string, error) { return n.files[file], nil }
func (n *fakeNode) RemoveAll(context.Context, string) error             { return nil }

func (n *fakeNode) Steer(_ context.Context, tag string, from, to int) error {
	if n.failSteer != nil {
		return n.failSteer
	}
	n.rules[tag] = to
	*n.log = append(*n.log, fmt.Sprintf("steer %s %d->%d", n.name, from, to))
	return nil
}

func (n *fakeNode) Tracked(_ context.Context, port int) (int, error) {
	switch left := n.tracked[port]; {
	case left < 0:
		return 1, nil
	case left > 0:
		n.tracked[port]--
		return left, nil
	}
	*n.log = append(*n.log, fmt.Sprintf("untracked %s %d", n.name, port))
	return 0, nil
}

func (n *fakeNode) Unsteer(_ context.Context, tag string) error {
	if n.failUnsteer != nil {
		return n.failUnsteer
	}
	if _, ok := n.rules[tag]; ok {
		delete(n.rules, tag)
		*n.log = append(*n.log, "unsteer "+n.name)
	}
	return nil
}

type handoverWorld struct {
	log   []string
	sw    *fakeSwarm
	fakes []*fakeNode
	nodes []ProxyNode
	proxy ProxyDeployment
}

// newHandoverWorld: a proxy of image haproxy:old on port 8080 runs on three nodes.
func newHandoverWorld(t *testing.T) *handoverWorld {
	w := &handoverWorld{}
	w.sw = newFakeSwarm(&w.log)
	w.proxy = ProxyDeployment{Service: Service{Name: "app", Network: "app-net"}, ListenPort: 8080, Image: "haproxy:old"}
	for _, name := range w.sw.nodes {
		fn := &fakeNode{name: name, log: &w.log, files: map[string]string{}, rules: map[string]int{}, tracked: map[int]int{}}
		fn.files[w.proxy.ConfigFile()] = "config of " + name
		fn.files[w.proxy.MapFile()] = "active green\n"
		w.fakes = append(w.fakes, fn)
		w.nodes = append(w.nodes, ProxyNode{Name: name, SwarmID: name, Files: fn, Ports: fn,
			Proxy:        &fakeProxy{name: name, route: Route{Active: Green}},
			StandIn:      &fakeProxy{name: name + " stand-in", route: Route{Active: Green}},
			ServersState: func(context.Context) (string, error) { return "state of " + name, nil }})
	}
	if err := ensureProxy(context.Background(), w.sw, w.proxy, w.nodes, "owner"); err != nil {
		t.Fatal(err)
	}
	w.log = nil
	return w
}

func (w *handoverWorld) ensure(image string) error {
	p := w.proxy
	p.Image = image
	return ensureProxy(context.Background(), w.sw, p, w.nodes, "owner")
}

// index is the position of the first log line that starts with prefix, -1 if none.
func (w *handoverWorld) index(prefix string) int {
	for i, l := range w.log {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

func (w *handoverWorld) last(prefix string) int {
	for i := len(w.log) - 1; i >= 0; i-- {
		if strings.HasPrefix(w.log[i], prefix) {
			return i
		}
	}
	return -1
}

// checkDone: the proxy runs image, no stand-in, no steering left on any node.
func (w *handoverWorld) checkDone(t *testing.T, image string) {
	t.Helper()
	if s, ok := w.sw.find(w.proxy.ProxyName()); !ok || imageOf(s.Spec) != image {
		t.Errorf("proxy runs %q, want %q", imageOf(s.Spec), image)
	}
	if _, ok := w.sw.find(w.proxy.StandInName()); ok {
		t.Errorf("the stand-in is still there")
	}
	for _, n := range w.fakes {
		if len(n.rules) != 0 {
			t.Errorf("node %s still steers: %v", n.name, n.rules)
		}
	}
}

// checkNoDanglingRule: a node that steers has a stand-in to steer to.
func (w *handoverWorld) checkNoDanglingRule(t *testing.T) {
	t.Helper()
	if _, ok := w.sw.find(w.proxy.StandInName()); ok {
		return
	}
	for _, n := range w.fakes {
		if len(n.rules) != 0 {
			t.Errorf("node %s steers to a stand-in that is gone: %v", n.name, n.rules)
		}
	}
}

func TestImageChangeHandsThePortToAStandIn(t *testing.T) {
	w := newHandoverWorld(t)
	if err := w.ensure("haproxy:new"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%q", w.log)
	create, update, remove := w.index("create app-proxy-standin haproxy:old"), w.index("update app-proxy haproxy:new"), w.index("remove app-proxy-standin")
	if create < 0 || update < 0 || remove < 0 {
		t.Fatalf("want the stand-in created (old image), the proxy updated and the stand-in removed: %q", w.log)
	}
	for _, n := range w.sw.nodes {
		steer, unsteer := w.index("steer "+n+" 8080->"), w.index("unsteer "+n)
		if !(create < steer && steer < update && update < unsteer && unsteer < remove) {
			t.Errorf("node %s: want stand-in, steer, update, unsteer, remove in that order: %q", n, w.log)
		}
	}
	// The stand-in started from the proxy's configuration, live route and servers' state.
	for _, n := range w.fakes {
		dir := w.proxy.StandInDir()
		if n.files[dir+"/haproxy.cfg"] != "config of "+n.name || n.files[dir+"/bluegreen.map"] != "active green\n" || n.files[dir+"/server-state"] != "state of "+n.name {
			t.Errorf("node %s: stand-in files %v", n.name, n.files)
		}
	}
	w.checkDone(t, "haproxy:new")
	// Nothing to do the next time: no stand-in, no steering.
	w.log = nil
	if err := w.ensure("haproxy:new"); err != nil || len(w.log) != 0 {
		t.Errorf("a run with nothing to change did %q, %v", w.log, err)
	}
}

func TestSteeringThatFailsOnOneNodeLeavesTheProxyAndTheNextRunFinishes(t *testing.T) {
	w := newHandoverWorld(t)
	w.fakes[1].failSteer = errors.New("injected: EOF")
	err := w.ensure("haproxy:new")
	if err == nil || !strings.Contains(err.Error(), "node-b") {
		t.Fatalf("want an error naming node-b, got %v", err)
	}
	if w.index("update app-proxy") >= 0 {
		t.Errorf("the proxy was replaced although node-b could not be steered: %q", w.log)
	}
	w.checkNoDanglingRule(t)
	w.fakes[1].failSteer = nil
	if err := w.ensure("haproxy:new"); err != nil {
		t.Fatal(err)
	}
	w.checkDone(t, "haproxy:new")
}

func TestUnsteerThatFailsKeepsTheStandInUntilTheNextRun(t *testing.T) {
	w := newHandoverWorld(t)
	w.fakes[2].failUnsteer = errors.New("injected: connection reset")
	if err := w.ensure("haproxy:new"); err == nil || !strings.Contains(err.Error(), "node-c") {
		t.Fatalf("want an error naming node-c, got %v", err)
	}
	if _, ok := w.sw.find(w.proxy.StandInName()); !ok {
		t.Fatalf("the stand-in was removed while node-c still steers to it: %q", w.log)
	}
	w.checkNoDanglingRule(t)
	w.fakes[2].failUnsteer = nil
	w.log = nil
	if err := w.ensure("haproxy:new"); err != nil {
		t.Fatal(err)
	}
	if w.index("update app-proxy") >= 0 || w.last("remove app-proxy-standin") < 0 {
		t.Errorf("the next run should only retire the stand-in: %q", w.log)
	}
	w.checkDone(t, "haproxy:new")
}

// A handover killed after the proxy was updated (terraform killed, the apply timed out):
// the next run, with nothing left to change, still ends it.
func TestAnInterruptedHandoverIsEndedByTheNextRun(t *testing.T) {
	w := newHandoverWorld(t)
	standIn := w.proxy
	if _, _, err := ensureStandInForTest(w, standIn); err != nil {
		t.Fatal(err)
	}
	for _, n := range w.fakes {
		n.rules[w.proxy.SteerTag()] = 30001
	}
	if err := w.ensure("haproxy:old"); err != nil {
		t.Fatal(err)
	}
	w.checkDone(t, "haproxy:old")
}

func ensureStandInForTest(w *handoverWorld, p ProxyDeployment) (swarm.ServiceCreateResponse, bool, error) {
	r, err := w.sw.ServiceCreate(context.Background(), p.StandInSpec(), swarm.ServiceCreateOptions{})
	return r, false, err
}

// A stand-in never registers in Consul and never takes the proxy's port.
func TestStandInSpec(t *testing.T) {
	p := ProxyDeployment{Service: Service{Name: "app"}, ListenPort: 8080, Image: "haproxy:2.6"}
	s := p.StandInSpec()
	if s.Name != "app-proxy-standin" || s.TaskTemplate.ContainerSpec.Labels["SERVICE_IGNORE"] != "true" || publishedPort(s) != 0 {
		t.Errorf("stand-in spec: %+v", s)
	}
	if m := s.TaskTemplate.ContainerSpec.Mounts; len(m) != 1 || m[0].Source != p.StandInDir() || m[0].Target != proxyContainerDir {
		t.Errorf("stand-in mounts %+v", m)
	}
	if p.Spec().TaskTemplate.ContainerSpec.Labels["SERVICE_IGNORE"] != "" || len(p.Spec().TaskTemplate.ContainerSpec.Mounts) != 1 || p.Spec().TaskTemplate.ContainerSpec.Mounts[0].Source != p.NodeDir() {
		t.Errorf("the stand-in's spec changed the proxy's")
	}
}

// A new listen port rolls out start-first, and the order goes back to stop-first only
// once every node's task runs on the new port: a task of the old spec differs only in
// its port, which a wait on the spec alone takes for current.
func TestANewPortIsServedEverywhereBeforeTheOrderGoesBack(t *testing.T) {
	w := newHandoverWorld(t)
	w.sw.lag = 5
	p := w.proxy
	p.ListenPort = 8081
	if err := ensureProxy(context.Background(), w.sw, p, w.nodes, "owner"); err != nil {
		t.Fatal(err)
	}
	if w.index("update app-proxy port 8081") < 0 || w.index("update app-proxy order stop-first (tasks settled: true)") < 0 {
		t.Errorf("want the port rolled out, then the order back once the tasks settled: %q", w.log)
	}
}

// A new image whose tasks fail: swarm rolls the proxy back, the apply fails, and the
// stand-in keeps serving the steered ports. Going back to the old image retires it,
// although the service still reports that rollback.
func TestAnImageThatRollsBackKeepsTheStandInUntilTheImageIsFixed(t *testing.T) {
	w := newHandoverWorld(t)
	if err := w.ensure("haproxy:broken"); err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Fatalf("want the rollback reported, got %v", err)
	}
	if _, ok := w.sw.find(w.proxy.StandInName()); !ok {
		t.Fatalf("the stand-in is gone while the ports are steered to it: %q", w.log)
	}
	w.checkNoDanglingRule(t)
	if err := w.ensure("haproxy:old"); err != nil {
		t.Fatalf("going back to the image that runs: %v", err)
	}
	w.checkDone(t, "haproxy:old")
}

// Each old proxy stops only once its node tracks no connection to it, and the stand-in
// is removed only once no node tracks one to it: Docker's deletion of a stopping
// container's tracked connections was seen taking a new connection to another container
// with them (a reset in the middle of a request).
func TestContainersStopOnlyOnceTheirNodesForgetTheirConnections(t *testing.T) {
	untrackedPoll = time.Millisecond
	defer func() { untrackedPoll = 2 * time.Second }()
	w := newHandoverWorld(t)
	for i, n := range w.fakes {
		n.tracked[8080] = 2 + i // the old proxy's connections, forgotten after a few asks
	}
	standInPort := 30001 // where the fake engine publishes the stand-in
	w.fakes[1].tracked[standInPort] = 3
	if err := w.ensure("haproxy:new"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%q", w.log)
	update, remove := w.index("update app-proxy haproxy:new"), w.index("remove app-proxy-standin")
	for _, n := range w.sw.nodes {
		steer, unsteer := w.index("steer "+n+" 8080->"), w.index("unsteer "+n)
		old, standIn := w.index(fmt.Sprintf("untracked %s 8080", n)), w.index(fmt.Sprintf("untracked %s %d", n, standInPort))
		if !(steer < old && old < update) {
			t.Errorf("node %s: want the steering, then the old proxy forgotten, then the update: %q", n, w.log)
		}
		if !(unsteer < standIn && standIn < remove) {
			t.Errorf("node %s: want the unsteering, then the stand-in forgotten, then its removal: %q", n, w.log)
		}
	}
	w.checkDone(t, "haproxy:new")
}

// A node that cannot say what it tracks, or never forgets, holds the handover back for a
// bounded time only.
func TestANodeThatNeverForgetsDelaysTheHandoverOnlyForAWhile(t *testing.T) {
	untrackedPoll, untrackedWait = time.Millisecond, 50*time.Millisecond
	defer func() { untrackedPoll, untrackedWait = 2*time.Second, 150*time.Second }()
	w := newHandoverWorld(t)
	w.fakes[0].tracked[8080] = -1
	start := time.Now()
	if err := w.ensure("haproxy:new"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < untrackedWait || d > 5*time.Second {
		t.Errorf("the handover took %s, want the bound (%s) and not much more", d, untrackedWait)
	}
	w.checkDone(t, "haproxy:new")
}

// A proxy that nothing replaces (an apply that only switches) is left alone: no node is
// asked for its servers' state. One that is replaced still has it saved on every node.
func TestAnUnchangedProxySavesNoServersState(t *testing.T) {
	w := newHandoverWorld(t)
	var asked atomic.Int32
	for i := range w.nodes {
		w.nodes[i].ServersState = func(context.Context) (string, error) { asked.Add(1); return "state", nil }
	}
	if err := w.ensure("haproxy:old"); err != nil {
		t.Fatal(err)
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("an unchanged proxy: %d nodes asked for their servers' state; want none", n)
	}
	if err := w.ensure("haproxy:new"); err != nil {
		t.Fatal(err)
	}
	if n := asked.Load(); n != int32(len(w.nodes)) {
		t.Fatalf("a replaced proxy: %d nodes asked for their servers' state; want %d", n, len(w.nodes))
	}
}

// slowNode is a proxy node whose file commands each take d, as an SSH command does.
type slowNode struct {
	d     time.Duration
	mu    sync.Mutex
	files map[string]string
}

func (n *slowNode) Prepare(_ context.Context, _ string, _, _ int, file, content string) error {
	time.Sleep(n.d)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.files[file] == "" {
		n.files[file] = content
	}
	return nil
}

func (n *slowNode) Write(_ context.Context, file, content string) error {
	time.Sleep(n.d)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.files[file] = content
	return nil
}

func (n *slowNode) Read(_ context.Context, file string) (string, error) {
	time.Sleep(n.d)
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.files[file], nil
}

func (n *slowNode) RemoveAll(context.Context, string) error { return nil }

// labels is a swarm's node labels (swarmservice.NodeEngine).
type labels struct {
	mu    sync.Mutex
	nodes map[string]map[string]string
}

func (l *labels) NodeInspectWithRaw(_ context.Context, id string) (swarm.Node, []byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return swarm.Node{ID: id, Spec: swarm.NodeSpec{Annotations: swarm.Annotations{Labels: maps.Clone(l.nodes[id])}}}, nil, nil
}

func (l *labels) NodeUpdate(_ context.Context, id string, _ swarm.Version, spec swarm.NodeSpec) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes[id] = spec.Labels
	return nil
}

func (l *labels) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	return nil, nil
}

// A deployment prepares every proxy node and reads its haproxy.cfg at once, and on each
// node the read beside the preparation: an apply that only switches pays one SSH
// command's time for them, not two per node.
func TestPrepareNodesReadsTheConfigsBesideThePreparation(t *testing.T) {
	t.Parallel()
	proxy := ProxyDeployment{Service: Service{Name: "app", Network: "app-net"}, ListenPort: 8080, Image: "haproxy:2.6"}
	l := &labels{nodes: map[string]map[string]string{}}
	var nodes []ProxyNode
	var fakes []*slowNode
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		n := &slowNode{d: 200 * time.Millisecond, files: map[string]string{proxy.ConfigFile(): "config of " + name}}
		fakes = append(fakes, n)
		nodes = append(nodes, ProxyNode{Name: name, SwarmID: name, Files: n})
	}
	start := time.Now()
	configs, err := prepareNodes(context.Background(), l, proxy, nodes, "active blue\n")
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= 350*time.Millisecond {
		t.Errorf("preparing %d nodes and reading their configs took %s, one command after another", len(nodes), took.Round(time.Millisecond))
	}
	for i, n := range nodes {
		if want := "config of " + n.Name; configs[i] != want {
			t.Errorf("%s: read %q, want %q", n.Name, configs[i], want)
		}
		if got := fakes[i].files[proxy.MapFile()]; got != "active blue\n" {
			t.Errorf("%s: map file %q, want the route written", n.Name, got)
		}
		if l.nodes[n.SwarmID][proxy.NodeLabel()] != "true" {
			t.Errorf("%s: not labelled for the proxy", n.Name)
		}
	}
}
