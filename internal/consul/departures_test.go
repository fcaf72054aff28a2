package consul

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

type peersOf []string

func (p peersOf) RaftPeers(context.Context) ([]RaftPeer, error) {
	var out []RaftPeer
	for _, id := range p {
		out = append(out, RaftPeer{ID: id, Voter: true})
	}
	return out, nil
}

type peersErr struct{}

func (peersErr) RaftPeers(context.Context) ([]RaftPeer, error) { return nil, errors.New("no route") }

// Terraform starts the three servers' deletes together: each sees the whole cluster going
// and none waits out the window.
func TestDeparturesSeeAWholeClusterGoing(t *testing.T) {
	t.Parallel()
	var d Departures
	cluster := peersOf{"a", "b", "c"}
	start := time.Now()
	var wg sync.WaitGroup
	got := make([]bool, len(cluster))
	for i, id := range cluster {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.Add(id)
			got[i] = d.WholeCluster(context.Background(), cluster, id, 5*time.Second)
		}()
	}
	wg.Wait()
	for i, whole := range got {
		if !whole {
			t.Errorf("server %s: WholeCluster = false, want true", cluster[i])
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %s; the last server's Add should end every wait", took)
	}
}

// A server whose delete begins a moment later is still seen within the window.
func TestDeparturesWaitForALateSibling(t *testing.T) {
	t.Parallel()
	var d Departures
	cluster := peersOf{"a", "b"}
	d.Add("a")
	go func() {
		time.Sleep(100 * time.Millisecond)
		d.Add("b")
	}()
	if !d.WholeCluster(context.Background(), cluster, "a", 5*time.Second) {
		t.Error("WholeCluster = false, want true once b's delete began")
	}
}

// Two of three servers going: both leave gracefully, after the window.
func TestDeparturesKeepTheGracefulLeaveWhenAServerStays(t *testing.T) {
	t.Parallel()
	var d Departures
	cluster := peersOf{"a", "b", "c"}
	d.Add("a")
	d.Add("b")
	start := time.Now()
	if d.WholeCluster(context.Background(), cluster, "a", 200*time.Millisecond) {
		t.Error("WholeCluster = true with c staying")
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("gave up after %s, before the window", took)
	}
}

// Any doubt is a graceful leave.
func TestDeparturesDoubtIsAGracefulLeave(t *testing.T) {
	t.Parallel()
	var d Departures
	d.Add("a")
	d.Add("b")
	for name, c := range map[string]struct {
		r    PeerReader
		self string
	}{
		"peers unreadable":       {peersErr{}, "a"},
		"self not a peer":        {peersOf{"b"}, "a"},
		"no raft ID in state":    {peersOf{"a"}, ""},
		"no peers in the answer": {peersOf{}, "a"},
	} {
		if d.WholeCluster(context.Background(), c.r, c.self, 10*time.Millisecond) {
			t.Errorf("%s: WholeCluster = true, want false", name)
		}
	}
}

// With -parallelism=1 the deletes run one after another: each earlier server left
// gracefully and is no longer a peer, so only the last one skips its leave.
func TestDeparturesOneAfterAnother(t *testing.T) {
	t.Parallel()
	var d Departures
	peers := peersOf{"a", "b", "c"}
	var got []bool
	for _, id := range []string{"a", "b", "c"} {
		d.Add(id)
		got = append(got, d.WholeCluster(context.Background(), peers, id, 20*time.Millisecond))
		peers = peers[1:] // its graceful leave took it out of the raft configuration
	}
	if got[0] || got[1] || !got[2] {
		t.Errorf("WholeCluster per server = %v, want [false false true]", got)
	}
}
