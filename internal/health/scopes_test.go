package health

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
)

// fakeConsul serves what Read and Observe ask of Consul for one service: its instances
// (filtered by tag as Consul filters them), the agent's members (all alive) and the KV
// store with check-and-set. A node that is down fails every instance on it, as Consul's
// serfHealth does.
type fakeConsul struct {
	mu        sync.Mutex
	instances []fakeInstance
	down      map[string]bool // node name -> serfHealth critical
	kv        map[string]*consulapi.KVPair
	index     uint64
}

type fakeInstance struct {
	id, node, tag string
	critical      bool
}

func newFakeConsul(t *testing.T) (*fakeConsul, *consulapi.Client) {
	t.Helper()
	f := &fakeConsul{down: map[string]bool{}, kv: map[string]*consulapi.KVPair{}, index: 1}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	api, err := consulapi.NewClient(&consulapi.Config{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	return f, api
}

// set replaces the service's instances (a deploy, a failure, a replacement).
func (f *fakeConsul) set(instances ...fakeInstance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances = instances
	f.index++
}

func (f *fakeConsul) nodeDown(node string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[node] = down
	f.index++
}

func status(critical bool) string {
	if critical {
		return Critical
	}
	return Passing
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("X-Consul-Index", strconv.FormatUint(f.index, 10))
	w.Header().Set("X-Consul-LastContact", "0")
	w.Header().Set("X-Consul-KnownLeader", "true")
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/v1/health/service/"):
		name, tag := strings.TrimPrefix(p, "/v1/health/service/"), r.URL.Query().Get("tag")
		out := []*consulapi.ServiceEntry{}
		for _, in := range f.instances {
			if name != "web" || (tag != "" && tag != in.tag) {
				continue
			}
			out = append(out, &consulapi.ServiceEntry{
				Node:    &consulapi.Node{ID: in.node + "-id", Node: in.node, Address: "10.0.0.1"},
				Service: &consulapi.AgentService{ID: in.id, Service: "web", Tags: []string{in.tag}, Port: 8080},
				Checks: consulapi.HealthChecks{
					{Node: in.node, CheckID: "serfHealth", Status: status(f.down[in.node])},
					{Node: in.node, CheckID: "service:" + in.id, ServiceID: in.id, Status: status(in.critical)},
				},
			})
		}
		_ = json.NewEncoder(w).Encode(out)
	case p == "/v1/agent/members":
		_, _ = w.Write([]byte("[]"))
	case strings.HasPrefix(p, "/v1/kv/"):
		key := strings.TrimPrefix(p, "/v1/kv/")
		switch r.Method {
		case http.MethodGet:
			pair, ok := f.kv[key]
			if !ok {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			_ = json.NewEncoder(w).Encode([]*consulapi.KVPair{pair})
		case http.MethodPut:
			body, _ := io.ReadAll(r.Body)
			cas, _ := strconv.ParseUint(r.URL.Query().Get("cas"), 10, 64)
			current, ok := f.kv[key]
			if (cas == 0 && ok) || (cas != 0 && (!ok || current.ModifyIndex != cas)) {
				_, _ = w.Write([]byte("false"))
				return
			}
			f.index++
			f.kv[key] = &consulapi.KVPair{Key: key, Value: body, ModifyIndex: f.index, CreateIndex: f.index}
			_, _ = w.Write([]byte("true"))
		}
	default:
		http.NotFound(w, r)
	}
}

// TestScopesShareOneLedger: a service-scoped and a tag-scoped data source (the whole
// app, and its live color) read one ledger at different moments of each plan, in either
// order. A node that hosts instances of both colors goes down, and swarm replaces them
// elsewhere: each token moves once, and the plan after the heal reads the tokens the
// failure's plan read.
func TestScopesShareOneLedger(t *testing.T) {
	f, api := newFakeConsul(t)
	ctx := context.Background()
	app, live := Scope{Service: "web"}, Scope{Service: "web", Tag: "blue"}
	// read is one data source's read, as the provider does it.
	read := func(s Scope, run *RunTokens) string {
		t.Helper()
		r, err := Read(ctx, api, s)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Observe(ctx, api, s, r.Observation(0))
		if err != nil {
			t.Fatal(err)
		}
		return run.Hold(LedgerKey(s), e).Token()
	}
	// plan reads the scopes in order, doing what happens between the reads, and says
	// "app/live", as terraform_data.app_health holds them.
	plan := func(order ...any) string {
		t.Helper()
		run := &RunTokens{}
		tokens := map[Scope]string{}
		for _, step := range order {
			switch step := step.(type) {
			case Scope:
				tokens[step] = read(step, run)
			case func():
				step()
			}
		}
		return tokens[app] + "/" + tokens[live]
	}

	f.set(fakeInstance{id: "b1", node: "w1", tag: "blue"}, fakeInstance{id: "b2", node: "w2", tag: "blue"},
		fakeInstance{id: "g1", node: "w1", tag: "green"}, fakeInstance{id: "g2", node: "w2", tag: "green"})
	if got := plan(live, app); got != "0/0" {
		t.Fatalf("before any failure: %s", got)
	}
	f.nodeDown("w1", true) // b1 and g1 fail together: one failure
	failed := plan(live, app)
	if failed != "1/1" {
		t.Fatalf("the failure's plan: %s, want 1/1 (one failure, one move of each token)", failed)
	}
	// Swarm replaces the tasks on w1 with new ones on w2, which pass: the heal.
	f.set(fakeInstance{id: "b2", node: "w2", tag: "blue"}, fakeInstance{id: "b3", node: "w2", tag: "blue"},
		fakeInstance{id: "g2", node: "w2", tag: "green"}, fakeInstance{id: "g3", node: "w2", tag: "green"})
	for _, order := range [][]any{{app, live}, {live, app}} {
		if got := plan(order...); got != failed {
			t.Fatalf("the plan after the heal: %s, want %s (a second move replaces twice)", got, failed)
		}
	}
	// A green instance alone fails, first read by the blue scope: the service's failure
	// all the same, counted once, whichever read sees it first; its heal moves nothing.
	f.set(fakeInstance{id: "b2", node: "w2", tag: "blue"}, fakeInstance{id: "b3", node: "w2", tag: "blue"},
		fakeInstance{id: "g2", node: "w2", tag: "green", critical: true}, fakeInstance{id: "g3", node: "w2", tag: "green"})
	if got := plan(live, app); got != "2/2" {
		t.Fatalf("a green failure's plan: %s, want 2/2", got)
	}
	f.set(fakeInstance{id: "b2", node: "w2", tag: "blue"}, fakeInstance{id: "b3", node: "w2", tag: "blue"},
		fakeInstance{id: "g3", node: "w2", tag: "green"}, fakeInstance{id: "g4", node: "w2", tag: "green"})
	for _, order := range [][]any{{live, app}, {app, live}} {
		if got := plan(order...); got != "2/2" {
			t.Fatalf("the plan after the green heal: %s, want 2/2", got)
		}
	}
	// A failure between the two reads of one plan: that plan reads the tokens before it
	// (it records the failure all the same), the next one both tokens after it; and a
	// heal between two reads moves nothing.
	if got := plan(live, func() { f.nodeDown("w2", true) }, app); got != "2/2" {
		t.Fatalf("a plan with a failure between its reads: %s, want 2/2 (one token moved, the other not yet)", got)
	}
	if got := plan(app, func() { f.nodeDown("w2", false) }, live); got != "3/3" {
		t.Fatalf("the next plan: %s, want 3/3 (both moved once, together)", got)
	}
	if got := plan(live, app); got != "3/3" {
		t.Fatalf("the plan after the heal: %s, want 3/3", got)
	}
}
