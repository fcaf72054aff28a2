package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// step is one read folded into a ledger: at is the time since the first read, seen maps
// the subjects the read saw to whether they fail, tag is the read's tag filter.
type step struct {
	at      time.Duration
	tag     string
	seen    map[string]bool
	token   string
	changed bool
}

// TestEntryNext walks ledgers through what happens to a service: the token moves once per
// subject that was passing and fails (or stays critical past the grace period without
// ever passing), and never on a start, a scale, a rolling update, a switch of the read's
// tag, a replacement, or a recovery.
func TestEntryNext(t *testing.T) {
	const pass, fail = false, true
	cases := map[string][]step{
		"a failure moves once, its heal never": {
			{0, "", map[string]bool{"node:w1/a": pass}, "0", true},
			{time.Second, "", map[string]bool{"node:w1/a": fail}, "1", true},
			{2 * time.Second, "", map[string]bool{"node:w1/a": fail}, "1", false},
			{time.Minute, "", map[string]bool{"node:w1/a": pass}, "1", true},
			{2 * time.Minute, "", map[string]bool{"node:w1/a": pass}, "1", false},
			{3 * time.Minute, "", map[string]bool{"node:w1/a": fail}, "2", true}, // fails again: a new failure
		},
		"subjects failing together are one failure": {
			{0, "", map[string]bool{"node:w1/a": pass, "node:w2/b": pass}, "0", true},
			{time.Second, "", map[string]bool{"node:w1/a": fail, "node:w2/b": fail}, "1", true},
			{2 * time.Second, "", map[string]bool{"node:w1/a": fail, "node:w2/b": pass}, "1", true}, // w2 recovers
			{3 * time.Second, "", map[string]bool{"node:w1/a": fail, "node:w2/b": fail}, "2", true}, // and fails again
		},
		"a failing set that swaps one subject for another of the same size is a new failure": {
			{0, "", map[string]bool{"i:a": pass, "i:b": pass}, "0", true},
			{time.Second, "", map[string]bool{"i:a": fail, "i:b": pass}, "1", true},
			{2 * time.Second, "", map[string]bool{"i:a": pass, "i:b": fail}, "2", true},
		},
		"a new task starting critical is not a failure (scale-up)": {
			{0, "", map[string]bool{"i:a": pass}, "0", true},
			{time.Second, "", map[string]bool{"i:a": pass, "i:new1": fail, "i:new2": fail}, "0", true},
			{10 * time.Second, "", map[string]bool{"i:a": pass, "i:new1": fail, "i:new2": fail}, "0", false},
			{20 * time.Second, "", map[string]bool{"i:a": pass, "i:new1": pass, "i:new2": pass}, "0", true},
		},
		"a task that never passes fails once after the grace period": {
			{0, "", map[string]bool{"i:a": pass, "i:bad": fail}, "0", true},
			{29 * time.Second, "", map[string]bool{"i:a": pass, "i:bad": fail}, "0", false},
			{31 * time.Second, "", map[string]bool{"i:a": pass, "i:bad": fail}, "1", true},
			{time.Minute, "", map[string]bool{"i:a": pass, "i:bad": fail}, "1", false},
		},
		"scale-down, rolling update and replacement: subjects go and come": {
			{0, "", map[string]bool{"i:v1a": pass, "i:v1b": pass, "i:v1c": pass}, "0", true},
			{time.Second, "", map[string]bool{"i:v1a": pass, "i:v1b": pass}, "0", true},                  // scaled down
			{2 * time.Second, "", map[string]bool{"i:v1a": pass, "i:v2a": fail}, "0", true},              // v1b stopped, v2a starting
			{5 * time.Second, "", map[string]bool{"i:v2a": pass, "i:v2b": fail}, "0", true},              // v1a stopped, v2b starting
			{8 * time.Second, "", map[string]bool{"i:v2a": pass, "i:v2b": pass}, "0", true},              // done
			{9 * time.Second, "", map[string]bool{"i:v2a": fail, "i:v2b": pass}, "1", true},              // v2a turns unhealthy
			{12 * time.Second, "", map[string]bool{"i:v2b": pass, "i:v2c": fail}, "1", true},             // swarm replaced it
			{14 * time.Second, "", map[string]bool{"i:v2b": pass, "i:v2c": pass}, "1", true},             // healed
			{15 * time.Second, "", map[string]bool{"i:v2b": pass, "i:v2c": pass}, "1", false},            // empty plan
			{time.Hour, "", map[string]bool{"i:v2b": pass, "i:v2c": pass, "missing:x": pass}, "1", true}, // (a new subject)
		},
		"the read's tag follows the live color: a switch moves nothing": {
			{0, "blue", map[string]bool{"i:b1": pass, "i:b2": pass}, "0", true},
			{time.Second, "blue", map[string]bool{"i:b1": fail, "i:b2": pass}, "1", true},
			{2 * time.Second, "blue", map[string]bool{"i:b2": pass, "i:b3": pass}, "1", true},
			// switch to green: green's subjects are new and pass; blue's are kept
			{3 * time.Second, "green", map[string]bool{"i:g1": pass, "i:g2": pass}, "1", true},
			{4 * time.Second, "green", map[string]bool{"i:g1": pass, "i:g2": pass}, "1", false},
			// and back: blue's records are still there, nothing moves
			{5 * time.Second, "blue", map[string]bool{"i:b2": pass, "i:b3": pass}, "1", false},
			{6 * time.Second, "blue", map[string]bool{"i:b2": fail, "i:b3": pass}, "2", true},
		},
		"a green task starting during a blue read's absence is not a failure": {
			{0, "green", map[string]bool{"i:g1": pass}, "0", true},
			{time.Second, "blue", map[string]bool{"i:b1": pass}, "0", true},
			{time.Hour, "green", map[string]bool{"i:g1": pass, "i:g2": fail}, "0", true},
		},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			var e Entry
			for i, s := range steps {
				next, changed := e.Next(Observation{Subjects: s.seen, Tag: s.tag}, start.Add(s.at))
				if changed != s.changed || next.Token() != s.token {
					t.Fatalf("step %d (%s %v): token %s changed %v, want %s %v", i, s.tag, s.seen, next.Token(), changed, s.token, s.changed)
				}
				e = next
			}
		})
	}
}

