package bluegreen

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Three proxies, one of which fails at one step of a switch: before, during and after
// the flip, during the watch, during the rollback. Whatever fails, every proxy that can
// be reached ends on the route the switch reports, and it is never the color being
// rolled back from.

// world3 is three proxies routing to blue, three healthy instances of each color.
func world3() (*fakeHealth, []*fakeProxy, []Proxy) {
	h, fakes, proxies := world()
	p := &fakeProxy{name: "node-c", route: Route{Active: Blue}, counters: map[Color]Counters{},
		servers: map[Color][]Instance{Blue: h.instances[Blue], Green: h.instances[Green]}}
	return h, append(fakes, p), append(proxies, p)
}

// fast keeps the tests' retries and bounds short.
func fast(o SwitchOptions) SwitchOptions {
	o.MinHealthy = 3
	o.Every = 5 * time.Millisecond
	o.FlipTimeout = 100 * time.Millisecond
	o.RollbackTimeout = 300 * time.Millisecond
	return o
}

// recorder is a Persist that remembers every route written; fail makes writing that
// route fail.
type recorder struct {
	mu      sync.Mutex
	written []Route
	fail    map[Color]error
}

func (r *recorder) persist(_ context.Context, route Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.written = append(r.written, route)
	return r.fail[route.Active]
}

func (r *recorder) last() Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.written[len(r.written)-1]
}

func routesOf(fakes []*fakeProxy) map[string]Color {
	out := map[string]Color{}
	for _, p := range fakes {
		p.mu.Lock()
		out[p.name] = p.route.Active
		p.mu.Unlock()
	}
	return out
}

func TestAFailedFlipSendsEveryProxyBack(t *testing.T) {
	t.Parallel()
	cases := map[string]func(Route, int) (bool, error){
		// The set is refused: the proxy never changed.
		"before the flip takes effect": func(Route, int) (bool, error) { return false, errors.New("admin socket closed") },
		// The set took effect but its answer was lost (a timeout), and the proxy answers
		// nothing more until after the flip's bound: it routes to green while the switch
		// cannot confirm it. It must be sent back too (set below).
		"after the flip took effect": nil,
	}
	for name, fault := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h, fakes, proxies := world3()
			fakes[1].setFault = fault
			if name == "after the flip took effect" {
				fakes[1].setFault = tookEffectThenGone(fakes[1], 150*time.Millisecond)
			}
			files := &recorder{}
			_, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green}, fast(SwitchOptions{Persist: files.persist}))
			var flip *FlipError
			if !errors.As(err, &flip) || !strings.Contains(err.Error(), "node-b") {
				t.Fatalf("want a flip error naming node-b, got %v", err)
			}
			if len(flip.NotRestored) != 0 {
				t.Errorf("not restored: %v", flip.NotRestored)
			}
			for n, c := range routesOf(fakes) {
				if c != Blue {
					t.Errorf("%s left on %s", n, c)
				}
			}
			if files.last().Active != Blue {
				t.Errorf("the map files say %v", files.last())
			}
		})
	}
}

// tookEffectThenGone applies a set to green, loses its answer, and leaves the proxy
// unreadable for gone (for ever when gone is 0).
func tookEffectThenGone(p *fakeProxy, gone time.Duration) func(Route, int) (bool, error) {
	return func(r Route, _ int) (bool, error) {
		if r.Active != Green {
			return true, nil
		}
		p.failRoute = errors.New("connection reset") // p.mu is held by SetRoute
		if gone > 0 {
			time.AfterFunc(gone, func() {
				p.mu.Lock()
				p.failRoute = nil
				p.mu.Unlock()
			})
		}
		return true, errors.New("i/o timeout")
	}
}

func TestAFlipThatFailsOnceIsRetried(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world3()
	fakes[2].setFault = func(_ Route, call int) (bool, error) {
		if call == 1 {
			return false, errors.New("EOF")
		}
		return true, nil
	}
	if _, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green}, fast(SwitchOptions{})); err != nil {
		t.Fatal(err)
	}
	for n, c := range routesOf(fakes) {
		if c != Green {
			t.Errorf("%s on %s", n, c)
		}
	}
}

