package bluegreen

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// The proxies and Consul are what these tests work around: small in-memory stand-ins
// whose state the tests set, so that the switch's decisions are what is tested.

type fakeHealth struct {
	mu        sync.Mutex
	instances map[Color][]Instance
}

func (h *fakeHealth) Instances(_ context.Context, c Color) ([]Instance, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Instance(nil), h.instances[c]...), nil
}

func (h *fakeHealth) setGreen(in ...Instance) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.instances[Green] = in
}

type fakeProxy struct {
	mu       sync.Mutex
	name     string
	route    Route
	servers  map[Color][]Instance
	counters map[Color]Counters
	// setFault, when set, decides each set that would change the route: whether it takes
	// effect and what it returns (a timeout after HAProxy applied it is both).
	setFault func(r Route, call int) (applied bool, err error)
	// failCounters and failRoute make those reads fail while set.
	failCounters error
	failRoute    error
	sets         []Route
	calls        int
}

// failSets makes every set to a route whose color differs fail without effect.
func (p *fakeProxy) failSets(err error) {
	p.setFault = func(Route, int) (bool, error) { return false, err }
}

func (p *fakeProxy) Name() string { return p.name }
func (p *fakeProxy) Route(context.Context) (Route, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.route, p.failRoute
}

// SetRoute behaves as the HAProxy adapter: it reads the route first and changes nothing
// when it is already r.
func (p *fakeProxy) SetRoute(_ context.Context, r Route) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failRoute != nil {
		return p.failRoute
	}
	if p.route == r {
		return nil
	}
	p.sets = append(p.sets, r)
	p.calls++
	if p.setFault != nil {
		applied, err := p.setFault(r, p.calls)
		if applied {
			p.route = r
		}
		return err
	}
	p.route = r
	return nil
}
func (p *fakeProxy) Servers(_ context.Context, c Color) ([]Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.servers[c], nil
}
func (p *fakeProxy) Counters(_ context.Context, c Color) (Counters, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counters[c], p.failCounters
}
func (p *fakeProxy) add(c Color, n Counters) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.counters[c]
	cur.Requests += n.Requests
	cur.Failed += n.Failed
	cur.InFlight = n.InFlight
	p.counters[c] = cur
}

func healthy(addrs ...string) []Instance {
	var out []Instance
	for _, a := range addrs {
		out = append(out, Instance{ID: "id-" + a, Address: a, Healthy: true})
	}
	return out
}

// world is two proxies routing to blue, with three healthy instances of each color.
func world() (*fakeHealth, []*fakeProxy, []Proxy) {
	h := &fakeHealth{instances: map[Color][]Instance{
		Blue: healthy("10.0.0.1", "10.0.0.2", "10.0.0.3"), Green: healthy("10.0.1.1", "10.0.1.2", "10.0.1.3"),
	}}
	var fakes []*fakeProxy
	var proxies []Proxy
	for _, name := range []string{"node-a", "node-b"} {
		p := &fakeProxy{name: name, route: Route{Active: Blue}, counters: map[Color]Counters{},
			servers: map[Color][]Instance{Blue: h.instances[Blue], Green: h.instances[Green]}}
		fakes = append(fakes, p)
		proxies = append(proxies, p)
	}
	return h, fakes, proxies
}

func TestSwitchFlipsEveryProxy(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world()
	var persisted Route
	res, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green},
		SwitchOptions{MinHealthy: 3, Persist: func(_ context.Context, r Route) error { persisted = r; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range fakes {
		if p.route.Active != Green {
			t.Errorf("%s routes to %s", p.name, p.route.Active)
		}
	}
	if persisted.Active != Green || res.To.Active != Green {
		t.Errorf("persisted %v, result %v", persisted, res)
	}
}

func TestGateRefusesAndChangesNothing(t *testing.T) {
	t.Parallel()
	cases := map[string]func(h *fakeHealth, fakes []*fakeProxy){
		"critical in consul": func(h *fakeHealth, _ []*fakeProxy) {
			h.setGreen(append(healthy("10.0.1.1", "10.0.1.2"), Instance{ID: "id-10.0.1.3", Address: "10.0.1.3", Why: "HTTP GET /health: 503"})...)
		},
		"down in one proxy": func(_ *fakeHealth, fakes []*fakeProxy) {
			fakes[1].servers[Green] = healthy("10.0.1.1", "10.0.1.2")
		},
		"too few instances": func(h *fakeHealth, _ []*fakeProxy) { h.setGreen(healthy("10.0.1.1")...) },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h, fakes, proxies := world()
			breakIt(h, fakes)
			_, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green}, SwitchOptions{MinHealthy: 3})
			var gate *GateError
			if !errors.As(err, &gate) {
				t.Fatalf("want a gate error, got %v", err)
			}
			if name != "too few instances" && !strings.Contains(err.Error(), "10.0.1.3") {
				t.Errorf("the error does not name the unhealthy instance: %v", err)
			}
			for _, p := range fakes {
				if len(p.sets) != 0 || p.route.Active != Blue {
					t.Errorf("%s was changed: %v", p.name, p.sets)
				}
			}
		})
	}
}

