// Package loadgen is a bounded HTTP load generator for proving that a blue/green switch
// loses no request: a few concurrent clients ask the demo app (through its proxies) for
// `GET /`, every answer is kept with its start and end time, and named marks ("switch-start")
// let a Report say which version answered before, during and after the switch.
//
// Every run is bounded twice, by a request count and by a duration, so a stuck proxy or
// a forgotten Stop cannot turn a test into an open-ended flood.
//
// Keep-alive is on by default. HAProxy in http mode routes every request, not every
// connection, so requests on a reused connection see a switch as soon as new ones do;
// and without keep-alive every request costs a TCP handshake and leaves a TIME_WAIT
// socket, so the load measures connection setup more than the switch (on loopback,
// 2 cores: about 30,000 requests/s with keep-alive, 11,000 without; BenchmarkKeepAlive).
// DisableKeepAlive is there for proxies that route per connection (tcp mode).
package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultConcurrency    = 8
	DefaultRequestTimeout = 2 * time.Second
	DefaultPath           = "/"
)

// Marks every run records by itself; Mark refuses these names.
const (
	MarkStart = "start" // the run began
	MarkEnd   = "end"   // the last client stopped
)

// A keep-alive connection the target closes is not always a failure seen here: the
// transport sends a GET again, on another connection, when a reused one closed before
// answering. HAProxy closes idle connections on reload, and real clients retry the same
// way, so that retry stays; but every request sent more than once is counted
// (Report.Retried), so a test can tell "no request lost" from "none lost after retries".

// maxBody bounds what is read of an answer: the demo app's is under 200 bytes.
const maxBody = 64 << 10

// maxExamples is how many failures a Report describes in full.
const maxExamples = 5

// Options configures a run. MaxRequests and MaxDuration are both required.
type Options struct {
	// Targets are base URLs ("http://127.0.0.1:8080"); requests go round-robin over them.
	Targets []string
	// Concurrency is the number of clients, each with at most one request in flight
	// (default 8).
	Concurrency int
	// Rate is the total requests per second over all clients; 0 is as fast as they can.
	Rate float64
	// MaxRequests ends the run once this many requests were sent.
	MaxRequests int
	// MaxDuration ends the run this long after Start.
	MaxDuration time.Duration
	// RequestTimeout bounds one request, answer body included (default 2s).
	RequestTimeout time.Duration
	// Path is requested on every target (default "/").
	Path string
	// DisableKeepAlive opens a new connection for every request.
	DisableKeepAlive bool
}

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	if len(o.Targets) == 0 {
		errs = append(errs, errors.New("no targets"))
	}
	for _, t := range o.Targets {
		u, err := url.Parse(t)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("target %q is not an http(s) base URL", t))
		}
	}
	if o.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d is negative", o.Concurrency))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %g is negative", o.Rate))
	}
	if o.MaxRequests <= 0 {
		errs = append(errs, errors.New("max requests must be set (above 0)"))
	}
	if o.MaxDuration <= 0 {
		errs = append(errs, errors.New("max duration must be set (above 0)"))
	}
	if o.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("request timeout %s is negative", o.RequestTimeout))
	}
	if o.Path != "" && !strings.HasPrefix(o.Path, "/") {
		errs = append(errs, fmt.Errorf("path %q does not start with /", o.Path))
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("loadgen options: %w", errors.Join(errs...))
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Path == "" {
		o.Path = DefaultPath
	}
	return o, nil
}

// Result is one request: when it started and ended, and what answered.
type Result struct {
	Start, End time.Time
	Target     string
	// Err is empty for a success, else its class: "HTTP 503", "timeout", "bad body: ...",
	// or the connection error's text.
	Err      string
	Version  string
	Color    string
	Hostname string
	// Retries is how many more times the transport sent the request (see Report.Retried).
	Retries int

	detail string // the start of a failed answer's body, for the examples only
	cut    bool   // ended by the run's own end, not by the target
}

// OK reports whether the request succeeded.
func (r Result) OK() bool { return r.Err == "" }

// Run is a load in progress; Stop or Wait ends it and returns its Report.
type Run struct {
	opts   Options
	urls   []string
	client *http.Client
	pace   *pacer
	cancel context.CancelFunc
	done   chan struct{}
	start  time.Time

	sent      atomic.Int64
	abandoned atomic.Int64

	mu       sync.Mutex
	results  []Result
	examples []string
	marks    map[string]time.Time
	end      time.Time

	reportOnce sync.Once
	report     Report
}

