package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The invariant every function here keeps, whatever fails: when it returns, every proxy
// it could reach routes as the route it reports (SwitchResult.To on success, the old
// route on any error), and the proxies it could not reach are named in the error. So
// the caller records that route, and the next apply, which reads every proxy again,
// converges the ones named.

// Degradation says what the watch saw go wrong with the new color.
type Degradation struct {
	Color   Color
	After   time.Duration
	Reason  string
	Healthy int
	Failed  int64
	Total   int64
}

func (d *Degradation) Error() string {
	return fmt.Sprintf("%s degraded %s after the switch: %s (healthy instances %d, failed %d of %d requests)",
		d.Color, d.After.Round(100*time.Millisecond), d.Reason, d.Healthy, d.Failed, d.Total)
}

// WatchPolicy is when a freshly switched color counts as degraded.
type WatchPolicy struct {
	Window     time.Duration
	Every      time.Duration
	MinHealthy int
	// MaxErrorRate is the share of failed requests (0..1) over the window so far that
	// counts as degraded, once MinRequests were seen.
	MaxErrorRate float64
	MinRequests  int64
}

// Watch observes color c for the policy's window and returns a *Degradation as soon as
// its healthy instances fall below MinHealthy or its error rate at the proxies rises
// above MaxErrorRate; nil when the window passes. A Consul read that fails skips the
// instance check that round, and a proxy whose counters cannot be read is left out of
// that round's sum (its baseline is taken when it first answers): neither switches the
// other check off. A watch cut short by ctx is a *Degradation too: the new color was not
// watched for the window the configuration asked for, so it does not keep the traffic.
func Watch(ctx context.Context, health Health, proxies []Proxy, c Color, p WatchPolicy) error {
	start := time.Now()
	base := make([]*Counters, len(proxies))
	readCounters := func() (total, failed int64, unread []string) {
		for i, px := range proxies {
			n, err := px.Counters(ctx, c)
			if err != nil {
				unread = append(unread, px.Name())
				continue
			}
			if base[i] == nil || n.Requests < base[i].Requests {
				// First answer, or the proxy restarted and its counters began again.
				base[i] = &n
				continue
			}
			total += n.Requests - base[i].Requests
			failed += n.Failed - base[i].Failed
		}
		return total, failed, unread
	}
	readCounters()
	for time.Since(start) < p.Window {
		select {
		case <-ctx.Done():
			return &Degradation{Color: c, After: time.Since(start), Reason: fmt.Sprintf("the watch was cut short (%v) before its %s window ended", ctx.Err(), p.Window)}
		case <-time.After(p.Every):
		}
		d := &Degradation{Color: c, After: time.Since(start), Healthy: -1}
		var sick []string
		if instances, err := health.Instances(ctx, c); err == nil {
			d.Healthy = 0
			for _, in := range instances {
				if in.Healthy {
					d.Healthy++
				} else {
					sick = append(sick, in.ID+": "+in.Why)
				}
			}
		}
		d.Total, d.Failed, _ = readCounters()
		switch {
		case d.Healthy >= 0 && d.Healthy < p.MinHealthy:
			d.Reason = fmt.Sprintf("%d healthy instances, below %d (%s)", d.Healthy, p.MinHealthy, strings.Join(sick, "; "))
			return d
		case d.Total >= p.MinRequests && d.Total > 0 && float64(d.Failed)/float64(d.Total) > p.MaxErrorRate:
			d.Reason = fmt.Sprintf("error rate %.1f%% above %.1f%%", 100*float64(d.Failed)/float64(d.Total), 100*p.MaxErrorRate)
			return d
		}
	}
	return nil
}

