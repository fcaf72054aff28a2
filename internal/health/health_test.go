package health

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// TestEntryNext walks the ledger through a failure, its heal, a second failure and a
// re-failure: the token moves once per failure and never on recovery.
func TestEntryNext(t *testing.T) {
	steps := []struct {
		failing   []string
		wantToken string
		changed   bool
	}{
		{nil, "0", false},                                             // healthy from the start: nothing to write
		{[]string{"node:w1/a"}, "1", true},                            // w1 fails
		{[]string{"node:w1/a"}, "1", false},                           // still failing: no second replacement
		{nil, "1", true},                                              // replaced and healthy: token stays, plan is empty
		{nil, "1", false},                                             // and stays
		{[]string{"node:w2/b", "node:w1/c"}, "2", true},               // two fail together: one failure event
		{[]string{"node:w1/c"}, "2", true},                            // w2 recovers
		{[]string{"node:w1/c", "node:w2/b"}, "3", true},               // w2 fails again: a new failure
		{[]string{"node:w2/b", "node:w1/c", "node:w1/c"}, "3", false}, // order and duplicates do not matter
	}
	var e Entry
	for i, s := range steps {
		next, changed := e.Next(s.failing, time.Now())
		if changed != s.changed || next.Token() != s.wantToken {
			t.Fatalf("step %d (%v): token %s changed %v, want %s %v", i, s.failing, next.Token(), changed, s.wantToken, s.changed)
		}
		e = next
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

	// The ledger: the failure moves the token once, the heal does not move it back.
	blue := Scope{Service: "web", Tag: "blue"}
	observe := func(failing []string) string {
		t.Helper()
		e, err := Observe(ctx, api, blue, failing)
		if err != nil {
			t.Fatal(err)
		}
		return e.Token()
	}
	if tok := observe(nil); tok != "0" {
		t.Fatalf("before any failure: %s", tok)
	}
	if tok := observe(r.Failing); tok != "1" {
		t.Fatalf("after the failure: %s", tok)
	}
	// Many runs observing the same failure at once (plans beside a scheduled apply): one
	// failure, one generation.
	ttl("n:web-b1:8080", consulapi.HealthCritical)
	both := read(blue).Failing
	var wg sync.WaitGroup
	tokens := make([]string, 8)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := Observe(ctx, api, blue, both)
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
	// Swarm replaces both: the replacements register and pass, the failed ones go.
	for _, id := range []string{"n:web-b1:8080", "n:web-b2:8080"} {
		if err := api.Agent().ServiceDeregister(id); err != nil {
			t.Fatal(err)
		}
	}
	register("n:web-b3:8080", "blue")
	ttl("n:web-b3:8080", consulapi.HealthPassing)
	healed := read(blue)
	if healed.Status != Passing || len(healed.Failing) != 0 {
		t.Fatalf("after the heal: %+v", healed)
	}
	if tok := observe(healed.Failing); tok != "2" {
		t.Fatalf("the heal moved the token: %s", tok)
	}
	if tok := observe(read(blue).Failing); tok != "2" {
		t.Fatalf("a later read moved the token: %s", tok)
	}
	// A ledger that cannot be read gives no token (a wrong one would replace resources):
	// that is not a mere write failure.
	var writeErr *WriteError
	if _, err := Observe(ctx, api, Scope{Service: "web", Datacenter: "nowhere"}, nil); err == nil || errors.As(err, &writeErr) {
		t.Fatalf("an unreadable ledger: %v", err)
	}
	// The ledger is per scope.
	if e, err := Observe(ctx, api, Scope{Service: "web", Tag: "green"}, nil); err != nil || e.Token() != "0" {
		t.Fatalf("green's ledger: %v %v", e, err)
	}
}
