package droplet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/godo"
)

// Runs and leases. A pending tag says "this create has not been confirmed in a state",
// and stays until a Read of the resource, which only runs for resources in state, claims
// the droplet. Until then the droplet may belong to a run that is still going (its
// terraform has not saved the state yet) or to one that died. Only a dead run's droplet
// may be adopted, so every droplet also carries the tag of the run (one Client: one
// provider process of one terraform command) that made it, and a run that has droplets
// still pending keeps a lease alive: an account tag LeaseTagPrefix+RUN+":"+EXPIRY (unix
// milliseconds), renewed every leaseTTL/3 while the process and the terraform that started it
// live. Another run reads the leases: a lease that expired, or none, is a dead run; one
// that is renewed while it watches is a live run. A run killed with its terraform stops
// renewing at once (a provider left behind by a SIGKILLed terraform notices that its
// parent changed), so its lease lapses within leaseTTL.
//
// A run that ends normally is not dead in that sense: terraform has saved its state, which
// holds the run's droplets until a refresh claims them. So when terraform closes the
// provider (FinishRuns, from main), each run still holding a lease replaces it with
// LeaseTagPrefix+RUN+":done"; a done run's droplets are never adopted and never refused
// as unclaimed. A run whose terraform died never gets there: its lease lapses.

// RunTagPrefix starts the tag naming the run that created (or adopted) a droplet. Hidden.
const RunTagPrefix = "microswarm-run:"

// LeaseTagPrefix starts the account tags that are run leases. They tag nothing.
const LeaseTagPrefix = "microswarm-lease:"

// DefaultLeaseTTL is how long a run's lease holds without renewal.
const DefaultLeaseTTL = 30 * time.Second

// leaseSkew is how far another machine's clock may be behind ours: a lease counts as
// live until this long after its expiry.
const leaseSkew = 5 * time.Second

// lease is one run's identity and lease.
type lease struct {
	c      *Client
	run    string
	ttl    time.Duration
	ppid   int
	mu     sync.Mutex
	active bool   // the renewer runs
	tag    string // the current lease tag
	users  int    // creates in flight
	done   chan struct{}
	// tidyOnce runs TidyRunTags once, at this run's first create.
	tidyOnce sync.Once
}

// tidyTimeout bounds the tidying of other runs' tags.
const tidyTimeout = 30 * time.Second

// skew is leaseSkew, or less for a short test lease.
func (l *lease) skew() time.Duration { return min(leaseSkew, l.ttl/2) }

// halt stops renewing and leaves the lease to lapse: what a SIGKILL does (tests).
func (l *lease) halt() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active {
		close(l.done)
		l.active = false
	}
}

// allLeases are this process's leases, for FinishRuns.
var allLeases struct {
	mu     sync.Mutex
	leases []*lease
}

func newLease(c *Client, ttl time.Duration) *lease {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	l := &lease{c: c, run: hex.EncodeToString(b), ttl: ttl, ppid: os.Getppid()}
	allLeases.mu.Lock()
	allLeases.leases = append(allLeases.leases, l)
	allLeases.mu.Unlock()
	return l
}

// FinishRuns marks every run of this process that still holds a lease as ended normally
// (see leaseDone). Call it when terraform has closed the provider, never after terraform
// died: it checks that the process that started this one is still its parent.
func FinishRuns(ctx context.Context) {
	allLeases.mu.Lock()
	leases := slices.Clone(allLeases.leases)
	allLeases.mu.Unlock()
	held := slices.DeleteFunc(leases, func(l *lease) bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return !l.active
	})
	if len(held) == 0 {
		return // most processes: terraform starts 3 or 4 a command, and few create
	}
	reparentWait() // a parent that died is reparented by now
	for _, l := range held {
		l.finish(ctx)
	}
}

// reparentWait gives the kernel time to reparent this process when terraform died, so
// finish sees it. It costs every process that holds a lease 100 ms at exit, and only
// those: a no-change plan or a switch has 3 or 4 provider processes, none holding one.
var reparentWait = func() { time.Sleep(100 * time.Millisecond) }

// finish marks the run as ended normally, if it holds a lease and its parent lives.
func (l *lease) finish(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active || os.Getppid() != l.ppid {
		return
	}
	close(l.done)
	l.active = false
	if l.c.createTag(ctx, LeaseTagPrefix+l.run+":"+leaseDone) == nil {
		_ = l.c.deleteTag(ctx, l.tag)
	}
}

// RunID is this Client's run: the tag RunTagPrefix+RunID marks the droplets it creates.
func (c *Client) RunID() string { return c.lease.run }

func leaseTag(run string, expiry time.Time) string {
	return LeaseTagPrefix + run + ":" + strconv.FormatInt(expiry.UnixMilli(), 10)
}