// SwitchOptions shape a switch.
type SwitchOptions struct {
	MinHealthy int
	// DrainTimeout bounds the wait for the old color's requests in flight.
	DrainTimeout time.Duration
	// Watch, with a non-zero Window, watches the new color and switches back if it
	// degrades (auto_rollback).
	Watch WatchPolicy
	// Persist records a route where a restarted proxy reads it (the map file on every
	// node).
	Persist func(ctx context.Context, r Route) error
	Every   time.Duration
	// FlipTimeout bounds the flip: a proxy whose set still fails then is given up on and
	// every proxy goes back to the old route (default 10s).
	FlipTimeout time.Duration
	// RollbackTimeout bounds a rollback, which runs even when ctx has ended (a cancelled
	// apply, a deadline inside the watch) (default 30s).
	RollbackTimeout time.Duration
}

func (o SwitchOptions) withDefaults() SwitchOptions {
	if o.Every <= 0 {
		o.Every = 250 * time.Millisecond
	}
	if o.FlipTimeout <= 0 {
		o.FlipTimeout = 10 * time.Second
	}
	if o.RollbackTimeout <= 0 {
		o.RollbackTimeout = 30 * time.Second
	}
	if o.Watch.Window > 0 && o.Watch.Every <= 0 {
		o.Watch.Every = o.Every
	}
	return o
}

// SwitchResult says what a switch did and how long its steps took.
type SwitchResult struct {
	From, To Route
	// Flip is how long setting the route on every proxy took.
	Flip time.Duration
	// DrainErr is set when the old color still had requests in flight at DrainTimeout.
	DrainErr error
}

// FlipError says the flip failed on some proxies, so every proxy was sent back to the
// old route; NotRestored names those that could not be, and RestoreErr says why.
type FlipError struct {
	To, Back    Route
	Cause       error
	NotRestored []string
	RestoreErr  error
}

func (e *FlipError) Error() string {
	msg := fmt.Sprintf("switching to %s failed (%v); every proxy was sent back to %s", describeRoute(e.To), e.Cause, describeRoute(e.Back))
	if e.RestoreErr != nil {
		msg += fmt.Sprintf(", except: %v", e.RestoreErr)
	}
	return msg
}

// RolledBackError says the switch happened, the new color degraded, and traffic was sent
// back to the old color on every proxy; NotRestored names the proxies that could not be
// (they converge on the next apply), RollbackErr says why.
type RolledBackError struct {
	Degradation *Degradation
	Back        Route
	NotRestored []string
	RollbackErr error
}

func (e *RolledBackError) Error() string {
	if e.RollbackErr != nil {
		return fmt.Sprintf("%s; traffic was sent back to %s, but: %v", e.Degradation, describeRoute(e.Back), e.RollbackErr)
	}
	return fmt.Sprintf("%s; traffic is back on %s", e.Degradation, describeRoute(e.Back))
}

// NoRoomError says the deadline leaves too little time for the watch and a rollback;
// nothing was changed.
type NoRoomError struct {
	Left, Need time.Duration
}

func (e *NoRoomError) Error() string {
	return fmt.Sprintf("the deadline leaves %s, but the watch window and a rollback need %s; nothing was switched",
		e.Left.Round(time.Second), e.Need.Round(time.Second))
}

