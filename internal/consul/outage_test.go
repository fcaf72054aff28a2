package consul

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// The survivor s0 (10.0.0.1) of a 3-voter cluster, the others s1 and s2.
var outagePeers = []RaftPeer{
	{ID: "id-0", Address: "10.0.0.1:8300", Voter: true},
	{ID: "id-1", Address: "10.0.0.2:8300", Voter: true},
	{ID: "id-2", Address: "10.0.0.3:8300", Voter: true},
}

func lookupOf(states map[string]DropletState) DropletLookup {
	return func(_ context.Context, ip string) (DropletState, error) {
		if s, ok := states[ip]; ok {
			return s, nil
		}
		return DropletDeleted, nil
	}
}

func member(ip, id string, alive bool) Member {
	return Member{Name: "n-" + ip, Address: ip, NodeID: id, Server: true, Alive: alive}
}

func TestAssessOutage(t *testing.T) {
	failed := []Member{member("10.0.0.1", "id-0", true), member("10.0.0.2", "id-1", false), member("10.0.0.3", "id-2", false)}
	cases := []struct {
		name      string
		members   []Member
		states    map[string]DropletState
		lost      bool // proven for good: the apply recovers
		lostOrOff bool // counting off droplets: the plan shows the update
		remaining int
	}{
		{
			// A blip, or the two containers stopped: the droplets are active, nothing proven.
			name: "network blip", members: failed,
			states:    map[string]DropletState{"10.0.0.1": DropletActive, "10.0.0.2": DropletActive, "10.0.0.3": DropletActive},
			remaining: 3,
		},
		{
			name: "two droplets off", members: failed,
			states:    map[string]DropletState{"10.0.0.1": DropletActive, "10.0.0.2": DropletOff, "10.0.0.3": DropletOff},
			lostOrOff: true, remaining: 1,
		},
		{
			name: "two droplets deleted", members: failed,
			states: map[string]DropletState{"10.0.0.1": DropletActive},
			lost:   true, lostOrOff: true, remaining: 1,
		},
		{
			// Replacements took the same addresses: new node IDs answer there.
			name:    "addresses taken by new servers",
			members: append(failed[:1:1], member("10.0.0.2", "new-1", true), member("10.0.0.3", "new-2", true)),
			states:  map[string]DropletState{"10.0.0.1": DropletActive, "10.0.0.2": DropletActive, "10.0.0.3": DropletActive},
			lost:    true, lostOrOff: true, remaining: 1,
		},
		{
			// One gone is not a lost quorum: the other two still make a majority.
			name: "one deleted, one blip", members: failed,
			states:    map[string]DropletState{"10.0.0.1": DropletActive, "10.0.0.3": DropletActive},
			remaining: 2,
		},
		{
			name: "one deleted, one off", members: failed,
			states:    map[string]DropletState{"10.0.0.1": DropletActive, "10.0.0.3": DropletOff},
			lostOrOff: true, remaining: 1,
		},
		{
			// Gossip says they live, whatever the API says: never recover.
			name:      "alive in gossip",
			members:   []Member{member("10.0.0.1", "id-0", true), member("10.0.0.2", "id-1", true), member("10.0.0.3", "id-2", true)},
			states:    map[string]DropletState{"10.0.0.1": DropletActive},
			remaining: 3,
		},
		{
			// The survivor is not a droplet the API knows: no proof of anything.
			name: "survivor not a droplet", members: failed,
			states:    map[string]DropletState{},
			remaining: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := AssessOutage(context.Background(), "id-0", outagePeers, tc.members, lookupOf(tc.states))
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Lost(true); got != tc.lost {
				t.Errorf("Lost(true) = %t, want %t (%s)", got, tc.lost, o)
			}
			if got := o.Lost(false); got != tc.lostOrOff {
				t.Errorf("Lost(false) = %t, want %t (%s)", got, tc.lostOrOff, o)
			}
			if len(o.Remaining) != tc.remaining {
				t.Errorf("%d remaining, want %d (%s)", len(o.Remaining), tc.remaining, o)
			}
			if o.Remaining[0].ID != "id-0" {
				t.Errorf("the survivor is not among the remaining: %v", o.Remaining)
			}
		})
	}
}

