package consul

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// RestartLockKey is the KV key that keeps server restarts one at a time cluster-wide.
const RestartLockKey = "microswarm/rolling-restart"

// LockTTL is the lock session's TTL. The session has no health checks, so it survives
// the restart of the server that holds it; the TTL (Consul allows up to twice it) frees
// the lock if the holder dies. It must outlast one server's restart, during which the
// holder cannot renew through its own agent.
const LockTTL = 60 * time.Second

// Lock is a held restart lock.
type Lock struct {
	Key     string
	Session string

	mu       sync.Mutex
	api      *consulapi.Client
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// AcquireLock takes the restart lock for holder (a description shown to whoever waits
// for it), waiting with blocking queries while someone else holds it.
func AcquireLock(ctx context.Context, api *consulapi.Client, key, holder string) (*Lock, error) {
	session, _, err := api.Session().CreateNoChecks(&consulapi.SessionEntry{
		Name:     "microswarm rolling restart: " + holder,
		TTL:      LockTTL.String(),
		Behavior: consulapi.SessionBehaviorRelease,
		// Only a holder that died (TTL expiry) incurs the lock delay: keep it short.
		LockDelay: time.Second,
	}, (&consulapi.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("creating the lock session: %w", err)
	}
	l := &Lock{Key: key, Session: session, api: api, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew()

	err = wait.Until(ctx, wait.Options{What: "the rolling-restart lock " + key, Interval: 200 * time.Millisecond, MaxInterval: 2 * time.Second},
		func(ctx context.Context) (bool, string, error) {
			ok, _, err := api.KV().Acquire(&consulapi.KVPair{Key: key, Session: session, Value: []byte(holder)},
				(&consulapi.WriteOptions{}).WithContext(ctx))
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			if ok {
				return true, "", nil
			}
			pair, meta, err := api.KV().Get(key, (&consulapi.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			if pair == nil || pair.Session == "" {
				// Free, but within the lock delay of a holder that died: poll again.
				return false, "free, in its lock delay", nil
			}
			heldBy := fmt.Sprintf("held by %s", pair.Value)
			// Block until the key changes: released, or its session expired.
			_, _, err = api.KV().Get(key, (&consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 30 * time.Second}).WithContext(ctx))
			return false, heldBy, wait.Retryable(err)
		})
	if err != nil {
		_ = l.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	return l, nil
}

// UseAPI switches the client the lock renews and releases through, e.g. to the
// agent recreated with new TLS settings.
func (l *Lock) UseAPI(api *consulapi.Client) {
	l.mu.Lock()
	l.api = api
	l.mu.Unlock()
}

func (l *Lock) client() *consulapi.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.api
}

// renew keeps the session alive; failures while the holder's own server restarts are
// expected and covered by the TTL.
func (l *Lock) renew() {
	defer close(l.done)
	ticker := time.NewTicker(LockTTL / 4)
	defer ticker.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-ticker.C:
			ctx, cancel := context.WithTimeout(context.Background(), LockTTL/4)
			_, _, _ = l.client().Session().Renew(l.Session, (&consulapi.WriteOptions{}).WithContext(ctx))
			cancel()
		}
	}
}

// Release frees the lock and destroys its session, retrying briefly through a leader
// election; if that fails the session's TTL frees the lock anyway.
func (l *Lock) Release(ctx context.Context) error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return wait.Until(ctx, wait.Options{What: "releasing the rolling-restart lock"}, func(ctx context.Context) (bool, string, error) {
		api := l.client()
		opts := (&consulapi.WriteOptions{}).WithContext(ctx)
		// An explicit release has no lock delay; destroying the session alone would
		// count as invalidation and hold the next holder back.
		if _, _, err := api.KV().Release(&consulapi.KVPair{Key: l.Key, Session: l.Session}, opts); err != nil {
			return false, "", wait.Retryable(err)
		}
		if _, err := api.Session().Destroy(l.Session, opts); err != nil {
			return false, "", wait.Retryable(err)
		}
		return true, "", nil
	})
}

// RollingRestart replaces one server's container with a new spec without costing the
// cluster its quorum: under the cluster-wide restart lock, and only once every other
// server is healthy, it recreates the container on the same volume (same node ID, same
// raft data), waits until the server is back as a voter and every server is healthy, and
// only then lets the next server go.
type RollingRestart struct {
	Engine  Engine
	Current *Container
	Spec    Spec
	// OldAPI reaches the running server; NewAPI reaches it once recreated (they differ
	// when the update changes TLS or the API port).
	OldAPI, NewAPI *consulapi.Client
	// Holder describes this restart to anyone waiting for the lock.
	Holder string
	// Log reports progress.
	Log func(msg string, fields map[string]any)
}

// RestartPhaseError says at which step a rolling restart failed.
type RestartPhaseError struct {
	Phase string
	Err   error
}

func (e *RestartPhaseError) Error() string { return e.Phase + ": " + e.Err.Error() }
func (e *RestartPhaseError) Unwrap() error { return e.Err }

// Run performs the restart and returns the new container and the server's status.
func (r RollingRestart) Run(ctx context.Context) (*Container, ServerStatus, error) {
	log := r.Log
	if log == nil {
		log = func(string, map[string]any) {}
	}
	self, err := ReadSelf(ctx, r.OldAPI)
	if err != nil {
		return nil, ServerStatus{}, &RestartPhaseError{"asking the running server who it is", err}
	}
	// Before the lock and the leadership hand-off: a spec that cannot run fails here, with
	// the server untouched.
	if err := r.Spec.Validate(); err != nil {
		return nil, ServerStatus{}, &RestartPhaseError{"checking the new configuration", err}
	}
	if err := EnsureImage(ctx, r.Engine, r.Spec.Image); err != nil {
		return nil, ServerStatus{}, &RestartPhaseError{"pulling the new image", err}
	}
	lock, err := AcquireLock(ctx, r.OldAPI, RestartLockKey, r.Holder)
	if err != nil {
		return nil, ServerStatus{}, &RestartPhaseError{"taking the rolling-restart lock", err}
	}
	defer func() {
		if err := lock.Release(context.WithoutCancel(ctx)); err != nil {
			log("could not release the rolling-restart lock; its session TTL will", map[string]any{"error": err.Error()})
		}
	}()
	log("took the rolling-restart lock", map[string]any{"node": self.NodeName})

	health, err := WaitServersHealthy(ctx, r.OldAPI, self.NodeID)
	if err != nil {
		return nil, ServerStatus{}, &RestartPhaseError{"waiting for the other servers to be healthy before stopping this one", err}
	}
	if health.FailureTolerance < 1 {
		log("the cluster cannot lose a server: it has no leader while this one restarts", map[string]any{"servers": health.Servers})
	}
	if err := handOffLeadership(ctx, r.OldAPI); err != nil {
		// Not fatal: the others elect a leader on their own, only more slowly.
		log("could not hand leadership over before the restart", map[string]any{"error": err.Error()})
	}
	started := time.Now()
	replaced, err := Replace(ctx, r.Engine, r.Current, r.Spec)
	if err != nil {
		return nil, ServerStatus{}, &RestartPhaseError{"recreating the container", err}
	}
	lock.UseAPI(r.NewAPI)
	alive := func(ctx context.Context) error { return CheckAlive(ctx, r.Engine, replaced) }
	status, err := WaitServerReady(ctx, r.NewAPI, alive, nil, nil)
	if err != nil {
		return replaced, status, &RestartPhaseError{"waiting for the recreated server to be a voter again", err}
	}
	if _, err := WaitServersHealthy(ctx, r.NewAPI, ""); err != nil {
		return replaced, status, &RestartPhaseError{"waiting for every server to be healthy after the restart", err}
	}
	log("server back as a healthy voter", map[string]any{"node": status.NodeName, "down_for": time.Since(started).Round(time.Millisecond).String()})
	return replaced, status, nil
}

// handOffLeadership moves the leadership to another voter when this server leads, so
// its restart costs the cluster a leadership transfer rather than an election timeout.
func handOffLeadership(ctx context.Context, api *consulapi.Client) error {
	st, err := ReadServerStatus(ctx, api)
	if err != nil {
		return err
	}
	if !st.IsLeader || st.Voters < 2 {
		return nil
	}
	if _, err := api.Operator().RaftLeaderTransfer("", (&consulapi.QueryOptions{}).WithContext(ctx)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return wait.Until(ctx, waitOptions("another server to lead"), func(ctx context.Context) (bool, string, error) {
		st, err := ReadServerStatus(ctx, api)
		if err != nil {
			return false, "", wait.Retryable(err)
		}
		return !st.IsLeader && st.Leader != "", st.String(), nil
	})
}

// IsCrashed reports whether err says the container died while awaited.
func IsCrashed(err error) bool {
	var crashed *CrashedError
	return errors.As(err, &crashed)
}