func TestWatchRollsBack(t *testing.T) {
	t.Parallel()
	cases := map[string]func(h *fakeHealth, fakes []*fakeProxy){
		"instances turn critical": func(h *fakeHealth, _ []*fakeProxy) {
			h.setGreen(Instance{ID: "g1", Address: "10.0.1.1", Why: "503"}, Instance{ID: "g2", Address: "10.0.1.2", Why: "503"})
		},
		"error rate": func(_ *fakeHealth, fakes []*fakeProxy) {
			fakes[0].add(Green, Counters{Requests: 100, Failed: 30})
		},
	}
	for name, degrade := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h, fakes, proxies := world()
			var persisted []Route
			go func() {
				time.Sleep(30 * time.Millisecond)
				degrade(h, fakes)
			}()
			_, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green}, SwitchOptions{
				MinHealthy: 3,
				Persist:    func(_ context.Context, r Route) error { persisted = append(persisted, r); return nil },
				Watch:      WatchPolicy{Window: 5 * time.Second, Every: 10 * time.Millisecond, MinHealthy: 2, MaxErrorRate: 0.05, MinRequests: 20},
			})
			var back *RolledBackError
			if !errors.As(err, &back) || back.RollbackErr != nil {
				t.Fatalf("want a rollback, got %v", err)
			}
			for _, p := range fakes {
				if p.route.Active != Blue {
					t.Errorf("%s left on %s", p.name, p.route.Active)
				}
			}
			if len(persisted) != 2 || persisted[1].Active != Blue {
				t.Errorf("persisted %v, want green then blue", persisted)
			}
		})
	}
}

func TestWatchPassesAQuietWindow(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world()
	fakes[0].add(Green, Counters{Requests: 1000, Failed: 1})
	_, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green}, SwitchOptions{
		MinHealthy: 3, Watch: WatchPolicy{Window: 100 * time.Millisecond, Every: 10 * time.Millisecond, MinHealthy: 2, MaxErrorRate: 0.05, MinRequests: 20},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDrainWaitsForRequestsInFlight(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world()
	fakes[0].add(Blue, Counters{InFlight: 3})
	go func() {
		time.Sleep(50 * time.Millisecond)
		fakes[0].add(Blue, Counters{InFlight: 0})
	}()
	start := time.Now()
	res, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Green},
		SwitchOptions{MinHealthy: 3, DrainTimeout: 5 * time.Second, Every: 5 * time.Millisecond})
	if err != nil || res.DrainErr != nil {
		t.Fatal(err, res.DrainErr)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Error("returned before the old color drained")
	}
	fakes[0].add(Blue, Counters{InFlight: 1})
	res, _ = Switch(context.Background(), h, proxies, Route{Active: Green}, Route{Active: Blue},
		SwitchOptions{MinHealthy: 3, DrainTimeout: 20 * time.Millisecond, Every: 5 * time.Millisecond})
	if res.DrainErr != nil {
		t.Errorf("draining green reported blue's in-flight request: %v", res.DrainErr)
	}
}

func TestCurrentRouteNamesDisagreeingProxies(t *testing.T) {
	t.Parallel()
	_, fakes, proxies := world()
	fakes[1].route = Route{Active: Green}
	if _, err := CurrentRoute(context.Background(), proxies); err == nil || !strings.Contains(err.Error(), "node-b") {
		t.Fatalf("want an error naming node-b, got %v", err)
	}
}

