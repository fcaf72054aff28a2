// Package droplet manages DigitalOcean droplets through godo: typed errors, retries on
// rate limits and server errors, find-or-create, and waits for actions and status.
package droplet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/digitalocean/godo"
)

// ManagedTag marks droplets this provider created, so an interrupted create can find
// its droplet again instead of making a second one.
const ManagedTag = "microswarm"

// ErrNotFound is wrapped by errors about resources the API does not know (HTTP 404).
var ErrNotFound = errors.New("not found")

// APIError is an error answer of the DigitalOcean API.
type APIError struct {
	Op        string
	Status    int
	Message   string
	RequestID string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s: DigitalOcean API answered %d %s: %s", e.Op, e.Status, http.StatusText(e.Status), e.Message)
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrNotFound) true for 404s.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// IsInvalid reports whether the API rejected the input (HTTP 422 or 400).
func IsInvalid(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && (apiErr.Status == http.StatusUnprocessableEntity || apiErr.Status == http.StatusBadRequest)
}

// ClientOptions configure a Client.
type ClientOptions struct {
	Token     string
	BaseURL   string // empty: the public API
	UserAgent string
	// HTTPClient carries requests; default http.DefaultTransport with a timeout.
	HTTPClient *http.Client
	// Retry tunes retries on 429, 5xx and lost answers; zero values take the defaults.
	Retry RetryPolicy
	// LeaseTTL is how long this run's lease holds without renewal (see RunTagPrefix).
	// Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// ListLag is how long the API may take to list a new droplet by tag; a create whose
	// answer was lost looks for its droplet that long before sending the request again.
	// Default DefaultListLag.
	ListLag time.Duration
	// StatusPoll is how often WaitStatus's shared list runs. Default DefaultStatusPoll.
	StatusPoll time.Duration
}

// DefaultListLag bounds how long DigitalOcean takes to list a droplet by tag after its create.
const DefaultListLag = 15 * time.Second

// RetryPolicy bounds retries of rate-limited (429), failed (5xx) and lost requests (the
// connection dropped, or no answer within the HTTP client's timeout). The context (the
// resource's timeout) bounds them all.
type RetryPolicy struct {
	MaxAttempts int           // default 10
	MinWait     time.Duration // default 500ms, doubled per attempt
	MaxWait     time.Duration // default 30s; a 429's Retry-After or reset is waited out in full
}

// Client is the provider's handle on the DigitalOcean API.
type Client struct {
	api     *godo.Client
	retry   RetryPolicy
	adopt   adoptions
	lease   *lease
	listLag time.Duration
	watch   statusWatch
}

// NewClient builds a Client.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Token == "" {
		return nil, errors.New("a DigitalOcean API token is required")
	}
	base := opts.HTTPClient
	if base == nil {
		base = &http.Client{Timeout: 60 * time.Second}
	}
	httpClient := &http.Client{
		Timeout:   base.Timeout,
		Transport: bearerTransport{token: opts.Token, next: base.Transport},
	}
	clientOpts := []godo.ClientOpt{}
	if opts.BaseURL != "" {
		u := opts.BaseURL
		if !strings.HasSuffix(u, "/") {
			u += "/"
		}
		clientOpts = append(clientOpts, godo.SetBaseURL(u))
	}
	if opts.UserAgent != "" {
		clientOpts = append(clientOpts, godo.SetUserAgent(opts.UserAgent))
	}
	api, err := godo.New(httpClient, clientOpts...)
	if err != nil {
		return nil, err
	}
	r := opts.Retry
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 10
	}
	if r.MinWait <= 0 {
		r.MinWait = 500 * time.Millisecond
	}
	if r.MaxWait <= 0 {
		r.MaxWait = 30 * time.Second
	}
	c := &Client{api: api, retry: r, listLag: opts.ListLag}
	if c.listLag <= 0 {
		c.listLag = DefaultListLag
	}
	c.watch.interval = opts.StatusPoll
	ttl := opts.LeaseTTL
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	c.lease = newLease(c, ttl)
	return c, nil
}

