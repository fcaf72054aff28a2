package droplet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// apiAnswer is one canned answer in the DigitalOcean API's error shape.
type apiAnswer struct {
	status int
	body   string
	header map[string]string
}

// scriptedAPI answers GET /v2/droplets/{id} with the given answers in turn (the last
// one repeats) and counts the requests, checking the bearer token on each.
func scriptedAPI(t *testing.T, answers ...apiAnswer) (*Client, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer test-token" {
			t.Errorf("request without the bearer token: %q", r.Header.Get("Authorization"))
		}
		n := int(calls.Add(1))
		a := answers[min(n, len(answers))-1]
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(a.body))
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(ClientOptions{Token: "test-token", BaseURL: srv.URL,
		Retry: RetryPolicy{MaxAttempts: 4, MinWait: 10 * time.Millisecond, MaxWait: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return c, &calls
}

const okDroplet = `{"droplet":{"id":7,"name":"n1","status":"active","size_slug":"s-1vcpu-1gb",
  "region":{"slug":"nyc3"},"image":{"slug":"docker-20-04"},"tags":["microswarm","web"],
  "networks":{"v4":[{"ip_address":"192.0.2.10","type":"public"},{"ip_address":"10.10.0.5","type":"private"}]}}}`

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	notFound := apiAnswer{status: 404, body: `{"id":"not_found","message":"The resource you were accessing could not be found.","request_id":"r-1"}`}
	invalid := apiAnswer{status: 422, body: `{"id":"unprocessable_entity","message":"You specified an invalid region for Droplet creation."}`}
	unauthorized := apiAnswer{status: 401, body: `{"id":"Unauthorized","message":"Unable to authenticate you"}`}
	cases := map[string]struct {
		answers     []apiAnswer
		wantCalls   int32
		notFound    bool
		invalid     bool
		wantMessage string
	}{
		"404 is ErrNotFound and not retried": {answers: []apiAnswer{notFound}, wantCalls: 1, notFound: true, wantMessage: "could not be found. (request r-1)"},
		"422 is invalid and not retried":     {answers: []apiAnswer{invalid}, wantCalls: 1, invalid: true, wantMessage: "invalid region"},
		"401 is neither":                     {answers: []apiAnswer{unauthorized}, wantCalls: 1, wantMessage: "401 Unauthorized: Unable to authenticate you"},
		"500 retried until it gives up":      {answers: []apiAnswer{{status: 500, body: `{"id":"server_error","message":"oops"}`}}, wantCalls: 4, wantMessage: "500"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, calls := scriptedAPI(t, tc.answers...)
			_, err := c.Get(context.Background(), 7)
			if err == nil {
				t.Fatal("Get succeeded, want an error")
			}
			if got := errors.Is(err, ErrNotFound); got != tc.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, got, tc.notFound)
			}
			if got := IsInvalid(err); got != tc.invalid {
				t.Errorf("IsInvalid(%v) = %v, want %v", err, got, tc.invalid)
			}
			if !strings.Contains(err.Error(), tc.wantMessage) || !strings.Contains(err.Error(), "get droplet 7") {
				t.Errorf("error %q should name the operation and contain %q", err, tc.wantMessage)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("API saw %d requests, want %d", got, tc.wantCalls)
			}
		})
	}
}

func TestRateLimitIsRetriedAfterTheReset(t *testing.T) {
	t.Parallel()
	reset := time.Now().Add(1 * time.Second).Truncate(time.Second).Add(time.Second)
	limited := apiAnswer{status: 429, body: `{"id":"too_many_requests","message":"API Rate limit exceeded."}`,
		header: map[string]string{"ratelimit-limit": "250", "ratelimit-remaining": "0", "ratelimit-reset": strconv.FormatInt(reset.Unix(), 10)}}
	c, calls := scriptedAPI(t, limited, apiAnswer{status: 200, body: okDroplet})
	start := time.Now()
	d, err := c.Get(context.Background(), 7)
	retried := time.Now()
	if err != nil {
		t.Fatalf("Get after a 429: %v", err)
	}
	if d.ID != 7 || d.PublicIPv4 != "192.0.2.10" || d.PrivateIPv4 != "10.10.0.5" || d.Region != "nyc3" {
		t.Fatalf("Get = %+v", d)
	}
	if len(d.Tags) != 1 || d.Tags[0] != "web" {
		t.Fatalf("tags = %v, want the managed tag hidden", d.Tags)
	}
	if calls.Load() != 2 {
		t.Fatalf("API saw %d requests, want 2 (one 429, one retry)", calls.Load())
	}
	// The header has one-second resolution: allow for the truncation.
	if retried.Before(reset.Add(-50 * time.Millisecond)) {
		t.Fatalf("retried %s after the 429, before the rate limit reset at %s", retried.Sub(start), reset)
	}
}

func TestRateLimitBacksOffExponentially(t *testing.T) {
	t.Parallel()
	// No reset header: the client falls back to doubling pauses (10, 20, 40ms).
	limited := apiAnswer{status: 429, body: `{"id":"too_many_requests","message":"API Rate limit exceeded."}`}
	c, calls := scriptedAPI(t, limited, limited, limited, apiAnswer{status: 200, body: okDroplet})
	start := time.Now()
	if _, err := c.Get(context.Background(), 7); err != nil {
		t.Fatalf("Get after three 429s: %v", err)
	}
	if calls.Load() != 4 {
		t.Fatalf("API saw %d requests, want 4", calls.Load())
	}
	if waited := time.Since(start); waited < 70*time.Millisecond {
		t.Fatalf("three backoffs took %s, want at least 10+20+40ms", waited)
	}
}

func TestRetryStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	limited := apiAnswer{status: 429, body: `{"id":"too_many_requests","message":"API Rate limit exceeded."}`,
		header: map[string]string{"ratelimit-reset": fmt.Sprint(time.Now().Add(time.Hour).Unix())}}
	c, _ := scriptedAPI(t, limited)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, 7)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "429") {
		t.Fatalf("Get under a long rate limit with a short context: err = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("gave up after %s; the context allowed 100ms", time.Since(start))
	}
}
