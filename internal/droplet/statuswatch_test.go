package droplet

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Droplets booting at once are watched through one list per poll, not one request per
// droplet per poll: at 12 droplets that is the difference between 12 and 720 requests a
// minute against DigitalOcean's 250. Each still sees its own status within a poll, and
// one the list does not show yet (a create not indexed by tag) is asked for alone.
func TestWaitStatusWatchesBootingDropletsThroughOneList(t *testing.T) {
	t.Parallel()
	api, _ := newDropletsAPI(t)
	c, err := NewClient(ClientOptions{Token: "t", BaseURL: api.url, LeaseTTL: testLeaseTTL, StatusPoll: 50 * time.Millisecond,
		Retry: RetryPolicy{MaxAttempts: 4, MinWait: 5 * time.Millisecond, MaxWait: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.lease.halt() })
	const n = 6
	api.mu.Lock()
	api.lag = 150 * time.Millisecond // the list shows a new droplet this late
	for i := range n {
		id := 100 + i
		api.droplets = append(api.droplets, map[string]any{"id": id, "name": "web", "status": "new", "tags": []string{ManagedTag}})
		api.created[id] = time.Now()
	}
	api.mu.Unlock()
	// Each droplet becomes active at its own time, the last after about 20 polls.
	boot := func(i int) time.Duration { return time.Duration(300+i*150) * time.Millisecond }
	start := time.Now()
	for i := range n {
		time.AfterFunc(boot(i), func() {
			api.mu.Lock()
			defer api.mu.Unlock()
			api.dropletLocked(100 + i)["status"] = "active"
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	late := make([]time.Duration, n)
	for i := range n {
		wg.Go(func() {
			d, err := c.WaitStatus(ctx, 100+i, "active")
			if err != nil || d.Status != "active" {
				t.Errorf("droplet %d: %v, %+v", 100+i, err, d)
				return
			}
			late[i] = time.Since(start) - boot(i)
		})
	}
	wg.Wait()
	took := time.Since(start)

	api.mu.Lock()
	gets, lists := api.gets, api.lists
	api.mu.Unlock()
	for i, l := range late {
		if l > 200*time.Millisecond { // a poll (50 ms) and the answer, with room for a slow machine
			t.Errorf("droplet %d was seen active %s after the API said so", 100+i, l.Round(time.Millisecond))
		}
	}
	polls := int(took/(50*time.Millisecond)) + 1
	if lists > polls {
		t.Errorf("%d lists in %s: more than one per poll", lists, took.Round(time.Millisecond))
	}
	// Only while the list lagged (150 ms, 3 polls) were the droplets asked for alone, at
	// polls further apart: two each at most.
	if gets > 2*n {
		t.Errorf("%d requests for single droplets (and %d lists) in %s: the waits polled each droplet instead of sharing the list", gets, lists, took.Round(time.Millisecond))
	}
	t.Logf("%d droplets active after %s: %d lists, %d single requests", n, took.Round(time.Millisecond), lists, gets)
}