// acquire keeps the lease alive for a create (until release, and then as long as droplets
// of this run stay pending); the first acquire writes the lease before anything is made.
func (l *lease) acquire(ctx context.Context) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		tag := leaseTag(l.run, time.Now().Add(l.ttl))
		if err := l.c.createTag(ctx, tag); err != nil {
			return nil, fmt.Errorf("writing this run's lease: %w", err)
		}
		l.tag, l.active, l.done = tag, true, make(chan struct{})
		go l.renew(l.done)
		l.tidyOnce.Do(func() {
			// What killed runs left behind goes, once per run, beside its creates.
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), tidyTimeout)
				defer cancel()
				l.c.TidyRunTags(ctx)
			}()
		})
	}
	l.users++
	return func() {
		l.mu.Lock()
		l.users--
		l.mu.Unlock()
	}, nil
}

// Abandon stops renewing the lease and deletes it, as if the run had died long ago:
// for tests that play an interrupted run in the same process.
func (c *Client) Abandon(ctx context.Context) {
	l := c.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active {
		close(l.done)
		l.active = false
		_ = l.c.deleteTag(ctx, l.tag)
	}
}

// renew renews the lease until the run has nothing pending left, the process that
// started this one (terraform) is gone, or Abandon.
func (l *lease) renew(done chan struct{}) {
	ticker := time.NewTicker(l.ttl / 3)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
		}
		if os.Getppid() != l.ppid {
			// terraform died and left this process behind: whatever it creates now is in
			// no state, so let the lease lapse and the next apply adopt it.
			l.stop(done, false)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		pending, err := l.c.hasDroplets(ctx, RunTagPrefix+l.run)
		l.mu.Lock()
		idle := err == nil && !pending && l.users == 0
		l.mu.Unlock()
		if idle {
			cancel()
			l.stop(done, true)
			return
		}
		next := leaseTag(l.run, time.Now().Add(l.ttl))
		if err := l.c.createTag(ctx, next); err == nil {
			l.mu.Lock()
			old := l.tag
			l.tag = next
			l.mu.Unlock()
			_ = l.c.deleteTag(ctx, old)
		}
		cancel()
	}
}

func (l *lease) stop(done chan struct{}, deleteLease bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active || l.done != done {
		return
	}
	l.active = false
	if deleteLease {
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		defer cancel()
		_ = l.c.deleteTag(ctx, l.tag)
	}
}