// Switch moves every proxy from route from to route to: gate, persist, flip, drain,
// watch. Whatever fails, the proxies end on one route, which the result or the error
// says:
//   - a gate that fails, a deadline too close for the watch, or a map file that cannot
//     be written change nothing (*GateError, *NoRoomError, a plain error);
//   - a flip that fails on any proxy sends every proxy, the failed one included (its set
//     may have taken effect), back to from (*FlipError);
//   - a new color that degrades in the watch window, or a watch cut short, is switched
//     back (*RolledBackError).
//
// A rollback only ever moves proxies toward from, retries a proxy that fails until
// RollbackTimeout, and runs even when ctx has ended.
func Switch(ctx context.Context, health Health, proxies []Proxy, from, to Route, opts SwitchOptions) (SwitchResult, error) {
	opts = opts.withDefaults()
	res := SwitchResult{From: from, To: to}
	watching := opts.Watch.Window > 0 && to.Active != from.Active
	if deadline, ok := ctx.Deadline(); ok && watching {
		need := opts.Watch.Window + opts.FlipTimeout + opts.RollbackTimeout
		if left := time.Until(deadline); left < need {
			return res, &NoRoomError{Left: left, Need: need}
		}
	}
	if to.Active != from.Active || to.Canary > 0 {
		need, target := opts.MinHealthy, to.Active
		if to.Active == from.Active {
			// A canary needs one healthy instance of the other color.
			need, target = 1, to.Active.Other()
		}
		if err := Gate(ctx, health, proxies, target, need); err != nil {
			return res, err
		}
	}
	// The file a restarted proxy loads first, then memory: the other order could let a
	// restart in between revert the switch silently.
	if opts.Persist != nil {
		if err := opts.Persist(ctx, to); err != nil {
			restoreCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.RollbackTimeout)
			defer cancel()
			if back := opts.Persist(restoreCtx, from); back != nil {
				err = errors.Join(err, fmt.Errorf("restoring the map files to %s: %w", describeRoute(from), back))
			}
			return res, fmt.Errorf("recording the route for proxy restarts failed; nothing switched: %w", err)
		}
	}
	start := time.Now()
	flipCtx, cancel := context.WithTimeout(ctx, opts.FlipTimeout)
	err := Converge(flipCtx, proxies, to, opts.Every)
	cancel()
	if err != nil {
		notRestored, restoreErr := restore(ctx, proxies, from, opts)
		return res, &FlipError{To: to, Back: from, Cause: err, NotRestored: notRestored, RestoreErr: restoreErr}
	}
	res.Flip = time.Since(start)
	// The old color drains only when the new route sends it nothing: with a canary
	// share it keeps taking requests, and waiting would always last the whole timeout.
	if to.Active != from.Active && to.Canary == 0 && opts.DrainTimeout > 0 {
		drainCtx, cancel := context.WithTimeout(ctx, opts.DrainTimeout)
		res.DrainErr = Drain(drainCtx, proxies, from.Active, opts.Every)
		cancel()
	}
	if watching {
		err := Watch(ctx, health, proxies, to.Active, opts.Watch)
		var d *Degradation
		if errors.As(err, &d) {
			notRestored, restoreErr := restore(ctx, proxies, from, opts)
			return res, &RolledBackError{Degradation: d, Back: from, NotRestored: notRestored, RollbackErr: restoreErr}
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// restore sends every proxy back to r and records r in the map files, bounded by
// RollbackTimeout even when ctx has ended. It returns the proxies it could not move.
func restore(ctx context.Context, proxies []Proxy, r Route, opts SwitchOptions) ([]string, error) {
	restoreCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.RollbackTimeout)
	defer cancel()
	var errs []error
	var notRestored []string
	if opts.Persist != nil {
		if err := opts.Persist(restoreCtx, r); err != nil {
			errs = append(errs, fmt.Errorf("map files: %w", err))
		}
	}
	err := Converge(restoreCtx, proxies, r, opts.Every)
	var ce *ConvergeError
	if errors.As(err, &ce) {
		notRestored = ce.Names()
		errs = append(errs, fmt.Errorf("%w; they converge on the next apply once reachable", ce))
	}
	return notRestored, errors.Join(errs...)
}

// Repair brings proxies that stray from r (a switch interrupted by a failure, a proxy
// restarted from an old map) back to it within RollbackTimeout, with no gate: r is the route the state already
// records as live. It writes the map files first, like a switch.
func Repair(ctx context.Context, proxies []Proxy, r Route, opts SwitchOptions) error {
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, opts.RollbackTimeout)
	defer cancel()
	if opts.Persist != nil {
		if err := opts.Persist(ctx, r); err != nil {
			return fmt.Errorf("recording the route for proxy restarts: %w", err)
		}
	}
	return Converge(ctx, proxies, r, opts.Every)
}
