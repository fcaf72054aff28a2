// Package bluegreen decides and carries out a blue/green switch: gate the target color
// on Consul's health and on every proxy's own checks, flip every proxy's routing map,
// let the old color's requests drain, and watch the new color for a window, switching
// back if it degrades. The proxies and Consul are reached through small interfaces, so
// the decision logic is tested on its own; internal/haproxy and Consul implement them.
package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/haproxy"
)

// Color is one of the two deployments of a service: the proxy's own notion of it, so
// routes pass to HAProxy without conversion.
type Color = haproxy.Color

const (
	Blue  = haproxy.Blue
	Green = haproxy.Green
)

// Colors lists the colors, for validators and docs.
var Colors = haproxy.Colors

// Route is what a proxy sends where: every request to Active, except Canary percent of
// them to the other color.
type Route struct {
	Active Color
	Canary int
}

// Instance is one instance of a color as a health source sees it.
type Instance struct {
	ID, Address string
	Healthy     bool
	// Why says what is wrong with an unhealthy instance (check output, server status).
	Why string
}

// Health is Consul's view of a color's instances.
type Health interface {
	Instances(ctx context.Context, c Color) ([]Instance, error)
}

// Proxy is one proxy instance (one HAProxy per node).
type Proxy interface {
	Name() string
	Route(ctx context.Context) (Route, error)
	SetRoute(ctx context.Context, r Route) error
	// Servers is the proxy's own view of a color's backend servers.
	Servers(ctx context.Context, c Color) ([]Instance, error)
	// Counters are the color's backend totals since the proxy started: requests and
	// responses that failed (5xx or connection errors), and sessions in flight.
	Counters(ctx context.Context, c Color) (Counters, error)
}

// Counters are a backend's request totals.
type Counters struct {
	Requests, Failed, InFlight int64
}

// GateError says the target color is not healthy enough to take traffic; nothing was
// changed.
type GateError struct {
	Target     Color
	MinHealthy int
	// Healthy counts instances passing in Consul and up in every proxy.
	Healthy   int
	Unhealthy []string
}

func (e *GateError) Error() string {
	msg := fmt.Sprintf("%s has %d healthy instances, %d required", e.Target, e.Healthy, e.MinHealthy)
	if len(e.Unhealthy) > 0 {
		msg += "; unhealthy: " + strings.Join(e.Unhealthy, "; ")
	}
	return msg + ". Traffic stays where it was."
}

// Gate checks that color c has at least minHealthy instances passing in Consul that
// every proxy also has up.
func Gate(ctx context.Context, health Health, proxies []Proxy, c Color, minHealthy int) error {
	instances, err := health.Instances(ctx, c)
	if err != nil {
		return fmt.Errorf("consul health of %s: %w", c, err)
	}
	gate := &GateError{Target: c, MinHealthy: minHealthy}
	up := map[string]int{}
	for _, p := range proxies {
		servers, err := p.Servers(ctx, c)
		if err != nil {
			return fmt.Errorf("proxy %s: %w", p.Name(), err)
		}
		for _, s := range servers {
			if s.Healthy {
				up[s.Address]++
			}
		}
	}
	for _, in := range instances {
		switch {
		case !in.Healthy:
			gate.Unhealthy = append(gate.Unhealthy, fmt.Sprintf("%s (%s): consul: %s", in.ID, in.Address, in.Why))
		case up[in.Address] < len(proxies):
			gate.Unhealthy = append(gate.Unhealthy, fmt.Sprintf("%s (%s): up in %d of %d proxies", in.ID, in.Address, up[in.Address], len(proxies)))
		default:
			gate.Healthy++
		}
	}
	slices.Sort(gate.Unhealthy)
	if gate.Healthy < minHealthy {
		return gate
	}
	return nil
}