// Godo exposes the underlying client, for tests and rare calls not wrapped here.
func (c *Client) Godo() *godo.Client { return c.api }

type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (t bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+t.token)
	return next.RoundTrip(req)
}

// call runs one API request, retrying on 429 (after Retry-After or the rate limit's
// reset, capped), 5xx and lost answers (with exponential backoff), within ctx, and maps
// the final error to *APIError. Only for requests that are safe to repeat (GET, DELETE,
// tagging); see callRechecking.
func (c *Client) call(ctx context.Context, op string, fn func(context.Context) (*godo.Response, error)) error {
	return c.callRechecking(ctx, op, fn, nil)
}

// callRechecking is call for requests that are not idempotent: before each retry,
// recheck (if set) learns whether the failed attempt took effect after all (status is
// the answer's HTTP status, 0 when none came); done stops the retries with the last
// error, err stops them with that error.
func (c *Client) callRechecking(ctx context.Context, op string, fn func(context.Context) (*godo.Response, error),
	recheck func(ctx context.Context, status int) (done bool, err error)) error {
	wait := c.retry.MinWait
	started := time.Now()
	for attempt := 1; ; attempt++ {
		resp, err := fn(ctx)
		if err == nil {
			return nil
		}
		mapped := mapError(op, resp, err)
		status, transient := classify(ctx, mapped)
		if !transient {
			return mapped
		}
		if attempt >= c.retry.MaxAttempts {
			return fmt.Errorf("%w (tried %d times over %s)", mapped, attempt, time.Since(started).Round(time.Millisecond))
		}
		pause := min(wait, c.retry.MaxWait)
		if asked := rateLimitPause(resp); status == http.StatusTooManyRequests && asked > 0 {
			// What the API asks for, uncapped: an earlier try only meets another 429.
			pause = max(asked, c.retry.MinWait)
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < pause {
			return fmt.Errorf("%w (tried %d times over %s; the next try, in %s, would pass the resource's timeout (%w): raise it, or try again later)",
				mapped, attempt, time.Since(started).Round(time.Millisecond), pause.Round(time.Millisecond), context.DeadlineExceeded)
		}
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (gave up retrying after %d tries: %w)", mapped, attempt, ctx.Err())
		case <-timer.C:
		}
		if recheck != nil {
			done, err := recheck(ctx, status)
			if err != nil {
				return fmt.Errorf("%w (then checking whether it took effect: %w)", mapped, err)
			}
			if done {
				return mapped
			}
		}
		wait = min(wait*2, c.retry.MaxWait)
	}
}

// classify says whether an error is worth another try: a 429, a 5xx, or an answer that
// never came (the connection dropped or timed out) while ctx still runs. status is the
// HTTP status, 0 when no answer came.
func classify(ctx context.Context, err error) (status int, transient bool) {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status, retryable(apiErr.Status)
	}
	if ctx.Err() != nil {
		return 0, false
	}
	var netErr net.Error
	return 0, errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}

// rateLimitPause is how long a 429 asks to wait: Retry-After (seconds) if given, else
// until ratelimit-reset.
func rateLimitPause(resp *godo.Response) time.Duration {
	if resp == nil || resp.Response == nil {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if !resp.Rate.Reset.IsZero() {
		return time.Until(resp.Rate.Reset.Time)
	}
	return 0
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

func mapError(op string, resp *godo.Response, err error) error {
	var errResp *godo.ErrorResponse
	if errors.As(err, &errResp) && errResp.Response != nil {
		return &APIError{Op: op, Status: errResp.Response.StatusCode, Message: errResp.Message, RequestID: errResp.RequestID}
	}
	if resp != nil && resp.Response != nil && resp.StatusCode >= 400 {
		return &APIError{Op: op, Status: resp.StatusCode, Message: err.Error()}
	}
	return fmt.Errorf("%s: %w", op, err)
}
