package consul

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// raftFake is a server's API as WaitServerReady reads it: this server ("new" at
// 10.0.0.2), a leader at 10.0.0.1, and a raft configuration the test changes.
type raftFake struct {
	mu      sync.Mutex
	servers []*consulapi.RaftServer
	rejoins int
}

func (f *raftFake) set(servers ...*consulapi.RaftServer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.servers = servers
}

func (f *raftFake) rejoined() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejoins
}

func (f *raftFake) api(t *testing.T) *consulapi.Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var body any
		switch r.URL.Path {
		case "/v1/agent/self":
			body = map[string]any{"Config": map[string]any{"NodeID": "new", "NodeName": "n2", "Server": true},
				"Member": map[string]any{"Addr": "10.0.0.2"}}
		case "/v1/status/leader":
			body = "10.0.0.1:8300"
		case "/v1/operator/raft/configuration":
			body = consulapi.RaftConfiguration{Servers: f.servers}
		default:
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	api, err := consulapi.NewClient(&consulapi.Config{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

var (
	raftLeader = &consulapi.RaftServer{ID: "leader", Address: "10.0.0.1:8300", Leader: true, Voter: true}
	raftNew    = &consulapi.RaftServer{ID: "new", Address: "10.0.0.2:8300", Voter: true}
	raftDead   = &consulapi.RaftServer{ID: "dead", Address: "10.0.0.2:8300", Voter: true}
)

func (f *raftFake) rejoinAddsIt(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejoins++
	f.servers = []*consulapi.RaftServer{raftLeader, raftNew}
	return nil
}

func noCrash(context.Context) error { return nil }

// The leader refused to add the server while a dead voter held its address, and would
// try again only at its reconcile a minute later: once the address is free, the server
// leaves and joins again, once, and the wait ends when it votes.
func TestWaitServerReadyRejoinsAServerTheLeaderLeftOut(t *testing.T) {
	t.Parallel()
	f := &raftFake{servers: []*consulapi.RaftServer{raftLeader, raftDead}}
	api := f.api(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	time.AfterFunc(time.Second, func() { f.set(raftLeader) }) // autopilot prunes the dead voter
	st, err := waitServerReady(ctx, api, noCrash, f.rejoinAddsIt, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Voter || f.rejoined() != 1 {
		t.Errorf("voter=%t after %d rejoins, want a voter after 1", st.Voter, f.rejoined())
	}
}

// While a dead server holds its address the leader would refuse it again, and a server
// the leader has added (as a non-voter, promoted later) is where it should be: neither
// is made to rejoin.
func TestWaitServerReadyLeavesAServerThatCannotOrNeedNotRejoin(t *testing.T) {
	t.Parallel()
	nonVoter := *raftNew
	nonVoter.Voter = false
	for name, servers := range map[string][]*consulapi.RaftServer{
		"a dead server at its address": {raftLeader, raftDead},
		"added, not yet a voter":       {raftLeader, &nonVoter},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := &raftFake{servers: servers}
			api := f.api(t)
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			if _, err := waitServerReady(ctx, api, noCrash, f.rejoinAddsIt, 200*time.Millisecond); err == nil {
				t.Error("the wait ended, want its timeout")
			}
			if n := f.rejoined(); n != 0 {
				t.Errorf("made to rejoin %d times", n)
			}
		})
	}
}
