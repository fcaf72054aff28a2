package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every run here is bounded by a count and a few seconds, and goes to httptest servers,
// which listen on loopback only.

// demoApp stands in for the demo app: `GET /` answers its version and color as JSON.
// fail, when set, may answer request n (from 1) itself instead.
type demoApp struct {
	version atomic.Value // string
	color   atomic.Value // string
	hits    atomic.Int64
	conns   atomic.Int64
	fail    func(n int64, w http.ResponseWriter, r *http.Request) bool
	onHit   func(n int64) // called before answering request n
}

func startDemo(t *testing.T, app *demoApp) *httptest.Server {
	t.Helper()
	if app.version.Load() == nil {
		app.version.Store("1.0.0")
		app.color.Store("blue")
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := app.hits.Add(1)
		if app.onHit != nil {
			app.onHit(n)
		}
		if app.fail != nil && app.fail(n, w, r) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		version, _ := app.version.Load().(string)
		color, _ := app.color.Load().(string)
		_ = json.NewEncoder(w).Encode(map[string]string{"version": version, "color": color, "hostname": "test"})
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			app.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// pause holds a request for d, or until its client gives up.
func pause(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

func TestStartRefuses(t *testing.T) {
	t.Parallel()
	good := Options{Targets: []string{"http://127.0.0.1:1"}, MaxRequests: 1, MaxDuration: time.Second}
	tests := map[string]struct {
		change func(*Options)
		want   string
	}{
		"no targets":          {func(o *Options) { o.Targets = nil }, "no targets"},
		"not a URL":           {func(o *Options) { o.Targets = []string{"127.0.0.1:80"} }, "not an http(s) base URL"},
		"no max requests":     {func(o *Options) { o.MaxRequests = 0 }, "max requests must be set"},
		"no max duration":     {func(o *Options) { o.MaxDuration = 0 }, "max duration must be set"},
		"negative rate":       {func(o *Options) { o.Rate = -1 }, "rate -1 is negative"},
		"negative clients":    {func(o *Options) { o.Concurrency = -1 }, "concurrency -1 is negative"},
		"negative timeout":    {func(o *Options) { o.RequestTimeout = -time.Second }, "request timeout -1s is negative"},
		"relative path":       {func(o *Options) { o.Path = "health" }, `path "health" does not start with /`},
		"several faults told": {func(o *Options) { o.MaxRequests, o.MaxDuration = 0, 0 }, "max duration must be set"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := good
			tt.change(&o)
			_, err := Start(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestFailures runs 100 requests against servers that fail some of them in known ways,
// and checks every failure is counted under its class.
func TestFailures(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		fail       func(n int64, w http.ResponseWriter, r *http.Request) bool
		opts       Options
		wantFailed int
		wantErrors map[string]int // classes with these counts; others may exist only if wantFailed allows
		check      func(t *testing.T, rep Report)
	}{
		"healthy": {
			wantErrors: map[string]int{},
			check: func(t *testing.T, rep Report) {
				if rep.ByVersion["1.0.0"] != 100 || rep.Share("blue") != 1 {
					t.Errorf("versions %v, blue share %g", rep.ByVersion, rep.Share("blue"))
				}
			},
		},
		"status and body faults": {
			fail: func(n int64, w http.ResponseWriter, r *http.Request) bool {
				switch n % 10 {
				case 0:
					http.Error(w, "no server available", http.StatusServiceUnavailable)
				case 5:
					_, _ = w.Write([]byte("<html>not json</html>"))
				case 7:
					_, _ = w.Write([]byte(`{"color":"blue"}`))
				case 8:
					http.Redirect(w, r, "/elsewhere", http.StatusFound)
				default:
					return false
				}
				return true
			},
			wantFailed: 40,
			wantErrors: map[string]int{
				"HTTP 503": 10, "HTTP 302": 10, "bad body: no version or color": 10,
				"bad body: invalid character '<' looking for beginning of value": 10,
			},
			check: func(t *testing.T, rep Report) {
				// The first failures are described in full, each with the answer's body
				// (which kinds come first depends on the clients' scheduling).
				if len(rep.Examples) != maxExamples {
					t.Errorf("examples %q: want %d", rep.Examples, maxExamples)
				}
				for _, e := range rep.Examples {
					body := map[string]string{"HTTP 503": "no server available", "HTTP 302": "Found", "invalid character": "<html>not json</html>", "no version or color": `{"color":"blue"}`}
					for kind, want := range body {
						if strings.Contains(e, kind) && !strings.Contains(e, want) {
							t.Errorf("example %q: a %s without its body %q", e, kind, want)
						}
					}
				}
			},
		},
		"connection dropped": {
			// Without keep-alive no request rides a reused connection, which the
			// transport would retry on its own; so every drop is seen.
			opts:       Options{DisableKeepAlive: true},
			fail:       dropEveryFourth,
			wantFailed: 25,
			wantErrors: map[string]int{"EOF": 25},
		},
		"slow, some beyond the timeout": {
			opts: Options{RequestTimeout: 500 * time.Millisecond},
			fail: func(n int64, _ http.ResponseWriter, r *http.Request) bool {
				if n%10 == 0 {
					pause(r, 5*time.Second)
					return true
				}
				pause(r, 20*time.Millisecond)
				return false
			},
			wantFailed: 10,
			wantErrors: map[string]int{"timeout": 10},
			check: func(t *testing.T, rep Report) {
				if rep.Latency.P50 < 20*time.Millisecond || rep.Latency.Max >= 500*time.Millisecond {
					t.Errorf("latency %+v: want p50 >= 20ms (the pause), max < 500ms (timeouts are not successes)", rep.Latency)
				}
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startDemo(t, &demoApp{fail: tt.fail})
			o := tt.opts
			o.Targets = []string{srv.URL}
			o.Concurrency, o.MaxRequests, o.MaxDuration = 4, 100, 20*time.Second
			run, err := Start(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			rep := run.Wait()
			t.Log(rep)
			if rep.Requests != 100 || rep.Failed != tt.wantFailed || rep.Abandoned != 0 {
				t.Fatalf("requests %d failed %d abandoned %d; want 100, %d, 0; errors %v",
					rep.Requests, rep.Failed, rep.Abandoned, tt.wantFailed, rep.Errors)
			}
			if rep.Retried != 0 {
				t.Fatalf("%d requests retried: each failure here must be seen", rep.Retried)
			}
			if len(rep.Errors) != len(tt.wantErrors) {
				t.Fatalf("errors %v, want %v", rep.Errors, tt.wantErrors)
			}
			for class, n := range tt.wantErrors {
				if rep.Errors[class] != n {
					t.Fatalf("errors %v, want %v", rep.Errors, tt.wantErrors)
				}
			}
			if tt.check != nil {
				tt.check(t, rep)
			}
		})
	}
}

// TestRetriedCounted drops every 4th request's connection with keep-alive on: the
// transport resends some (those on reused connections), and each drop must show up as
// either a retry or a failure.
func TestRetriedCounted(t *testing.T) {
	t.Parallel()
	app := &demoApp{fail: dropEveryFourth}
	srv := startDemo(t, app)
	run, err := Start(context.Background(), Options{Targets: []string{srv.URL}, Concurrency: 4, MaxRequests: 100, MaxDuration: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rep := run.Wait()
	t.Log(rep)
	resent := 0
	for _, r := range rep.Results {
		resent += r.Retries
	}
	hits := int(app.hits.Load())
	if rep.Requests != 100 || hits != rep.Requests+resent || hits/4 != resent+rep.Failed || rep.Retried == 0 {
		t.Fatalf("server hits %d, requests %d, resent %d times (%d requests), failed %d: want hits = requests + resends, hits/4 = resends + failed, some resent",
			hits, rep.Requests, resent, rep.Retried, rep.Failed)
	}
}

// TestSwitch switches the server's version while the load runs, once after the mark
// (as a blue/green switch does) and once before it (which the report must catch).
func TestSwitch(t *testing.T) {
	t.Parallel()
	const switchAt = 100
	tests := map[string]struct {
		markFirst bool
		wantErr   bool
	}{
		"mark, then switch": {markFirst: true},
		"switch, then mark": {wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reached, later := make(chan struct{}), make(chan struct{})
			app := &demoApp{onHit: func(n int64) {
				switch n {
				case switchAt:
					close(reached)
				case switchAt + 50:
					close(later)
				}
			}}
			srv := startDemo(t, app)
			run, err := Start(context.Background(), Options{
				Targets: []string{srv.URL}, Concurrency: 4, MaxRequests: 400, MaxDuration: 20 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			<-reached
			if tt.markFirst {
				run.Mark("switch-start")
			}
			app.color.Store("green")
			app.version.Store("2.0.0")
			if !tt.markFirst {
				// Request switchAt+50 was sent after its client had read the answer
				// before it, so at least 46 answers of 2.0.0 ended before this mark.
				<-later
				run.Mark("switch-start")
			}
			rep := run.Wait()
			t.Log(rep)
			if rep.Requests != 400 || rep.Failed != 0 {
				t.Fatalf("requests %d failed %d, want 400 and 0", rep.Requests, rep.Failed)
			}
			err = rep.ChangedOnlyAfter("switch-start", "1.0.0", "2.0.0")
			if (err != nil) != tt.wantErr {
				t.Fatalf("ChangedOnlyAfter: %v, want error: %v", err, tt.wantErr)
			}
			if !tt.markFirst {
				return
			}
			if d, ok := rep.FirstAfter("switch-start", "2.0.0"); !ok || d <= 0 {
				t.Errorf("FirstAfter: %s, %v", d, ok)
			}
			if _, ok := rep.LastBefore("switch-start", "1.0.0"); !ok {
				t.Error("LastBefore: no 1.0.0 before the mark")
			}
			before, err := rep.VersionsBetween(MarkStart, "switch-start")
			if err != nil || before["2.0.0"] != 0 || before["1.0.0"] < switchAt-4 {
				t.Errorf("before the switch: %v, %v", before, err)
			}
			if rep.ByVersion["1.0.0"]+rep.ByVersion["2.0.0"] != 400 || rep.Share("green") < 0.5 {
				t.Errorf("versions %v, green share %g", rep.ByVersion, rep.Share("green"))
			}
		})
	}
}

// TestBounds checks each way a run ends.
func TestBounds(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		opts  Options
		slow  time.Duration // per request
		ctx   func() (context.Context, context.CancelFunc)
		stop  bool // Stop after 20 requests
		check func(t *testing.T, rep Report, hits int64)
	}{
		"max requests": {
			opts: Options{MaxRequests: 50, MaxDuration: 20 * time.Second},
			check: func(t *testing.T, rep Report, hits int64) {
				if rep.Requests != 50 || hits != 50 {
					t.Errorf("requests %d, server hits %d; want 50", rep.Requests, hits)
				}
			},
		},
		"max duration": {
			opts: Options{MaxRequests: 1_000_000, MaxDuration: 300 * time.Millisecond},
			slow: 5 * time.Millisecond,
			check: func(t *testing.T, rep Report, _ int64) {
				if rep.Duration < 300*time.Millisecond || rep.Duration > 3*time.Second || rep.Requests >= 1_000_000 {
					t.Errorf("duration %s with %d requests: want about 300ms", rep.Duration, rep.Requests)
				}
				if rep.Failed != 0 || rep.Abandoned > 4 {
					t.Errorf("failed %d abandoned %d: requests cut by the bound are abandoned, at most one per client", rep.Failed, rep.Abandoned)
				}
			},
		},
		"rate": {
			// 30 requests at 100/s: the last starts 290 ms after the first.
			opts: Options{MaxRequests: 30, MaxDuration: 20 * time.Second, Rate: 100},
			check: func(t *testing.T, rep Report, _ int64) {
				if rep.Requests != 30 || rep.Duration < 290*time.Millisecond || rep.Duration > 3*time.Second {
					t.Errorf("%d requests in %s, want 30 in about 290ms", rep.Requests, rep.Duration)
				}
			},
		},
		"stop": {
			opts: Options{MaxRequests: 1_000_000, MaxDuration: 20 * time.Second},
			slow: time.Millisecond,
			stop: true,
			check: func(t *testing.T, rep Report, _ int64) {
				// The 20th request was sent once 16 had ended (one in flight per client).
				if rep.Requests < 16 || rep.Requests >= 1_000_000 || rep.Failed != 0 {
					t.Errorf("requests %d failed %d: want at least 16, none failed", rep.Requests, rep.Failed)
				}
			},
		},
		"context cancelled": {
			opts: Options{MaxRequests: 1_000_000, MaxDuration: 20 * time.Second},
			slow: 5 * time.Millisecond,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 200*time.Millisecond)
			},
			check: func(t *testing.T, rep Report, _ int64) {
				if rep.Duration > 3*time.Second || rep.Failed != 0 {
					t.Errorf("duration %s failed %d: want about 200ms, none failed", rep.Duration, rep.Failed)
				}
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			twenty := make(chan struct{})
			app := &demoApp{fail: func(n int64, _ http.ResponseWriter, r *http.Request) bool {
				if n == 20 {
					close(twenty)
				}
				if tt.slow > 0 {
					pause(r, tt.slow)
				}
				return false
			}}
			srv := startDemo(t, app)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			o := tt.opts
			o.Targets, o.Concurrency = []string{srv.URL}, 4
			run, err := Start(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			var rep Report
			if tt.stop {
				<-twenty
				rep = run.Stop()
				if again := run.Stop(); again.Requests != rep.Requests {
					t.Errorf("a second Stop changed the report: %d then %d requests", rep.Requests, again.Requests)
				}
			} else {
				rep = run.Wait()
			}
			select {
			case <-run.Done():
			default:
				t.Error("Done is open after the run ended")
			}
			t.Log(rep)
			tt.check(t, rep, app.hits.Load())
		})
	}
}

func TestRoundRobin(t *testing.T) {
	t.Parallel()
	apps := []*demoApp{{}, {}, {}}
	var targets []string
	for _, a := range apps {
		targets = append(targets, startDemo(t, a).URL+"/") // a trailing slash is not doubled
	}
	run, err := Start(context.Background(), Options{Targets: targets, Concurrency: 5, MaxRequests: 99, MaxDuration: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rep := run.Wait()
	if rep.Failed != 0 {
		t.Fatalf("failed: %s", rep)
	}
	for i, a := range apps {
		if a.hits.Load() != 33 {
			t.Errorf("target %d got %d requests, want 33", i, a.hits.Load())
		}
	}
}

// TestMarks checks that the first Mark of a name counts and the built-in ones cannot be
// moved.
func TestMarks(t *testing.T) {
	t.Parallel()
	srv := startDemo(t, &demoApp{})
	run, err := Start(context.Background(), Options{Targets: []string{srv.URL}, MaxRequests: 10, MaxDuration: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	run.Mark("a")
	run.Mark(MarkStart)
	rep := run.Wait()
	first := rep.Marks["a"]
	run.Mark("a")
	if rep := run.Wait(); !rep.Marks["a"].Equal(first) || !rep.Marks[MarkStart].Before(first) || !rep.Marks[MarkEnd].After(first) {
		t.Fatalf("marks %v", rep.Marks)
	}
}

// TestResultsTail tails a run while it goes on, as a live display does: what the tail
// saw, failures included, is what the Report holds.
func TestResultsTail(t *testing.T) {
	t.Parallel()
	app := &demoApp{fail: func(n int64, w http.ResponseWriter, _ *http.Request) bool {
		if n%50 != 0 {
			return false
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}}
	srv := startDemo(t, app)
	run, err := Start(context.Background(), Options{Targets: []string{srv.URL}, Concurrency: 4, Rate: 2000,
		MaxRequests: 400, MaxDuration: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var seen []Result
	polls := 0
	for done := false; !done; polls++ {
		select {
		case <-run.Done():
			done = true
		case <-time.After(20 * time.Millisecond):
		}
		seen = append(seen, run.Results(len(seen))...)
	}
	rep := run.Wait()
	failed := 0
	for _, r := range seen {
		if !r.OK() {
			failed++
		}
	}
	if len(seen) != rep.Requests || failed != rep.Failed || rep.Failed == 0 || polls < 3 {
		t.Fatalf("the tail saw %d requests, %d failed, in %d polls; the report: %s", len(seen), failed, polls, rep)
	}
	if run.Results(len(seen)) != nil || run.Results(-1) != nil || len(run.Results(0)) != len(seen) {
		t.Fatal("Results past the end, or from a negative index, is not empty; or from 0 is not all")
	}
}

// TestKeepAlive shows what keep-alive changes on the wire: with it, each client keeps
// its connection; without it, every request opens one.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		disable   bool
		wantConns func(conns int64) bool
	}{
		// Usually one per client; the transport may dial a spare while a used
		// connection is on its way back to the pool.
		"on":  {wantConns: func(c int64) bool { return c >= 1 && c < 20 }},
		"off": {disable: true, wantConns: func(c int64) bool { return c == 200 }},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			app := &demoApp{}
			srv := startDemo(t, app)
			run, err := Start(context.Background(), Options{
				Targets: []string{srv.URL}, Concurrency: 4, MaxRequests: 200, MaxDuration: 20 * time.Second,
				DisableKeepAlive: tt.disable,
			})
			if err != nil {
				t.Fatal(err)
			}
			rep := run.Wait()
			if rep.Failed != 0 || !tt.wantConns(app.conns.Load()) {
				t.Fatalf("%d connections for %s", app.conns.Load(), rep)
			}
		})
	}
}

// BenchmarkKeepAlive measures what keep-alive is worth on loopback:
//
//	go test -run '^$' -bench KeepAlive -benchtime 3x ./internal/loadgen/
func BenchmarkKeepAlive(b *testing.B) {
	for _, disable := range []bool{false, true} {
		b.Run(fmt.Sprintf("disable=%v", disable), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(`{"version":"1.0.0","color":"blue","hostname":"bench"}`))
			}))
			defer srv.Close()
			var mu sync.Mutex
			var rates []float64
			for b.Loop() {
				run, err := Start(context.Background(), Options{
					Targets: []string{srv.URL}, MaxRequests: 2000, MaxDuration: 10 * time.Second, DisableKeepAlive: disable,
				})
				if err != nil {
					b.Fatal(err)
				}
				rep := run.Wait()
				if rep.Failed != 0 {
					b.Fatal(rep)
				}
				mu.Lock()
				rates = append(rates, rep.RatePerSecond)
				mu.Unlock()
			}
			var sum float64
			for _, r := range rates {
				sum += r
			}
			b.ReportMetric(sum/float64(len(rates)), "req/s")
		})
	}
}

// dropEveryFourth closes the connection of every fourth request without an answer.
func dropEveryFourth(n int64, w http.ResponseWriter, _ *http.Request) bool {
	if n%4 != 0 {
		return false
	}
	hijacker, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	conn, _, err := hijacker.Hijack()
	if err == nil {
		_ = conn.Close()
	}
	return true
}
