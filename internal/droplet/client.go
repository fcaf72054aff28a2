// Package droplet manages DigitalOcean droplets through godo: typed errors, retries on
// rate limits and server errors, find-or-create, and waits for actions and status.
package droplet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
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
	// Retry tunes retries on 429 and 5xx; zero values take the defaults.
	Retry RetryPolicy
}

// RetryPolicy bounds retries of rate-limited (429) and failed (5xx) requests.
type RetryPolicy struct {
	MaxAttempts int           // default 8
	MinWait     time.Duration // default 500ms, doubled per attempt
	MaxWait     time.Duration // default 30s; also caps waiting for a rate-limit reset
}

// Client is the provider's handle on the DigitalOcean API.
type Client struct {
	api   *godo.Client
	retry RetryPolicy
	adopt adoptions
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
		r.MaxAttempts = 8
	}
	if r.MinWait <= 0 {
		r.MinWait = 500 * time.Millisecond
	}
	if r.MaxWait <= 0 {
		r.MaxWait = 30 * time.Second
	}
	return &Client{api: api, retry: r}, nil
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

// call runs one API request, retrying on 429 (until the rate limit resets, capped) and
// 5xx (with exponential backoff), and maps the final error to *APIError.
func (c *Client) call(ctx context.Context, op string, fn func(context.Context) (*godo.Response, error)) error {
	return c.callRechecking(ctx, op, fn, nil)
}

// callRechecking is call for requests that are not idempotent: before each retry,
// recheck (if set) learns whether the failed attempt took effect after all; done stops
// the retries with the last error, err stops them with that error.
func (c *Client) callRechecking(ctx context.Context, op string, fn func(context.Context) (*godo.Response, error),
	recheck func(ctx context.Context, status int) (done bool, err error)) error {
	wait := c.retry.MinWait
	for attempt := 1; ; attempt++ {
		resp, err := fn(ctx)
		if err == nil {
			return nil
		}
		mapped := mapError(op, resp, err)
		var apiErr *APIError
		if !errors.As(mapped, &apiErr) || attempt >= c.retry.MaxAttempts || !retryable(apiErr.Status) {
			return mapped
		}
		pause := wait
		if apiErr.Status == http.StatusTooManyRequests && resp != nil && !resp.Reset.IsZero() {
			pause = max(time.Until(resp.Reset.Time), c.retry.MinWait)
		}
		pause = min(pause, c.retry.MaxWait)
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (gave up retrying: %w)", mapped, ctx.Err())
		case <-timer.C:
		}
		if recheck != nil {
			done, err := recheck(ctx, apiErr.Status)
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
