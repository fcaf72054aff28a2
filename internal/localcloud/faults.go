package localcloud

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Faults and manners. The API can be told to fail the way DigitalOcean's (or a proxy in
// front of it) does, for tests of the provider's retries, and to behave with the real
// API's manners (rate limits, a droplet's `new` period, list-by-tag lag) for `make demo`
// and the acceptance tests that must hold on the real cloud.

// FaultKind is one way an answer fails.
type FaultKind string

const (
	// FaultRateLimit answers 429 with DigitalOcean's ratelimit-* headers and Retry-After.
	FaultRateLimit FaultKind = "429"
	// FaultServerError answers 500.
	FaultServerError FaultKind = "500"
	// FaultUnavailable answers 503, as a load balancer in front of the API does.
	FaultUnavailable FaultKind = "503"
	// FaultSlow answers after Delay, past a client's timeout.
	FaultSlow FaultKind = "slow"
	// FaultDrop closes the connection without an answer.
	FaultDrop FaultKind = "drop"
)

// Fault makes some requests fail.
type Fault struct {
	Kind FaultKind
	// Fraction of the matching requests that fail, in (0, 1]. Default 1.
	Fraction float64
	// Match selects requests: "METHOD /path/prefix", or "/path/prefix" for any method.
	// Empty: every request.
	Match string
	// Count bounds how many requests fail (0: no bound).
	Count int
	// After handles the request first and then fails its answer: the create went
	// through, its answer was lost. Default: the request is not handled.
	After bool
	// Delay is how long a slow answer takes. Default 90s; RetryAfter is what a 429 asks
	// for, in seconds. Default 1.
	Delay      time.Duration
	RetryAfter int
}

// Manners are the real API's habits the emulator can play.
type Manners struct {
	// PerHour limits requests per hour besides Config.RateLimitPerMinute; the
	// ratelimit-* headers then report the hourly window, as DigitalOcean's do.
	PerHour int
	// NewFor is how long a new droplet reports status `new` even once its node answers.
	NewFor time.Duration
	// ListLag hides a new droplet from list-by-tag this long after its create.
	ListLag time.Duration
}

// RealManners are DigitalOcean's, measured or documented: 250 requests a minute (the
// Config's default), 5,000 an hour, a droplet `new` for tens of seconds, and a short
// delay before a new droplet lists by tag.
func RealManners() Manners {
	return Manners{PerHour: 5000, NewFor: 20 * time.Second, ListLag: 5 * time.Second}
}

// Environment switches, read by Start when the Config leaves them unset.
const (
	// EnvManners = "real" plays RealManners.
	EnvManners = "LOCALCLOUD_MANNERS"
	// EnvFaults holds faults in ParseFaults' form.
	EnvFaults = "LOCALCLOUD_FAULTS"
)

// ParseFaults reads faults separated by ';', each KIND[:FRACTION][:key=value...] with
// keys match ("POST /v2/droplets"), count, after (true/false), delay (a Go duration) and
// retry_after (seconds). Example: "503:0.2;drop:1:match=POST /v2/droplets:after=true:count=1".
func ParseFaults(spec string) ([]Fault, error) {
	var out []Fault
	for _, item := range strings.Split(spec, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, ":")
		f := Fault{Kind: FaultKind(parts[0]), Fraction: 1}
		switch f.Kind {
		case FaultRateLimit, FaultServerError, FaultUnavailable, FaultSlow, FaultDrop:
		default:
			return nil, fmt.Errorf("fault %q: kind must be 429, 500, 503, slow or drop", item)
		}
		for i, p := range parts[1:] {
			key, value, isKV := strings.Cut(p, "=")
			var err error
			switch {
			case !isKV && i == 0:
				f.Fraction, err = strconv.ParseFloat(p, 64)
			case key == "match":
				f.Match = value
			case key == "count":
				f.Count, err = strconv.Atoi(value)
			case key == "after":
				f.After, err = strconv.ParseBool(value)
			case key == "delay":
				f.Delay, err = time.ParseDuration(value)
			case key == "retry_after":
				f.RetryAfter, err = strconv.Atoi(value)
			default:
				err = fmt.Errorf("unknown setting %q", p)
			}
			if err != nil {
				return nil, fmt.Errorf("fault %q: %w", item, err)
			}
		}
		if f.Fraction <= 0 || f.Fraction > 1 {
			return nil, fmt.Errorf("fault %q: the fraction must be in (0, 1]", item)
		}
		out = append(out, f)
	}
	return out, nil
}

// faultSwitch holds the faults and manners in force; tests change them at any time.
type faultSwitch struct {
	mu      sync.Mutex
	faults  []*Fault
	manners Manners
	hour    rateLimiter // the hourly window when manners.PerHour > 0
	rng     *rand.Rand
	fired   map[FaultKind]int
}

func newFaultSwitch(faults []Fault, m Manners) *faultSwitch {
	s := &faultSwitch{rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)), fired: map[FaultKind]int{}}
	s.set(faults)
	s.setManners(m)
	return s
}