// TestEntryNextForgets: a read forgets the records it would have seen and did not (a
// tagged read only its tag's), and any record nobody saw for a day; a ledger written
// before records existed keeps its failures counted.
func TestEntryNextForgets(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	e, _ := Entry{}.Next(Observation{Tag: "blue", Subjects: map[string]bool{"i:b1": false}}, start)
	e, _ = e.Next(Observation{Tag: "green", Subjects: map[string]bool{"i:g1": false}}, start)
	e, _ = e.Next(Observation{Tag: "blue", Subjects: map[string]bool{"i:b2": false}}, start)
	if got := slices.Sorted(maps.Keys(e.Subjects)); !slices.Equal(got, []string{"i:b2", "i:g1"}) {
		t.Fatalf("after blue's b1 went: %v", got)
	}
	e, _ = e.Next(Observation{Subjects: map[string]bool{"i:b2": false}}, start)
	if got := slices.Sorted(maps.Keys(e.Subjects)); !slices.Equal(got, []string{"i:b2"}) {
		t.Fatalf("an untagged read forgets what it does not see: %v", got)
	}
	e, _ = e.Next(Observation{Tag: "green", Subjects: map[string]bool{"i:g9": false}}, start.Add(25*time.Hour))
	if got := slices.Sorted(maps.Keys(e.Subjects)); !slices.Equal(got, []string{"i:g9"}) {
		t.Fatalf("a record unseen for a day: %v", got)
	}

	old := Entry{Generation: 4, Failing: []string{"node:w1/a"}, Updated: start}
	if next, _ := old.Next(Observation{Subjects: map[string]bool{"node:w1/a": true}}, start.Add(time.Hour)); next.Token() != "4" {
		t.Fatalf("an old ledger's failure counted again: %s", next.Token())
	}
	if next, _ := old.Next(Observation{Subjects: map[string]bool{"node:w1/a": false}}, start.Add(time.Hour)); next.Token() != "4" || len(next.Failing) != 0 {
		t.Fatalf("an old ledger's failure healed: %+v", next)
	}
}

