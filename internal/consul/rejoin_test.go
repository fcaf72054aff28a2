package consul

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// raftFake is a server's API as WaitServerReady reads it: this server ("new" at
// 10.0.0.2), a leader at 10.0.0.1, and a raft configuration the test changes.
type raftFake struct {
	mu sync.Mutex
	// leader is the leader this server knows of, "" for none; servers the leader's raft
	// configuration; local this server's own copy of it (a stale read).
	leader         string
	servers, local []*consulapi.RaftServer
	rejoins        int
}

func (f *raftFake) set(leader string, servers, local []*consulapi.RaftServer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader, f.servers, f.local = leader, servers, local
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
			body = f.leader
		case "/v1/operator/raft/configuration":
			switch {
			case r.URL.Query().Has("stale"):
				body = consulapi.RaftConfiguration{Servers: f.local}
			case f.leader == "":
				http.Error(w, "No cluster leader", http.StatusInternalServerError)
				return
			default:
				body = consulapi.RaftConfiguration{Servers: f.servers}
			}
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
	// raftAdded is this server added by the leader, not yet promoted.
	raftAdded = &consulapi.RaftServer{ID: "new", Address: "10.0.0.2:8300"}
	raftDead  = &consulapi.RaftServer{ID: "dead", Address: "10.0.0.2:8300", Voter: true}
)

func (f *raftFake) rejoinAddsIt(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejoins++
	f.leader = raftLeader.Address
	f.servers = []*consulapi.RaftServer{raftLeader, raftNew}
	f.local = f.servers
	return nil
}

func (f *raftFake) rejoinChangesNothing(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejoins++
	return nil
}

func noCrash(context.Context) error { return nil }

// The leader refused to add the server while a dead voter held its address, and would
// try again only at its reconcile a minute later: once the dead voter is pruned, the
// server leaves and joins again, once, and the wait ends when it votes. The leader
// replicated to it under the dead voter's ID until the prune; after it, the server may
// still know the leader, or (as Consul does) know of none, its own copy of the raft
// configuration holding the dead voter and not itself.
func TestWaitServerReadyRejoinsAServerTheLeaderLeftOut(t *testing.T) {
	t.Parallel()
	for name, pruned := range map[string]func(f *raftFake){
		"it still knows the leader": func(f *raftFake) { f.set(raftLeader.Address, []*consulapi.RaftServer{raftLeader}, nil) },
		"it knows of no leader": func(f *raftFake) {
			f.set("", nil, []*consulapi.RaftServer{raftLeader, raftDead})
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := &raftFake{leader: raftLeader.Address, servers: []*consulapi.RaftServer{raftLeader, raftDead}}
			f.local = f.servers
			api := f.api(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			time.AfterFunc(time.Second, func() { pruned(f) })
			st, err := waitServerReady(ctx, api, noCrash, f.rejoinAddsIt, nil, 300*time.Millisecond, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Voter || f.rejoined() != 1 {
				t.Errorf("voter=%t after %d rejoins, want a voter after 1", st.Voter, f.rejoined())
			}
		})
	}
}

// A server that is where it should be, or that a rejoin cannot help, is not made to
// rejoin: a dead server at its address (the leader would refuse it again), added as a
// non-voter (promoted later), no leader with an empty configuration (a first election, or
// a new server in a cluster that lost its quorum) or with itself in it (a voter of a
// cluster that lost its quorum).
func TestWaitServerReadyLeavesAServerThatCannotOrNeedNotRejoin(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]*raftFake{
		"a dead server at its address": {leader: raftLeader.Address, servers: []*consulapi.RaftServer{raftLeader, raftDead}},
		"added, not yet a voter":       {leader: raftLeader.Address, servers: []*consulapi.RaftServer{raftLeader, raftAdded}},
		"no leader, never replicated":  {},
		"no leader, a voter":           {local: []*consulapi.RaftServer{raftLeader, raftNew}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			api := f.api(t)
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			if _, err := waitServerReady(ctx, api, noCrash, f.rejoinAddsIt, nil, 200*time.Millisecond, time.Minute); err == nil {
				t.Error("the wait ended, want its timeout")
			}
			if n := f.rejoined(); n != 0 {
				t.Errorf("made to rejoin %d times", n)
			}
		})
	}
}