func TestAFlipWhoseRestoreFailsNamesTheProxy(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world3()
	// node-b takes green, then stops answering: it can be neither confirmed nor restored.
	fakes[1].setFault = tookEffectThenGone(fakes[1], 0)
	_, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green}, fast(SwitchOptions{}))
	var flip *FlipError
	if !errors.As(err, &flip) || !slices.Equal(flip.NotRestored, []string{"node-b"}) {
		t.Fatalf("want a flip error with node-b not restored, got %v", err)
	}
	got := routesOf(fakes)
	if got["node-a"] != Blue || got["node-c"] != Blue {
		t.Errorf("the proxies that answer are not back on blue: %v", got)
	}
}

func TestAFailedMapFileChangesNothing(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world3()
	files := &recorder{fail: map[Color]error{Green: errors.New("disk full")}}
	_, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green}, fast(SwitchOptions{Persist: files.persist}))
	if err == nil || !strings.Contains(err.Error(), "nothing switched") {
		t.Fatalf("want nothing switched, got %v", err)
	}
	for _, p := range fakes {
		if len(p.sets) != 0 {
			t.Errorf("%s was set: %v", p.name, p.sets)
		}
	}
	if files.last().Active != Blue {
		t.Errorf("the map files were left at %v", files.last())
	}
}

// degradeGreen makes green's instances critical in Consul shortly after the switch.
func degradeGreen(h *fakeHealth) {
	go func() {
		time.Sleep(30 * time.Millisecond)
		h.setGreen(Instance{ID: "g1", Address: "10.0.1.1", Why: "503"}, Instance{ID: "g2", Address: "10.0.1.2", Why: "503"})
	}()
}

var watch = WatchPolicy{Window: 5 * time.Second, Every: 5 * time.Millisecond, MinHealthy: 2, MaxErrorRate: 0.05, MinRequests: 20}

func TestARollbackThatFailsOnOneProxyKeepsTheOthersOnTheOldColor(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		fault       func(Route, int) (bool, error)
		notRestored []string
	}{
		// node-b's restore never works: the others must stay on blue, not be put back
		// on the green that degraded.
		"for good": {fault: func(r Route, _ int) (bool, error) {
			if r.Active == Blue {
				return false, errors.New("connection refused")
			}
			return true, nil
		}, notRestored: []string{"node-b"}},
		// node-b's first restore fails: it is retried and converges.
		"once": {fault: func(r Route, call int) (bool, error) {
			if r.Active == Blue && call == 2 {
				return false, errors.New("EOF")
			}
			return true, nil
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h, fakes, proxies := world3()
			fakes[1].setFault = tc.fault
			files := &recorder{}
			degradeGreen(h)
			_, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green}, fast(SwitchOptions{Persist: files.persist, Watch: watch}))
			var back *RolledBackError
			if !errors.As(err, &back) {
				t.Fatalf("want a rollback, got %v", err)
			}
			if !slices.Equal(back.NotRestored, tc.notRestored) {
				t.Errorf("not restored %v, want %v", back.NotRestored, tc.notRestored)
			}
			for n, c := range routesOf(fakes) {
				if c != Blue && !slices.Contains(tc.notRestored, n) {
					t.Errorf("%s routes to %s after the rollback", n, c)
				}
			}
			if files.last().Active != Blue {
				t.Errorf("the map files say %v", files.last())
			}
		})
	}
}