func TestAssessOutage_apiErrorProvesNothing(t *testing.T) {
	lookup := func(_ context.Context, ip string) (DropletState, error) {
		if ip == "10.0.0.1" {
			return DropletActive, nil
		}
		return DropletUnknown, errors.New("503")
	}
	o, err := AssessOutage(context.Background(), "id-0", outagePeers, nil, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if o.Lost(false) {
		t.Fatalf("an API error counted as proof: %s", o)
	}
}

func TestAssessOutage_notAVoter(t *testing.T) {
	if _, err := AssessOutage(context.Background(), "id-9", outagePeers, nil, lookupOf(nil)); err == nil {
		t.Fatal("a server outside its raft configuration was assessed")
	}
}

func TestOutagePeersJSON(t *testing.T) {
	o := Outage{Remaining: []RaftPeer{{ID: "id-0", Address: "10.0.0.1:8300", Voter: true}}}
	var got []map[string]any
	if err := json.Unmarshal(o.PeersJSON(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "id-0", "address": "10.0.0.1:8300", "non_voter": false}
	if len(got) != 1 || len(got[0]) != 3 || got[0]["id"] != want["id"] || got[0]["address"] != want["address"] || got[0]["non_voter"] != false {
		t.Fatalf("peers.json = %s", o.PeersJSON())
	}
}

// fakeView is a survivor's agent: no leader until the recovery restarted it.
type fakeView struct {
	mu      sync.Mutex
	leader  string
	members []Member
	engine  *fakeEngine
	joined  []string
}

func (v *fakeView) Self(context.Context) (Self, error) {
	return Self{NodeID: "id-0", NodeName: "s0", Server: true}, nil
}

func (v *fakeView) Leader(context.Context) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	// A recovered server (peers.json written, then started) elects itself.
	if v.engine != nil {
		v.engine.mu.Lock()
		c := v.engine.containers["consul-server"]
		recovered := c != nil && c.running && c.files[PeersFile] != ""
		v.engine.mu.Unlock()
		if recovered {
			return "10.0.0.1:8300", nil
		}
	}
	return v.leader, nil
}

func (v *fakeView) Join(_ context.Context, addr string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.joined = append(v.joined, addr)
	return nil
}

func (v *fakeView) RaftPeers(context.Context) ([]RaftPeer, error) { return outagePeers, nil }

func (v *fakeView) Members(context.Context) ([]Member, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.members, nil
}

func runningServer(t *testing.T) (*fakeEngine, *Container) {
	t.Helper()
	f := newFakeEngine()
	c, _, err := Ensure(context.Background(), f, serverSpec())
	if err != nil {
		t.Fatal(err)
	}
	f.calls = nil
	return f, c
}

func TestOutageRecovery_recoversWhenProven(t *testing.T) {
	f, c := runningServer(t)
	view := &fakeView{engine: f, members: []Member{member("10.0.0.1", "id-0", true), member("10.0.0.2", "id-1", false), member("10.0.0.3", "id-2", false)}}
	r := &OutageRecovery{Engine: f, Container: c, View: view, Lookup: lookupOf(map[string]DropletState{"10.0.0.1": DropletActive}), Interval: 10 * time.Millisecond,
		Join: []string{"10.0.0.1", "10.0.0.7", "10.0.0.8"}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, recovered, err := r.Run(ctx)
	// The replacements may have joined each other only while it restarted: it joins them.
	if strings.Join(view.joined, ",") != "10.0.0.1,10.0.0.7,10.0.0.8" {
		t.Errorf("joined %v after the recovery, want every planned server address", view.joined)
	}
	if err != nil || !recovered {
		t.Fatalf("Run = %t, %v; want a recovery", recovered, err)
	}
	if strings.Join(f.calls, ",") != "stop consul-server,start consul-server" {
		t.Errorf("calls %v, want the server stopped, then started with peers.json", f.calls)
	}
	peers := f.containers["consul-server"].files[PeersFile]
	if !strings.Contains(peers, `"id": "id-0"`) || strings.Contains(peers, "id-1") || strings.Contains(peers, "id-2") {
		t.Errorf("peers.json names the wrong voters:\n%s", peers)
	}
	if got == nil || !got.Running {
		t.Errorf("the recovered container is not running: %+v", got)
	}
}

// Off droplets (or a blip) are not proof: the server is never touched, and the wait ends
// with what is missing.
func TestOutageRecovery_waitsWithoutProof(t *testing.T) {
	for name, states := range map[string]map[string]DropletState{
		"off":  {"10.0.0.1": DropletActive, "10.0.0.2": DropletOff, "10.0.0.3": DropletOff},
		"blip": {"10.0.0.1": DropletActive, "10.0.0.2": DropletActive, "10.0.0.3": DropletActive},
	} {
		t.Run(name, func(t *testing.T) {
			f, c := runningServer(t)
			view := &fakeView{engine: f, members: []Member{member("10.0.0.1", "id-0", true), member("10.0.0.2", "id-1", false), member("10.0.0.3", "id-2", false)}}
			r := &OutageRecovery{Engine: f, Container: c, View: view, Lookup: lookupOf(states), Interval: 10 * time.Millisecond}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, recovered, err := r.Run(ctx)
			var nq *NoQuorumError
			if recovered || !errors.As(err, &nq) {
				t.Fatalf("Run = %t, %v; want a NoQuorumError", recovered, err)
			}
			if len(f.calls) != 0 {
				t.Errorf("the server was touched: %v", f.calls)
			}
		})
	}
}

// The proof arrives during the wait (the apply deletes the off droplets): it recovers then.
func TestOutageRecovery_proofArrivesLater(t *testing.T) {
	f, c := runningServer(t)
	view := &fakeView{engine: f, members: []Member{member("10.0.0.1", "id-0", true), member("10.0.0.2", "id-1", false), member("10.0.0.3", "id-2", false)}}
	var mu sync.Mutex
	states := map[string]DropletState{"10.0.0.1": DropletActive, "10.0.0.2": DropletOff, "10.0.0.3": DropletOff}
	lookup := func(_ context.Context, ip string) (DropletState, error) {
		mu.Lock()
		defer mu.Unlock()
		if s, ok := states[ip]; ok {
			return s, nil
		}
		return DropletDeleted, nil
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		delete(states, "10.0.0.2")
		delete(states, "10.0.0.3")
		mu.Unlock()
	}()
	r := &OutageRecovery{Engine: f, Container: c, View: view, Lookup: lookup, Interval: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, recovered, err := r.Run(ctx); err != nil || !recovered {
		t.Fatalf("Run = %t, %v; want a recovery once the droplets are deleted", recovered, err)
	}
}

// A leader answers: nothing to do.
func TestOutageRecovery_leaderPresent(t *testing.T) {
	f, c := runningServer(t)
	view := &fakeView{leader: "10.0.0.2:8300"}
	r := &OutageRecovery{Engine: f, Container: c, View: view, Lookup: lookupOf(nil), Interval: 10 * time.Millisecond}
	if _, recovered, err := r.Run(context.Background()); err != nil || recovered || len(f.calls) != 0 {
		t.Fatalf("Run = %t, %v, calls %v; want nothing done", recovered, err, f.calls)
	}
}
