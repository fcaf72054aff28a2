package consul

import (
	"context"
	"sync"
	"time"
)

// TeardownWindow is how long a server's delete waits for the deletes of the rest of its
// cluster to begin before it decides to leave gracefully. Terraform starts the deletes
// of sibling resources together (within milliseconds here), so a whole cluster going
// away is seen at once; a single server leaving pays this once.
const TeardownWindow = time.Second

// peerReadTimeout bounds the read of the raft peers: an agent that does not answer at
// once is left to the graceful leave, which has its own bound (LeaveTimeout).
const peerReadTimeout = 5 * time.Second

// PeerReader reads the raft configuration a server holds (APIView, with a stale read so
// that it answers without a leader).
type PeerReader interface {
	RaftPeers(ctx context.Context) ([]RaftPeer, error)
}

// Departures gathers the servers, by raft ID, whose delete began in this provider run,
// so that a delete can tell a whole cluster going away from one server leaving it.
//
// A server leaving a cluster that stays must leave gracefully: it hands off leadership
// and is removed from the raft peers, so the survivors keep their quorum. That takes
// Consul 5-10 s per server (its leave drain time and the wait to be removed), one after
// another as each removal shrinks the quorum. When every server of the cluster is being
// deleted, nobody is left to keep a quorum for, and the servers are simply removed.
// The zero value is ready to use.
type Departures struct {
	mu      sync.Mutex
	ids     map[string]bool
	changed chan struct{} // closed, and replaced, on every Add
}

// Add records that the delete of the server with this raft ID began. It is kept for the
// whole run: a server removed earlier in the run is gone from the cluster either way.
func (d *Departures) Add(id string) {
	if id == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ids == nil {
		d.ids = map[string]bool{}
	}
	d.ids[id] = true
	if d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
}

// WholeCluster reports whether every server in the raft configuration of self (by raft
// ID; self must have been added) is being deleted in this run, waiting up to window for
// the other deletes to begin. Any doubt is false, and the server leaves gracefully: the
// peers cannot be read, self is not among them, or a peer's delete did not begin in time.
func (d *Departures) WholeCluster(ctx context.Context, r PeerReader, self string, window time.Duration) bool {
	if self == "" {
		return false
	}
	readCtx, cancel := context.WithTimeout(ctx, peerReadTimeout)
	peers, err := r.RaftPeers(readCtx)
	cancel()
	if err != nil || len(peers) == 0 {
		return false
	}
	found := false
	for _, p := range peers {
		found = found || p.ID == self
	}
	if !found {
		return false
	}
	deadline := time.NewTimer(window)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		missing := 0
		for _, p := range peers {
			if !d.ids[p.ID] {
				missing++
			}
		}
		if missing == 0 {
			d.mu.Unlock()
			return true
		}
		if d.changed == nil {
			d.changed = make(chan struct{})
		}
		changed := d.changed
		d.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