// SetRoutes sets r on every proxy at once, so they flip within one round trip of each
// other. On a failure it puts the proxies that had changed back to was and reports it.
func SetRoutes(ctx context.Context, proxies []Proxy, r, was Route) error {
	errs := make([]error, len(proxies))
	var wg sync.WaitGroup
	for i, p := range proxies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.SetRoute(ctx, r)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err == nil {
		return nil
	}
	var failed []string
	for i, p := range proxies {
		if errs[i] != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", p.Name(), errs[i]))
			continue
		}
		if err := p.SetRoute(context.WithoutCancel(ctx), was); err != nil {
			failed = append(failed, fmt.Sprintf("%s: could not restore %s: %v", p.Name(), was.Active, err))
		}
	}
	return fmt.Errorf("switching to %s failed, routing restored to %s: %s", r.Active, was.Active, strings.Join(failed, "; "))
}

// Drain waits until no proxy holds requests in flight to color c (bounded by ctx).
func Drain(ctx context.Context, proxies []Proxy, c Color, every time.Duration) error {
	for {
		var busy int64
		for _, p := range proxies {
			n, err := p.Counters(ctx, c)
			if err != nil {
				return fmt.Errorf("proxy %s: %w", p.Name(), err)
			}
			busy += n.InFlight
		}
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d requests to %s still in flight: %w", busy, c, ctx.Err())
		case <-time.After(every):
		}
	}
}

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
// above MaxErrorRate; nil when the window passes.
func Watch(ctx context.Context, health Health, proxies []Proxy, c Color, p WatchPolicy) error {
	start := time.Now()
	base, err := sum(ctx, proxies, c)
	if err != nil {
		return err
	}
	for time.Since(start) < p.Window {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(p.Every):
		}
		instances, err := health.Instances(ctx, c)
		if err != nil {
			continue // a Consul hiccup is not the new color's fault
		}
		healthy := 0
		var sick []string
		for _, in := range instances {
			if in.Healthy {
				healthy++
			} else {
				sick = append(sick, in.ID+": "+in.Why)
			}
		}
		now, err := sum(ctx, proxies, c)
		if err != nil {
			continue
		}
		total, failed := now.Requests-base.Requests, now.Failed-base.Failed
		d := &Degradation{Color: c, After: time.Since(start), Healthy: healthy, Failed: failed, Total: total}
		switch {
		case healthy < p.MinHealthy:
			d.Reason = fmt.Sprintf("%d healthy instances, below %d (%s)", healthy, p.MinHealthy, strings.Join(sick, "; "))
			return d
		case total >= p.MinRequests && total > 0 && float64(failed)/float64(total) > p.MaxErrorRate:
			d.Reason = fmt.Sprintf("error rate %.1f%% above %.1f%%", 100*float64(failed)/float64(total), 100*p.MaxErrorRate)
			return d
		}
	}
	return nil
}

func sum(ctx context.Context, proxies []Proxy, c Color) (Counters, error) {
	var total Counters
	for _, p := range proxies {
		n, err := p.Counters(ctx, c)
		if err != nil {
			return total, fmt.Errorf("proxy %s: %w", p.Name(), err)
		}
		total.Requests += n.Requests
		total.Failed += n.Failed
		total.InFlight += n.InFlight
	}
	return total, nil
}

// SwitchOptions shape a switch.
type SwitchOptions struct {
	MinHealthy int
	// DrainTimeout bounds the wait for the old color's requests in flight.
	DrainTimeout time.Duration
	// Watch, with a non-zero Window, watches the new color and switches back if it
	// degrades (auto_rollback).
	Watch WatchPolicy
	// Persist records the new route where a restarted proxy reads it.
	Persist func(ctx context.Context, r Route) error
	Every   time.Duration
}

// SwitchResult says what a switch did and how long its steps took.
type SwitchResult struct {
	From, To Route
	// Flip is how long setting the route on every proxy took.
	Flip time.Duration
	// DrainErr is set when the old color still had requests in flight at DrainTimeout.
	DrainErr error
}