// Start validates o and starts its clients at once. The run ends at the first of: o's
// bounds, ctx's end, Stop.
func Start(ctx context.Context, o Options) (*Run, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		// No proxy from the environment: the load must reach the target itself.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: o.RequestTimeout}).DialContext,
		DisableKeepAlives:   o.DisableKeepAlive,
		MaxIdleConns:        o.Concurrency * len(o.Targets),
		MaxIdleConnsPerHost: o.Concurrency,
		IdleConnTimeout:     30 * time.Second,
	}
	r := &Run{
		opts: o,
		client: &http.Client{
			Transport: transport,
			Timeout:   o.RequestTimeout,
			// A redirect is an answer the app does not give: count it, do not follow it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		done:    make(chan struct{}),
		marks:   map[string]time.Time{},
		results: make([]Result, 0, min(o.MaxRequests, 1<<16)),
	}
	for _, t := range o.Targets {
		r.urls = append(r.urls, strings.TrimSuffix(t, "/")+o.Path)
	}
	if o.Rate > 0 {
		r.pace = &pacer{every: time.Duration(float64(time.Second) / o.Rate)}
	}
	// The start is taken first, so that a run ended by MaxDuration lasts at least that.
	r.start = time.Now()
	ctx, r.cancel = context.WithTimeout(ctx, o.MaxDuration)
	r.marks[MarkStart] = r.start

	var clients sync.WaitGroup
	for range o.Concurrency {
		clients.Add(1)
		go func() {
			defer clients.Done()
			r.client1(ctx)
		}()
	}
	go func() {
		clients.Wait()
		r.mu.Lock()
		r.end = time.Now()
		r.marks[MarkEnd] = r.end
		r.mu.Unlock()
		r.cancel()
		transport.CloseIdleConnections()
		close(r.done)
	}()
	return r, nil
}

// client1 is one client: it sends requests one after the other until a bound is reached.
func (r *Run) client1(ctx context.Context) {
	for {
		if r.pace != nil && r.pace.wait(ctx) != nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		n := r.sent.Add(1)
		if n > int64(r.opts.MaxRequests) {
			return
		}
		res := r.get(ctx, r.urls[(n-1)%int64(len(r.urls))])
		if res.cut {
			r.abandoned.Add(1)
			return
		}
		r.record(res)
	}
}

// answer is what the demo app says on `GET /`.
type answer struct {
	Version  string `json:"version"`
	Color    string `json:"color"`
	Hostname string `json:"hostname"`
}

// get makes one request and classifies its outcome.
func (r *Run) get(ctx context.Context, target string) (res Result) {
	res = Result{Target: target, Start: time.Now()}
	defer func() { res.End = time.Now() }()
	var conns atomic.Int32 // one connection per attempt
	defer func() { res.Retries = max(int(conns.Load())-1, 0) }()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { conns.Add(1) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	resp, err := r.client.Do(req)
	if err != nil {
		res.Err, res.cut = classify(err), ctx.Err() != nil
		return res
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	switch {
	case err != nil:
		// An answer that did arrive (a 503, a bad body) counts even at the run's end;
		// only one cut off in transit is abandoned.
		res.Err, res.cut = classify(err), ctx.Err() != nil
	case resp.StatusCode/100 != 2:
		res.Err = fmt.Sprintf("HTTP %d", resp.StatusCode)
	default:
		var a answer
		if err := json.Unmarshal(body, &a); err != nil {
			res.Err = "bad body: " + err.Error()
		} else if a.Version == "" || a.Color == "" {
			res.Err = "bad body: no version or color"
		} else {
			res.Version, res.Color, res.Hostname = a.Version, a.Color, a.Hostname
		}
	}
	if res.Err != "" {
		res.detail = snippet(body)
	}
	return res
}

// classify turns a transport error into a short key: the URL the error repeats is
// already in Result.Target, and every timeout is the same failure.
func classify(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

func snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

func (r *Run) record(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !res.OK() {
		if len(r.examples) < maxExamples {
			ex := fmt.Sprintf("+%s %s: %s", res.Start.Sub(r.start).Round(time.Millisecond), res.Target, res.Err)
			if res.detail != "" {
				ex += ": " + res.detail
			}
			r.examples = append(r.examples, ex)
		}
		res.detail = ""
	}
	r.results = append(r.results, res)
}

// Mark records the current instant under name. The first Mark of a name counts; the
// built-in MarkStart and MarkEnd cannot be set, and a Mark after the Report was built is
// not in it.
func (r *Run) Mark(name string) {
	now := time.Now()
	if name == MarkStart || name == MarkEnd {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, seen := r.marks[name]; !seen {
		r.marks[name] = now
	}
}

// Results returns the requests that have ended so far, from the from-th on (0 for all),
// in the order they were counted (as they ended), while the run goes on: a live display
// tails a run by passing the count it has seen. Abandoned requests are never among them; a Report holds the same
// requests, ordered by start.
func (r *Run) Results(from int) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	if from < 0 || from >= len(r.results) {
		return nil
	}
	return slices.Clone(r.results[from:])
}

// Done is closed when the run has ended, by its bounds or by Stop.
func (r *Run) Done() <-chan struct{} { return r.done }

// Stop ends the run now (requests in flight are abandoned, not failed) and returns its
// Report. It may be called more than once, and after Wait.
func (r *Run) Stop() Report {
	r.cancel()
	return r.Wait()
}

// Wait blocks until the run ends by its bounds and returns its Report.
func (r *Run) Wait() Report {
	<-r.done
	r.reportOnce.Do(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.report = newReport(r.start, r.end, r.results, r.marks, r.examples, int(r.abandoned.Load()))
	})
	return r.report
}

// pacer spreads requests evenly over time for all clients together. A client that falls
// behind does not earn a burst: the schedule restarts from now.
type pacer struct {
	mu    sync.Mutex
	next  time.Time
	every time.Duration
}

func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = at.Add(p.every)
	p.mu.Unlock()

	d := time.Until(at)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