func TestCanaryNeedsOneHealthyInstanceOfTheOtherColor(t *testing.T) {
	t.Parallel()
	h, fakes, proxies := world()
	h.setGreen()
	_, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Blue, Canary: 20}, SwitchOptions{MinHealthy: 3})
	var gate *GateError
	if !errors.As(err, &gate) || gate.Target != Green || gate.MinHealthy != 1 {
		t.Fatalf("want a gate error on green needing 1, got %v", err)
	}
	h.setGreen(healthy("10.0.1.1")...)
	fakes[1].servers[Green] = healthy("10.0.1.1")
	fakes[0].servers[Green] = healthy("10.0.1.1")
	if _, err := Switch(context.Background(), h, proxies, Route{Active: Blue}, Route{Active: Blue, Canary: 20}, SwitchOptions{MinHealthy: 3}); err != nil {
		t.Fatal(err)
	}
	if fakes[0].route.Canary != 20 || fakes[0].route.Active != Blue {
		t.Errorf("route %v", fakes[0].route)
	}
}

// slowProxy is a proxy whose counters and servers take d to read, as a node's socket over
// SSH does.
type slowProxy struct {
	Proxy
	d time.Duration
}

func (p slowProxy) Counters(ctx context.Context, c Color) (Counters, error) {
	time.Sleep(p.d)
	return p.Proxy.Counters(ctx, c)
}

func (p slowProxy) Servers(ctx context.Context, c Color) ([]Instance, error) {
	time.Sleep(p.d)
	return p.Proxy.Servers(ctx, c)
}

func slowProxies(fakes []*fakeProxy, d time.Duration) []Proxy {
	var proxies []Proxy
	for _, p := range fakes {
		proxies = append(proxies, slowProxy{Proxy: p, d: d})
	}
	return proxies
}

// A drain reads every proxy at once: idle proxies are seen idle in one read's time, not
// one read per proxy (a switch's drain and a delete's wait before its kill pay it).
func TestDrainReadsTheProxiesAtOnce(t *testing.T) {
	t.Parallel()
	_, fakes, _ := world()
	proxies := slowProxies(fakes, 200*time.Millisecond)
	start := time.Now()
	if err := Drain(context.Background(), proxies, Blue, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= 350*time.Millisecond {
		t.Errorf("drain of %d idle proxies took %s, one read after another", len(proxies), took.Round(time.Millisecond))
	}
}

// slowHealth is Consul taking d to answer.
type slowHealth struct {
	Health
	d time.Duration
}

func (h slowHealth) Instances(ctx context.Context, c Color) ([]Instance, error) {
	time.Sleep(h.d)
	return h.Health.Instances(ctx, c)
}

// A gate reads Consul and every proxy at once: a switch waits for the slowest read, not
// for one read per proxy after Consul's.
func TestGateReadsConsulAndTheProxiesAtOnce(t *testing.T) {
	t.Parallel()
	h, fakes, _ := world3()
	proxies := slowProxies(fakes, 200*time.Millisecond)
	start := time.Now()
	if err := Gate(context.Background(), slowHealth{Health: h, d: 200 * time.Millisecond}, proxies, Green, 3); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= 350*time.Millisecond {
		t.Errorf("a gate over Consul and %d proxies took %s, one read after another", len(proxies), took.Round(time.Millisecond))
	}
}

// A switch records its route in every node's map file at once: it waits for the slowest
// node, not for one write per node.
func TestMapFilesPersistWritesTheNodesAtOnce(t *testing.T) {
	t.Parallel()
	var nodes []ProxyNode
	var files []*slowNode
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		f := &slowNode{d: 200 * time.Millisecond, files: map[string]string{}}
		files = append(files, f)
		nodes = append(nodes, ProxyNode{Name: name, Files: f})
	}
	start := time.Now()
	if err := (MapFiles{Nodes: nodes, Path: "/srv/app/routes.map"}).Persist(context.Background(), Route{Active: Green}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= 350*time.Millisecond {
		t.Errorf("writing %d map files took %s, one after another", len(nodes), took.Round(time.Millisecond))
	}
	for i, f := range files {
		if got := f.files["/srv/app/routes.map"]; !strings.Contains(got, "green") {
			t.Errorf("%s's map file holds %q, want the green route", nodes[i].Name, got)
		}
	}
}