func TestTheWatchSurvivesAProxyItCannotRead(t *testing.T) {
	t.Parallel()
	cases := map[string]func(fakes []*fakeProxy){
		// Counters unreadable when the watch starts, then readable: its baseline is
		// taken late, and the watch goes on.
		"at the start": func(fakes []*fakeProxy) {
			fakes[0].mu.Lock()
			fakes[0].failCounters = errors.New("EOF")
			fakes[0].mu.Unlock()
			go func() {
				time.Sleep(20 * time.Millisecond)
				fakes[0].mu.Lock()
				fakes[0].failCounters = nil
				fakes[0].mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				fakes[0].add(Green, Counters{Requests: 100, Failed: 40})
			}()
		},
		// One proxy dead for the whole window: the others' error rate still counts.
		"for good": func(fakes []*fakeProxy) {
			fakes[2].mu.Lock()
			fakes[2].failCounters = errors.New("connection refused")
			fakes[2].mu.Unlock()
			go func() {
				time.Sleep(30 * time.Millisecond)
				fakes[0].add(Green, Counters{Requests: 100, Failed: 40})
			}()
		},
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h, fakes, proxies := world3()
			breakIt(fakes)
			_, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green}, fast(SwitchOptions{Watch: watch}))
			var back *RolledBackError
			if !errors.As(err, &back) || !strings.Contains(err.Error(), "error rate") {
				t.Fatalf("want a rollback on the error rate, got %v", err)
			}
			for n, c := range routesOf(fakes) {
				if c != Blue {
					t.Errorf("%s left on %s", n, c)
				}
			}
		})
	}
}

func TestAWatchCutShortRollsBack(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world3()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel() // terraform interrupted inside the window
	}()
	_, err := Switch(ctx, h, proxies, Route{Active: Blue}, Route{Active: Green}, fast(SwitchOptions{Watch: watch}))
	var back *RolledBackError
	if !errors.As(err, &back) || back.RollbackErr != nil {
		t.Fatalf("want a clean rollback, got %v", err)
	}
	for n, c := range routesOf(fakes) {
		if c != Blue {
			t.Errorf("%s left on %s", n, c)
		}
	}
}

func TestADeadlineInsideTheWatchWindowChangesNothing(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world3()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := Switch(ctx, h, proxies, Route{Active: Blue}, Route{Active: Green}, fast(SwitchOptions{Watch: watch}))
	var room *NoRoomError
	if !errors.As(err, &room) {
		t.Fatalf("want a no-room error, got %v", err)
	}
	for _, p := range fakes {
		if len(p.sets) != 0 {
			t.Errorf("%s was set: %v", p.name, p.sets)
		}
	}
}

func TestACanarySwitchDoesNotWaitForTheOldColorToDrain(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world3()
	// Blue keeps taking its canary share, so it always has requests in flight.
	fakes[0].add(Blue, Counters{InFlight: 2})
	start := time.Now()
	res, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green, Canary: 10},
		fast(SwitchOptions{DrainTimeout: 5 * time.Second}))
	if err != nil || res.DrainErr != nil {
		t.Fatal(err, res.DrainErr)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the switch waited %s for a color that keeps its canary share", took)
	}
}

func TestRepairConvergesStrays(t *testing.T) {
	t.Parallel()
	_, fakes, proxies := world3()
	fakes[2].route = Route{Active: Green}
	s := Summarise(context.Background(), proxies)
	if s.OK || !slices.Equal(s.Stray, []string{"node-c"}) {
		t.Fatalf("summary %+v", s)
	}
	files := &recorder{}
	if err := Repair(context.Background(), proxies, Route{Active: Blue}, fast(SwitchOptions{Persist: files.persist})); err != nil {
		t.Fatal(err)
	}
	for n, c := range routesOf(fakes) {
		if c != Blue {
			t.Errorf("%s on %s", n, c)
		}
	}
	if s := Summarise(context.Background(), proxies); !s.OK || s.Agreed.Active != Blue {
		t.Errorf("after repair: %+v", s)
	}
}

func TestAFlipInterruptedSendsEveryProxyBack(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world3()
	ctx, cancel := context.WithCancel(context.Background())
	// node-c's set hangs; terraform is interrupted while it does (SIGINT cancels ctx).
	fakes[2].setFault = func(r Route, _ int) (bool, error) {
		if r.Active != Green {
			return true, nil
		}
		cancel()
		return false, context.Canceled
	}
	_, err := Switch(ctx, h, proxies, Route{Active: Blue}, Route{Active: Green}, fast(SwitchOptions{}))
	var flip *FlipError
	if !errors.As(err, &flip) || len(flip.NotRestored) != 0 {
		t.Fatalf("want a flip error with every proxy restored, got %v", err)
	}
	for n, c := range routesOf(fakes) {
		if c != Blue {
			t.Errorf("%s left on %s after the interrupt", n, c)
		}
	}
}
