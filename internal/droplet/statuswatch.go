package droplet

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// DefaultStatusPoll is how often the droplets a provider run waits on are looked at. One
// list of the provider's droplets answers every waiting create, so a run asks once a
// second however many droplets boot at once (DigitalOcean allows 250 requests a minute),
// and a droplet is seen active within a second of the API saying so.
const DefaultStatusPoll = time.Second

// statusListTimeout bounds one list: a waiter does not wait past its own context anyway.
const statusListTimeout = 30 * time.Second

// statusWatch coalesces the status waits of one provider run into one list per poll.
// The zero value is ready (interval 0: DefaultStatusPoll).
type statusWatch struct {
	interval time.Duration

	mu      sync.Mutex
	waiting int
	running bool
	seen    map[int]*Droplet // by the latest list
	listErr error            // the latest list's error
	round   chan struct{}    // closed when a list is done, then replaced
}

// join registers a waiter and starts the poller if it is not running; leave undoes it.
func (w *statusWatch) join(c *Client) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiting++
	if w.round == nil {
		w.round = make(chan struct{})
	}
	if !w.running {
		w.running = true
		go w.run(c, cmp.Or(w.interval, DefaultStatusPoll))
	}
}

func (w *statusWatch) leave() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiting--
}

// run lists the managed droplets every interval while anyone waits.
func (w *statusWatch) run(c *Client, interval time.Duration) {
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		<-timer.C
		w.mu.Lock()
		if w.waiting == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		seen := map[int]*Droplet{}
		ctx, cancel := context.WithTimeout(context.Background(), statusListTimeout)
		err := c.eachTagged(ctx, ManagedTag, func(d *Droplet) { seen[d.ID] = d })
		cancel()
		w.mu.Lock()
		w.seen, w.listErr = seen, err
		close(w.round)
		w.round = make(chan struct{})
		w.mu.Unlock()
		timer.Reset(interval)
	}
}

// next waits for the next list and returns what it saw.
func (w *statusWatch) next(ctx context.Context) (map[int]*Droplet, error) {
	w.mu.Lock()
	round := w.round
	w.mu.Unlock()
	select {
	case <-round:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen, w.listErr
}

// WaitStatus waits until the droplet reports the given status ("active", "off"). It
// looks at the droplet in the run's shared list (statusWatch). A droplet the list does
// not show (the API lists a new droplet by tag a few seconds after its create), or a list
// that failed, is asked for alone, at polls further apart each time (1, 2, then every 4),
// so that droplets the list lags behind do not multiply the requests.
func (c *Client) WaitStatus(ctx context.Context, id int, status string) (*Droplet, error) {
	c.watch.join(c)
	defer c.watch.leave()
	var last *Droplet
	skip, skipped := 1, 1 // ask alone every skip-th poll the list misses it; one now
	// The check itself waits for the next list: no pause of its own between checks.
	err := wait.Until(ctx, wait.Options{What: fmt.Sprintf("droplet %d to become %s", id, status), Interval: time.Nanosecond, MaxInterval: time.Nanosecond},
		func(ctx context.Context) (bool, string, error) {
			seen, err := c.watch.next(ctx)
			if ctx.Err() != nil {
				return false, "", ctx.Err()
			}
			d, ok := seen[id]
			if err != nil || !ok {
				if skipped < skip {
					skipped++
					return false, "", nil
				}
				skipped, skip = 1, min(2*skip, 4)
				if d, err = c.Get(ctx, id); err != nil {
					return false, "", err
				}
			}
			last = d
			return d.Status == status, "status " + d.Status, nil
		})
	return last, err
}