// A rejoin that does not help, or that fails, is tried again only after the spacing, not
// on every poll; a failed one does not end the wait (the leader's own reconcile may still
// add the server), which runs out its time.
func TestWaitServerReadySpacesItsRejoins(t *testing.T) {
	t.Parallel()
	for name, fails := range map[string]bool{"changes nothing": false, "fails": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := &raftFake{leader: raftLeader.Address, servers: []*consulapi.RaftServer{raftLeader}}
			api := f.api(t)
			rejoin := func(ctx context.Context) error {
				_ = f.rejoinChangesNothing(ctx)
				if fails {
					return errors.New("leave refused")
				}
				return nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			_, err := waitServerReady(ctx, api, noCrash, rejoin, nil, 100*time.Millisecond, 600*time.Millisecond)
			var timeout *wait.TimeoutError
			if !errors.As(err, &timeout) {
				t.Errorf("the wait ended with %v, want its timeout", err)
			}
			if n := f.rejoined(); n < 2 || n > 3 {
				t.Errorf("rejoined %d times in 1.5 s, want 2 or 3 (after 0.1 s, then every 0.6 s)", n)
			}
		})
	}
}

// What needs only a leader runs as soon as the leader has added the server, not after
// autopilot's vote, and the wait returns only once it is done: the member step saw a
// non-voter, and had finished when the wait ended.
func TestWaitServerReadyRunsMemberBeforeTheVote(t *testing.T) {
	t.Parallel()
	f := &raftFake{leader: raftLeader.Address, servers: []*consulapi.RaftServer{raftLeader, raftAdded}}
	f.local = f.servers
	api := f.api(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	time.AfterFunc(time.Second, func() {
		f.set(raftLeader.Address, []*consulapi.RaftServer{raftLeader, raftNew}, []*consulapi.RaftServer{raftLeader, raftNew})
	})
	var (
		mu       sync.Mutex
		ran      int
		sawVoter bool
		after    time.Duration
		finished bool
	)
	member := func(ctx context.Context, st ServerStatus) {
		mu.Lock()
		ran++
		sawVoter, after = st.Voter, time.Since(began)
		mu.Unlock()
		select { // longer than the vote: the wait must wait for it
		case <-time.After(1500 * time.Millisecond):
		case <-ctx.Done():
		}
		mu.Lock()
		finished = ctx.Err() == nil
		mu.Unlock()
	}
	st, err := waitServerReady(ctx, api, noCrash, nil, member, time.Minute, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !st.Voter || ran != 1 {
		t.Fatalf("voter=%t, member ran %d times; want a voter, member once", st.Voter, ran)
	}
	if sawVoter || after >= time.Second {
		t.Errorf("member ran %v in, seeing voter=%t; want it before the vote (1 s in), on a non-voter", after.Round(time.Millisecond), sawVoter)
	}
	if !finished {
		t.Error("the wait returned before member finished (or member's context was cancelled)")
	}
}

// A wait that fails cancels the member step it started and returns after it; a server
// the leader never added runs none.
func TestWaitServerReadyCancelsMemberWhenTheWaitFails(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		f       *raftFake
		started bool
	}{
		"added, never promoted":        {&raftFake{leader: raftLeader.Address, servers: []*consulapi.RaftServer{raftLeader, raftAdded}}, true},
		"a dead server at its address": {&raftFake{leader: raftLeader.Address, servers: []*consulapi.RaftServer{raftLeader, raftDead}}, false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			api := tc.f.api(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			var started, returned atomic.Bool
			member := func(ctx context.Context, _ ServerStatus) {
				started.Store(true)
				<-ctx.Done()
				time.Sleep(100 * time.Millisecond)
				returned.Store(true)
			}
			if _, err := waitServerReady(ctx, api, noCrash, nil, member, time.Minute, time.Minute); err == nil {
				t.Fatal("the wait ended, want its timeout")
			}
			if started.Load() != tc.started {
				t.Errorf("member started: %t, want %t", started.Load(), tc.started)
			}
			if started.Load() && !returned.Load() {
				t.Error("the wait returned before the member step it started")
			}
		})
	}
}