func TestScopeValidate(t *testing.T) {
	for _, s := range []Scope{{Service: "a", Node: "b"}, {Tag: "blue"}, {Node: "n", Tag: "blue"}} {
		if err := s.Validate(); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
	for _, s := range []Scope{{}, {Service: "a"}, {Service: "a", Tag: "b"}, {Node: "n"}, {Datacenter: "dc2"}} {
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
	if LedgerKey(Scope{Service: "a"}) == LedgerKey(Scope{Node: "a"}) {
		t.Error("a service and a node of the same name share a ledger")
	}
}

// TestReadAndObserve runs against a real Consul agent: instances with TTL checks, as the
// registrator registers them, reported by service, tag, node and datacenter, and the
// ledger kept in the agent's KV store.
func TestReadAndObserve(t *testing.T) {
	agent := consultest.StartDevAgent(t)
	api, err := consulapi.NewClient(&consulapi.Config{Address: agent.Address()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var nodeName string
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := wait.Until(startCtx, wait.Options{What: "the dev agent's leader", MaxInterval: 200 * time.Millisecond}, func(ctx context.Context) (bool, string, error) {
		leader, err := api.Status().Leader()
		if err != nil {
			return false, "", wait.Retryable(err)
		}
		if leader == "" {
			return false, "no leader yet", nil
		}
		nodeName, err = api.Agent().NodeName()
		return err == nil, "", nil
	}); err != nil {
		t.Fatal(err)
	}
	register := func(id, color string) {
		t.Helper()
		if err := api.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{
			ID: id, Name: "web", Tags: []string{color}, Port: 8080, Address: "10.0.0.1",
			Check: &consulapi.AgentServiceCheck{CheckID: id + ":health", Name: "docker health", TTL: "30s"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	ttl := func(id, status string) {
		t.Helper()
		if err := api.Agent().UpdateTTL(id+":health", "set by the test", status); err != nil {
			t.Fatal(err)
		}
	}
	register("n:web-b1:8080", "blue")
	register("n:web-b2:8080", "blue")
	register("n:web-g1:8080", "green")
	for _, id := range []string{"n:web-b1:8080", "n:web-b2:8080", "n:web-g1:8080"} {
		ttl(id, consulapi.HealthPassing)
	}

	read := func(s Scope) *Report {
		t.Helper()
		r, err := Read(ctx, api, s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := read(Scope{Service: "web"}); r.Status != Passing || r.Passing != 3 || len(r.Failing) != 0 {
		t.Fatalf("all passing: %+v", r)
	}
	blue := Scope{Service: "web", Tag: "blue"}
	observe := func(s Scope, r *Report) string {
		t.Helper()
		e, err := Observe(ctx, api, s, r.Observation(0))
		if err != nil {
			t.Fatal(err)
		}
		return e.Token()
	}
	if tok := observe(blue, read(blue)); tok != "0" {
		t.Fatalf("before any failure: %s", tok)
	}
	ttl("n:web-b2:8080", consulapi.HealthCritical)
	r := read(Scope{Service: "web", Tag: "blue"})
	if r.Status != Critical || r.Passing != 1 || r.Critical != 1 || len(r.Instances) != 2 {
		t.Fatalf("blue with one critical: %+v", r)
	}
	if len(r.Failing) != 1 || r.Failing[0] != "instance:"+nodeName+"/n:web-b2:8080" {
		t.Fatalf("failing %v", r.Failing)
	}
	for _, in := range r.Instances {
		if in.ID == "n:web-b2:8080" && (in.Status != Critical || in.Address != "10.0.0.1" || in.Port != 8080) {
			t.Fatalf("the critical instance as reported: %+v", in)
		}
	}
	if g := read(Scope{Service: "web", Tag: "green"}); g.Status != Passing || g.Passing != 1 {
		t.Fatalf("green: %+v", g)
	}
	// The node is healthy: its app's failure is reported but is not the node's.
	n := read(Scope{Node: nodeName})
	if n.Status != Critical || len(n.Nodes) != 1 || n.Nodes[0].Status != Passing || len(n.Failing) != 0 || n.Critical != 1 {
		t.Fatalf("node scope: %+v", n)
	}
	dc := read(Scope{})
	if dc.Status != Critical || dc.Critical != 1 || dc.Passing < 3 || len(dc.Failing) != 1 {
		t.Fatalf("datacenter scope: %+v", dc)
	}
	if m := read(Scope{Node: "no-such-node"}); m.Status != Critical || m.Missing == "" || len(m.Failing) != 1 {
		t.Fatalf("missing node: %+v", m)
	}
	if m := read(Scope{Service: "nothing"}); m.Status != Critical || m.Missing == "" {
		t.Fatalf("missing service: %+v", m)
	}

	// The ledger: a subject seen passing that fails moves the token once.
	if tok := observe(blue, r); tok != "1" {
		t.Fatalf("after the failure: %s", tok)
	}
	// Many runs observing the same failure at once (plans beside a scheduled apply): one
	// failure, one generation.
	ttl("n:web-b1:8080", consulapi.HealthCritical)
	both := read(blue)
	var wg sync.WaitGroup
	tokens := make([]string, 8)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := Observe(ctx, api, blue, both.Observation(0))
			if err != nil {
				t.Error(err)
			}
			tokens[i] = e.Token()
		}()
	}
	wg.Wait()
	for _, tok := range tokens {
		if tok != "2" {
			t.Fatalf("concurrent observers of one failure: %v", tokens)
		}
	}
	// Swarm replaces both: the failed ones go, the replacement registers and starts
	// critical (a TTL check's first status): not a failure. Then it passes.
	for _, id := range []string{"n:web-b1:8080", "n:web-b2:8080"} {
		if err := api.Agent().ServiceDeregister(id); err != nil {
			t.Fatal(err)
		}
	}
	register("n:web-b3:8080", "blue")
	if starting := read(blue); starting.Status != Critical || len(starting.Failing) != 1 {
		t.Fatalf("the replacement starting: %+v", starting)
	} else if tok := observe(blue, starting); tok != "2" {
		t.Fatalf("a starting replacement moved the token: %s", tok)
	}
	ttl("n:web-b3:8080", consulapi.HealthPassing)
	healed := read(blue)
	if healed.Status != Passing || len(healed.Failing) != 0 {
		t.Fatalf("after the heal: %+v", healed)
	}
	if tok := observe(blue, healed); tok != "2" {
		t.Fatalf("the heal moved the token: %s", tok)
	}
	if tok := observe(blue, read(blue)); tok != "2" {
		t.Fatalf("a later read moved the token: %s", tok)
	}
	// A ledger that cannot be read gives no token (a wrong one would replace resources):
	// that is not a mere write failure.
	var writeErr *WriteError
	if _, err := Observe(ctx, api, Scope{Service: "web", Datacenter: "nowhere"}, Observation{}); err == nil || errors.As(err, &writeErr) {
		t.Fatalf("an unreadable ledger: %v", err)
	}
	// The tag does not key the ledger: a read that follows the live color to green keeps
	// the service's count; the whole service's read does too.
	green := Scope{Service: "web", Tag: "green"}
	if tok := observe(green, read(green)); tok != "2" {
		t.Fatalf("green's token after a switch: %s", tok)
	}
	if tok := observe(Scope{Service: "web"}, read(Scope{Service: "web"})); tok != "2" {
		t.Fatalf("the service's token: %s", tok)
	}
	if LedgerKey(blue) != LedgerKey(green) {
		t.Fatal("a tag keys the ledger")
	}
}

// server is one Consul server of a loopback cluster.
type server struct {
	name             string
	http, serf, rpcP int
	cmd              *exec.Cmd
	out              *bytes.Buffer // its output, for a server that exits at start
	exited           chan struct{} // closed when the process has exited
}

// startServers starts n Consul servers on loopback ports, joined into one cluster with
// production raft timing, stopped with the test. A server that exits at start (a port
// FreePort gave was taken, by another package's agent, before Consul bound it) makes
// the cluster start again on other ports, up to three times.
func startServers(t *testing.T, n int) []*server {
	t.Helper()
	for attempt := 1; ; attempt++ {
		servers, failed := tryStartServers(t, n)
		if failed == nil {
			return servers
		}
		for _, s := range servers {
			s.stop()
		}
		if attempt == 3 {
			t.Fatalf("consul server %s exited at start, three times; its output:\n%s", failed.name, failed.out)
		}
		t.Logf("consul server %s exited at start; starting the cluster again on other ports. Its output:\n%s", failed.name, failed.out)
	}
}

// tryStartServers starts the servers and waits until each one's HTTP port accepts
// connections; failed is a server whose process exited first.
func tryStartServers(t *testing.T, n int) (servers []*server, failed *server) {
	t.Helper()
	bin := consultest.Binary(t)
	servers = make([]*server, n)
	for i := range servers {
		servers[i] = &server{name: fmt.Sprintf("s%d", i+1), http: consultest.FreePort(t), serf: consultest.FreePort(t), rpcP: consultest.FreePort(t)}
	}
	for _, s := range servers {
		args := []string{"agent", "-server", "-bootstrap-expect=" + strconv.Itoa(n), "-node=" + s.name,
			"-bind=127.0.0.1", "-client=127.0.0.1", "-data-dir=" + t.TempDir(),
			"-http-port=" + strconv.Itoa(s.http), "-dns-port=-1", "-grpc-port=-1", "-grpc-tls-port=-1", "-serf-wan-port=-1",
			"-serf-lan-port=" + strconv.Itoa(s.serf), "-server-port=" + strconv.Itoa(s.rpcP),
			"-hcl=performance { raft_multiplier = 1 }"}
		for _, o := range servers {
			if o != s {
				args = append(args, "-retry-join=127.0.0.1:"+strconv.Itoa(o.serf))
			}
		}
		s.out, s.exited = &bytes.Buffer{}, make(chan struct{})
		s.cmd = exec.Command(bin, args...)
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func(cmd *exec.Cmd, exited chan struct{}) {
			_ = cmd.Wait()
			close(exited)
		}(s.cmd, s.exited)
		t.Cleanup(s.stop)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range servers {
		for {
			select {
			case <-s.exited:
				return servers, s
			default:
			}
			if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.http), time.Second); err == nil {
				_ = c.Close()
				break
			}
			if time.Now().After(deadline) {
				return servers, nil // slow, not dead: the test's own waits say more
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return servers, nil
}

func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
		}
	}
	s.cmd = nil
}

func (s *server) api(t *testing.T) *consulapi.Client {
	t.Helper()
	api, err := consulapi.NewClient(&consulapi.Config{Address: "127.0.0.1:" + strconv.Itoa(s.http)})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// TestLeaderLost: with 2 of 3 servers gone, the survivor has no leader. Reading still
// works (stale, from what the survivor holds), the gone servers' nodes and their instances
// are critical from the survivor's gossip view although the catalog, which only a leader
// updates, still says they pass; the ledger cannot be written, so Observe keeps the
// recorded token and says why, and it says so without waiting for a leader.
func TestLeaderLost(t *testing.T) {
	servers := startServers(t, 3)
	ctx := t.Context()
	api := servers[0].api(t)
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, s := range servers {
		a := s.api(t)
		if err := wait.Until(startCtx, wait.Options{What: s.name + " in a cluster with a leader", MaxInterval: 200 * time.Millisecond}, func(context.Context) (bool, string, error) {
			leader, err := a.Status().Leader()
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			nodes, _, err := a.Catalog().Nodes(nil)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			return leader != "" && len(nodes) == 3, fmt.Sprintf("leader %q, %d nodes", leader, len(nodes)), nil
		}); err != nil {
			t.Fatal(err)
		}
		// One instance of "web" on each server's agent.
		if err := a.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{ID: s.name + ":web:80", Name: "web", Port: 80}); err != nil {
			t.Fatal(err)
		}
	}
	web := Scope{Service: "web"}
	if err := wait.Until(startCtx, wait.Options{What: "three passing web instances", MaxInterval: 200 * time.Millisecond}, func(ctx context.Context) (bool, string, error) {
		r, err := Read(ctx, api, web)
		if err != nil {
			return false, "", wait.Retryable(err)
		}
		return r.Passing == 3 && r.Status == Passing, fmt.Sprintf("%+v", r), nil
	}); err != nil {
		t.Fatal(err)
	}
	r, err := Read(ctx, api, web)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := Observe(ctx, api, web, r.Observation(0)); err != nil || e.Token() != "0" {
		t.Fatalf("healthy: %v %v", e.Token(), err)
	}

	servers[1].stop()
	servers[2].stop()
	var lost *Report
	if err := wait.Until(startCtx, wait.Options{What: "s2 and s3 critical in the survivor's report", MaxInterval: 200 * time.Millisecond}, func(ctx context.Context) (bool, string, error) {
		r, err := Read(ctx, api, web)
		if err != nil {
			return false, "", err // a stale read must always answer
		}
		lost = r
		return r.Leaderless && r.Critical == 2 && len(r.Failing) == 4, fmt.Sprintf("%+v", r), nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"instance:s2/s2:web:80", "instance:s3/s3:web:80"}
	for _, name := range []string{"s2", "s3"} {
		for _, n := range lost.Nodes {
			if n.Name == name {
				want = append(want, "node:"+name+"/"+n.ID)
			}
		}
	}
	slices.Sort(want)
	if lost.Status != Critical || lost.Passing != 1 || !slices.Equal(lost.Failing, want) {
		t.Fatalf("the report without a leader: %+v", lost)
	}
	began := time.Now()
	e, err := Observe(ctx, api, web, Observation{Subjects: lost.Subjects})
	var writeErr *WriteError
	if !errors.As(err, &writeErr) || e.Token() != "0" {
		t.Fatalf("observing without a leader: token %s, %v; want the recorded token 0 and a write error", e.Token(), err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Fatalf("observing without a leader took %s", took)
	}
	t.Logf("without a leader: %v; report %v", err, lost.Failing)
}
