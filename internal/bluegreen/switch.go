// Package bluegreen decides and carries out a blue/green switch: gate the target color
// on Consul's health and on every proxy's own checks, flip every proxy's routing map,
// let the old color's requests drain, and watch the new color for a window, switching
// back if it degrades. The proxies and Consul are reached through small interfaces, so
// the decision logic is tested on its own; internal/haproxy and Consul implement them.
package bluegreen

import (
	"context"
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
// every proxy also has up. Consul and every proxy are read at once: each read is a round
// trip to a node, and a switch waits for the slowest, not for their sum.
func Gate(ctx context.Context, health Health, proxies []Proxy, c Color, minHealthy int) error {
	var instances []Instance
	var healthErr error
	servers, errs := make([][]Instance, len(proxies)), make([]error, len(proxies))
	var wg sync.WaitGroup
	wg.Go(func() { instances, healthErr = health.Instances(ctx, c) })
	for i, p := range proxies {
		wg.Go(func() { servers[i], errs[i] = p.Servers(ctx, c) })
	}
	wg.Wait()
	if healthErr != nil {
		return fmt.Errorf("consul health of %s: %w", c, healthErr)
	}
	gate := &GateError{Target: c, MinHealthy: minHealthy}
	up := map[string]int{}
	for i, p := range proxies {
		if errs[i] != nil {
			return fmt.Errorf("proxy %s: %w", p.Name(), errs[i])
		}
		for _, s := range servers[i] {
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

// Drain waits until no proxy holds requests in flight to color c (bounded by ctx).
func Drain(ctx context.Context, proxies []Proxy, c Color, every time.Duration) error {
	for {
		// Every proxy at once: each read is a round trip to its node.
		counts, errs := make([]Counters, len(proxies)), make([]error, len(proxies))
		var wg sync.WaitGroup
		for i, p := range proxies {
			wg.Go(func() { counts[i], errs[i] = p.Counters(ctx, c) })
		}
		wg.Wait()
		var busy int64
		for i, p := range proxies {
			if errs[i] != nil {
				return fmt.Errorf("proxy %s: %w", p.Name(), errs[i])
			}
			busy += counts[i].InFlight
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