// RolledBackError says the switch happened, the new color degraded, and traffic is back
// on the old color.
type RolledBackError struct {
	Degradation *Degradation
	Back        Route
	// RollbackErr is set when switching back failed too.
	RollbackErr error
}

func (e *RolledBackError) Error() string {
	if e.RollbackErr != nil {
		return fmt.Sprintf("%s; switching back to %s FAILED: %v", e.Degradation, e.Back.Active, e.RollbackErr)
	}
	return fmt.Sprintf("%s; traffic is back on %s", e.Degradation, e.Back.Active)
}

// CurrentRoute is the route the proxies agree on; proxies that disagree (a switch made
// out of band on one of them, a restarted proxy that read an old map) are an error that
// names them.
func CurrentRoute(ctx context.Context, proxies []Proxy) (Route, error) {
	if len(proxies) == 0 {
		return Route{}, errors.New("no proxy to ask")
	}
	routes := make([]Route, len(proxies))
	for i, p := range proxies {
		r, err := p.Route(ctx)
		if err != nil {
			return Route{}, fmt.Errorf("proxy %s: %w", p.Name(), err)
		}
		routes[i] = r
	}
	for i, r := range routes {
		if r != routes[0] {
			return routes[0], fmt.Errorf("proxies disagree: %s routes to %s (canary %d), %s to %s (canary %d)",
				proxies[0].Name(), routes[0].Active, routes[0].Canary, proxies[i].Name(), r.Active, r.Canary)
		}
	}
	return routes[0], nil
}

// Switch moves every proxy to route to: gate, flip, persist, drain, watch. A gate that
// fails changes nothing (*GateError); a new color that degrades in the watch window is
// switched back (*RolledBackError).
func Switch(ctx context.Context, health Health, proxies []Proxy, from, to Route, opts SwitchOptions) (SwitchResult, error) {
	res := SwitchResult{From: from, To: to}
	every := opts.Every
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	if to.Active != from.Active || to.Canary > 0 {
		need := opts.MinHealthy
		if to.Active == from.Active {
			need = 1 // a canary needs one healthy instance of the other color
		}
		target := to.Active
		if to.Active == from.Active {
			target = to.Active.Other()
		}
		if err := Gate(ctx, health, proxies, target, need); err != nil {
			return res, err
		}
	}
	// The file a restarted proxy loads first, then memory: the other order could let a
	// reload in between revert the switch silently.
	if opts.Persist != nil {
		if err := opts.Persist(ctx, to); err != nil {
			_ = opts.Persist(context.WithoutCancel(ctx), from)
			return res, fmt.Errorf("recording the route for proxy restarts failed; nothing switched: %w", err)
		}
	}
	start := time.Now()
	if err := SetRoutes(ctx, proxies, to, from); err != nil {
		if opts.Persist != nil {
			_ = opts.Persist(context.WithoutCancel(ctx), from)
		}
		return res, err
	}
	res.Flip = time.Since(start)
	if to.Active != from.Active && opts.DrainTimeout > 0 {
		drainCtx, cancel := context.WithTimeout(ctx, opts.DrainTimeout)
		res.DrainErr = Drain(drainCtx, proxies, from.Active, every)
		cancel()
	}
	if opts.Watch.Window > 0 && to.Active != from.Active {
		policy := opts.Watch
		if policy.Every <= 0 {
			policy.Every = every
		}
		err := Watch(ctx, health, proxies, to.Active, policy)
		var d *Degradation
		if errors.As(err, &d) {
			back := &RolledBackError{Degradation: d, Back: from}
			if opts.Persist != nil {
				back.RollbackErr = opts.Persist(context.WithoutCancel(ctx), from)
			}
			if err := SetRoutes(context.WithoutCancel(ctx), proxies, from, to); err != nil {
				back.RollbackErr = errors.Join(back.RollbackErr, err)
			}
			return res, back
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}
