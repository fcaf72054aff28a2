package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// ConvergeError names the proxies that are not known to route as Route: their set failed
// on every try until the deadline. Every other proxy routes as Route.
type ConvergeError struct {
	Route  Route
	Failed map[string]error
}

func (e *ConvergeError) Error() string {
	names := e.Names()
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s: %v", n, e.Failed[n])
	}
	return fmt.Sprintf("%d proxies not routed to %s: %s", len(names), describeRoute(e.Route), strings.Join(parts, "; "))
}

// Names are the proxies that failed, sorted.
func (e *ConvergeError) Names() []string {
	var names []string
	for n := range e.Failed {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func describeRoute(r Route) string {
	if r.Canary > 0 {
		return fmt.Sprintf("%s (canary %d%% to %s)", r.Active, r.Canary, r.Active.Other())
	}
	return string(r.Active)
}

// Converge sets r on every proxy at once, so they change within one round trip of each
// other, and retries a proxy whose set failed every `every` until ctx ends. A set that
// failed may still have taken effect (a timeout after HAProxy applied it): a retry reads
// the route back first, so it converges either way. Converge only ever moves a proxy
// toward r, never back to where it was: undoing the proxies that did change is what made
// a failed rollback route everyone to the color being rolled back from. The error
// (*ConvergeError) names the proxies not known to route as r.
func Converge(ctx context.Context, proxies []Proxy, r Route, every time.Duration) error {
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	errs := make([]error, len(proxies))
	var wg sync.WaitGroup
	for i, p := range proxies {
		wg.Go(func() {
			for {
				errs[i] = p.SetRoute(ctx, r)
				if errs[i] == nil {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(every):
				}
			}
		})
	}
	wg.Wait()
	failed := map[string]error{}
	for i, p := range proxies {
		if errs[i] != nil {
			failed[p.Name()] = errs[i]
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &ConvergeError{Route: r, Failed: failed}
}

// ProxyRoute is one proxy's route as read, or why it could not be read.
type ProxyRoute struct {
	Proxy string
	Route Route
	Err   error
}

// ReadRoutes asks every proxy for its route, at once.
func ReadRoutes(ctx context.Context, proxies []Proxy) []ProxyRoute {
	out := make([]ProxyRoute, len(proxies))
	var wg sync.WaitGroup
	for i, p := range proxies {
		wg.Go(func() {
			r, err := p.Route(ctx)
			out[i] = ProxyRoute{Proxy: p.Name(), Route: r, Err: err}
		})
	}
	wg.Wait()
	return out
}

// Routes summarises what the proxies said: Agreed is the route every proxy that answered
// has (ok false when they disagree or none answered); Unread names the proxies that did
// not answer, Stray those whose route differs from the first answer.
type Routes struct {
	Read   []ProxyRoute
	Agreed Route
	OK     bool
	Unread []string
	Stray  []string
}

// Summarise reads the routes of every proxy and says whether they agree.
func Summarise(ctx context.Context, proxies []Proxy) Routes {
	var s Routes
	s.Read = ReadRoutes(ctx, proxies)
	first := true
	for _, pr := range s.Read {
		switch {
		case pr.Err != nil:
			s.Unread = append(s.Unread, pr.Proxy)
		case first:
			s.Agreed, s.OK, first = pr.Route, true, false
		case pr.Route != s.Agreed:
			s.Stray = append(s.Stray, pr.Proxy)
			s.OK = false
		}
	}
	return s
}

// Describe says which proxy routes where, for a diagnostic.
func (s Routes) Describe() string {
	parts := make([]string, 0, len(s.Read))
	for _, pr := range s.Read {
		if pr.Err != nil {
			parts = append(parts, fmt.Sprintf("%s: unreadable (%v)", pr.Proxy, pr.Err))
		} else {
			parts = append(parts, fmt.Sprintf("%s: %s", pr.Proxy, describeRoute(pr.Route)))
		}
	}
	return strings.Join(parts, "; ")
}

// CurrentRoute is the route the proxies agree on; proxies that disagree (a switch made
// out of band on one of them, a restarted proxy that read an old map) or that cannot be
// read are an error that names them.
func CurrentRoute(ctx context.Context, proxies []Proxy) (Route, error) {
	if len(proxies) == 0 {
		return Route{}, errors.New("no proxy to ask")
	}
	s := Summarise(ctx, proxies)
	if len(s.Unread) == 0 && s.OK {
		return s.Agreed, nil
	}
	return s.Agreed, fmt.Errorf("proxies disagree or cannot be read: %s", s.Describe())
}