func (s *faultSwitch) set(faults []Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	for _, f := range faults {
		if f.Fraction == 0 {
			f.Fraction = 1
		}
		if f.Delay == 0 {
			f.Delay = 90 * time.Second
		}
		if f.RetryAfter == 0 {
			f.RetryAfter = 1
		}
		s.faults = append(s.faults, &f)
	}
}

func (s *faultSwitch) setManners(m Manners) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.manners = m
	s.hour = rateLimiter{limit: m.PerHour, window: time.Hour}
}

func (s *faultSwitch) getManners() Manners {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.manners
}

// pick returns the fault a request meets, if any, and counts it.
func (s *faultSwitch) pick(r *http.Request) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Count < 0 || !matches(f.Match, r) || s.rng.Float64() >= f.Fraction {
			continue
		}
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				f.Count = -1 // spent
			}
		}
		s.fired[f.Kind]++
		return f
	}
	return nil
}

func matches(match string, r *http.Request) bool {
	if match == "" {
		return true
	}
	method, prefix, hasMethod := strings.Cut(match, " ")
	if !hasMethod {
		prefix, method = match, ""
	}
	return (method == "" || strings.EqualFold(method, r.Method)) && strings.HasPrefix(r.URL.Path, prefix)
}

// SetFaults replaces the faults in force (none: the API answers normally).
func (c *Cloud) SetFaults(faults ...Fault) { c.faults.set(faults) }

// SetManners replaces the manners in force (Manners{}: answers at once, no hourly limit).
func (c *Cloud) SetManners(m Manners) { c.faults.setManners(m) }

// FaultsFired counts the requests each kind of fault has failed so far.
func (c *Cloud) FaultsFired() map[FaultKind]int {
	c.faults.mu.Lock()
	defer c.faults.mu.Unlock()
	out := map[FaultKind]int{}
	for k, v := range c.faults.fired {
		out[k] = v
	}
	return out
}

// withFaults fails the requests a fault picks, and applies the hourly rate limit.
func (c *Cloud) withFaults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := c.faults.getManners(); m.PerHour > 0 {
			c.faults.mu.Lock()
			allowed, remaining, reset := c.faults.hour.take(time.Now())
			c.faults.mu.Unlock()
			h := w.Header()
			h.Set("Ratelimit-Limit", strconv.Itoa(m.PerHour))
			h.Set("Ratelimit-Remaining", strconv.Itoa(remaining))
			h.Set("Ratelimit-Reset", strconv.FormatInt(reset.Unix(), 10))
			if !allowed {
				h.Set("Retry-After", strconv.Itoa(max(1, int(time.Until(reset).Seconds()+0.999))))
				c.writeError(w, &apiError{http.StatusTooManyRequests, "too_many_requests", "API Rate limit exceeded."})
				return
			}
		}
		f := c.faults.pick(r)
		if f == nil {
			next.ServeHTTP(w, r)
			return
		}
		c.logf("fault %s on %s %s (after: %v)", f.Kind, r.Method, r.URL.Path, f.After)
		if f.After {
			next.ServeHTTP(discard{header: http.Header{}}, r)
		}
		switch f.Kind {
		case FaultRateLimit:
			reset := time.Now().Add(time.Duration(f.RetryAfter) * time.Second)
			h := w.Header()
			h.Set("Ratelimit-Limit", strconv.Itoa(c.limiter.limit))
			h.Set("Ratelimit-Remaining", "0")
			h.Set("Ratelimit-Reset", strconv.FormatInt(reset.Unix(), 10))
			h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
			c.writeError(w, &apiError{http.StatusTooManyRequests, "too_many_requests", "API Rate limit exceeded."})
		case FaultServerError:
			c.writeError(w, &apiError{http.StatusInternalServerError, "server_error", "Server was unable to give you a response."})
		case FaultUnavailable:
			c.writeError(w, &apiError{http.StatusServiceUnavailable, "service_unavailable", "The service is temporarily unavailable."})
		case FaultSlow:
			select {
			case <-r.Context().Done():
				return // the client gave up
			case <-time.After(f.Delay):
			}
			if !f.After {
				next.ServeHTTP(w, r)
			}
		case FaultDrop:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler) // closes the connection unanswered
		}
	})
}

// discard takes an answer nobody will read.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

// mannersFromEnv reads EnvManners and EnvFaults.
func mannersFromEnv() (Manners, []Fault, error) {
	var m Manners
	switch v := os.Getenv(EnvManners); v {
	case "", "none", "off":
	case "real":
		m = RealManners()
	default:
		return m, nil, fmt.Errorf("%s=%q: want real or none", EnvManners, v)
	}
	faults, err := ParseFaults(os.Getenv(EnvFaults))
	if err != nil {
		return m, nil, fmt.Errorf("%s: %w", EnvFaults, err)
	}
	return m, faults, nil
}