// leases lists the account's run leases: the latest expiry of each run.
func (c *Client) leases(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := c.eachTag(ctx, func(t godo.Tag) {
		run, exp, ok := parseLease(t.Name)
		switch {
		case !ok:
		case exp.Equal(doneExpiry):
			out[run] = doneExpiry
		case exp.After(out[run]) && !out[run].Equal(doneExpiry):
			out[run] = exp
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parseLease reads a lease tag: its run and expiry (doneExpiry for a run that ended).
func parseLease(tag string) (run string, exp time.Time, ok bool) {
	rest, ok := strings.CutPrefix(tag, LeaseTagPrefix)
	if !ok {
		return "", time.Time{}, false
	}
	run, expText, ok := strings.Cut(rest, ":")
	if !ok {
		return "", time.Time{}, false
	}
	if expText == leaseDone {
		return run, doneExpiry, true
	}
	ms, err := strconv.ParseInt(expText, 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return run, time.UnixMilli(ms), true
}

// eachTag calls each for every tag of the account, page by page.
func (c *Client) eachTag(ctx context.Context, each func(godo.Tag)) error {
	opt := &godo.ListOptions{Page: 1, PerPage: 200}
	for {
		var page []godo.Tag
		var resp *godo.Response
		err := c.call(ctx, "list tags", func(ctx context.Context) (r *godo.Response, err error) {
			page, r, err = c.api.Tags.List(ctx, opt)
			resp = r
			return r, err
		})
		if err != nil {
			return err
		}
		for _, t := range page {
			each(t)
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return nil
		}
		next, err := resp.Links.CurrentPage()
		if err != nil {
			return fmt.Errorf("list tags: reading the page number: %w", err)
		}
		opt.Page = next + 1
	}
}

// TidyRunTags deletes the run bookkeeping that no longer marks anything, which runs
// killed mid-create leave in the account (tags outlive what they tagged):
//   - a lease that lapsed (past its expiry and the clock skew, and a whole TTL more): a
//     lapsed lease and no lease say the same thing, a dead run, so nothing's verdict
//     changes;
//   - the run tag of a run that is not live (lapsed, done, or no lease) once no droplet
//     carries it (checked again just before), with that run's done lease: no droplet of
//     the run is pending any more.
//
// A live run's tags are never touched: it may be about to tag a droplet. Best effort:
// what fails stays for a later run to tidy. It returns how many tags it deleted.
func (c *Client) TidyRunTags(ctx context.Context) int {
	type runTags struct {
		leases []string
		latest time.Time
		runTag bool
		tagged int
	}
	runs := map[string]*runTags{}
	get := func(run string) *runTags {
		if runs[run] == nil {
			runs[run] = &runTags{}
		}
		return runs[run]
	}
	err := c.eachTag(ctx, func(t godo.Tag) {
		if run, exp, ok := parseLease(t.Name); ok {
			r := get(run)
			r.leases = append(r.leases, t.Name)
			if exp.After(r.latest) {
				r.latest = exp
			}
			return
		}
		if run, ok := strings.CutPrefix(t.Name, RunTagPrefix); ok {
			r := get(run)
			r.runTag = true
			if t.Resources != nil {
				r.tagged = t.Resources.Count
			}
		}
	})
	if err != nil {
		return 0
	}
	lapsed := func(exp time.Time) bool {
		return !exp.Equal(doneExpiry) && time.Now().After(exp.Add(c.lease.skew()+c.lease.ttl))
	}
	deleted := 0
	del := func(tag string) {
		if c.deleteTag(ctx, tag) == nil {
			deleted++
		}
	}
	for run, r := range runs {
		if run == c.lease.run {
			continue
		}
		live := !r.latest.IsZero() && !r.latest.Equal(doneExpiry) && !lapsed(r.latest)
		if live {
			continue
		}
		for _, l := range r.leases {
			if _, exp, _ := parseLease(l); lapsed(exp) {
				del(l) // says no more than its absence would
			}
		}
		if r.tagged > 0 {
			continue // droplets of the run are still pending: its tag (and a done lease) stay
		}
		if r.latest.IsZero() {
			// No lease at all: a live run between creates may be writing a new one now.
			if live, err := c.runLiveNow(ctx, run); err != nil || live {
				continue
			}
		}
		if r.runTag {
			if busy, err := c.hasDroplets(ctx, RunTagPrefix+run); err != nil || busy {
				continue
			}
			del(RunTagPrefix + run)
		}
		if r.latest.Equal(doneExpiry) {
			del(LeaseTagPrefix + run + ":" + leaseDone)
		}
	}
	return deleted
}

// leaseDone ends the lease tag of a run that ended normally; doneExpiry stands for it.
const leaseDone = "done"

var doneExpiry = time.Unix(1<<40, 0)

// RunState is what another run's lease says.
type RunState int

const (
	// RunDead: no lease, or one that lapsed: the run is over and saved nothing more.
	RunDead RunState = iota
	// RunLive: the run renewed its lease while we watched: it is still going.
	RunLive
	// RunDone: the run ended normally (FinishRuns): its droplets are in its state.
	RunDone
)

// runState tells whether run is live, watching its lease until it is renewed (live) or
// lapses (dead); at most about leaseTTL. A droplet with no run tag (made before runs
// existed) has run "" and counts as dead.
func (c *Client) runState(ctx context.Context, run string) (RunState, error) {
	if run == "" {
		return RunDead, nil
	}
	if run == c.lease.run {
		return RunLive, nil
	}
	var first time.Time
	for {
		leases, err := c.leases(ctx)
		if err != nil {
			return RunLive, err
		}
		exp := leases[run]
		if exp.Equal(doneExpiry) {
			return RunDone, nil
		}
		if exp.IsZero() || time.Now().After(exp.Add(c.lease.skew())) {
			return RunDead, nil
		}
		if !first.IsZero() && exp.After(first) {
			return RunLive, nil // renewed while we watched
		}
		if first.IsZero() {
			first = exp
		}
		wait := min(time.Until(exp.Add(c.lease.skew()))+c.lease.ttl/20, c.lease.ttl/6)
		timer := time.NewTimer(max(wait, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			timer.Stop()
			return RunLive, fmt.Errorf("waiting to learn whether run %s, which made a pending droplet, is still going: %w", run, ctx.Err())
		case <-timer.C:
		}
	}
}

// RunLiveNow reports, without waiting, whether a run holds a lease that has not lapsed.
func (c *Client) runLiveNow(ctx context.Context, run string) (bool, error) {
	if run == "" {
		return false, nil
	}
	if run == c.lease.run {
		return true, nil
	}
	leases, err := c.leases(ctx)
	if err != nil {
		return false, err
	}
	exp := leases[run]
	return !exp.IsZero() && time.Now().Before(exp.Add(c.lease.skew())), nil // done: far in the future
}

func (c *Client) createTag(ctx context.Context, name string) error {
	err := c.call(ctx, "create tag "+name, func(ctx context.Context) (r *godo.Response, err error) {
		_, r, err = c.api.Tags.Create(ctx, &godo.TagCreateRequest{Name: name})
		return r, err
	})
	if IsInvalid(err) {
		return nil // it exists already
	}
	return err
}

func (c *Client) deleteTag(ctx context.Context, name string) error {
	err := c.call(ctx, "delete tag "+name, func(ctx context.Context) (*godo.Response, error) {
		return c.api.Tags.Delete(ctx, name)
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// hasDroplets reports whether any droplet carries tag.
func (c *Client) hasDroplets(ctx context.Context, tag string) (bool, error) {
	var page []godo.Droplet
	err := c.call(ctx, "list droplets tagged "+tag, func(ctx context.Context) (r *godo.Response, err error) {
		page, r, err = c.api.Droplets.ListByTag(ctx, tag, &godo.ListOptions{PerPage: 1})
		return r, err
	})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return len(page) > 0, err
}
