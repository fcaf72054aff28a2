package droplet

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A create whose connection dropped after the droplet was made, on an API that lists a
// new droplet by tag only after a lag: found by its idempotency tag, not sent again.
func TestCreateWhoseAnswerWasLostIsFoundNotRepeated(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	api.dropCreates, api.lag = 1, 500*time.Millisecond
	d, adopted, err := c.Create(context.Background(), createSpec(testStack(t, "s"), "tok"))
	if err != nil {
		t.Fatalf("Create after a dropped answer: %v", err)
	}
	if n, posts := api.count(); n != 1 || posts != 1 || adopted || d.ID != 100 {
		t.Fatalf("%d droplets after %d create requests (got droplet %d, adopted %v); want the one the lost answer made", n, posts, d.ID, adopted)
	}
}

// A 429 with Retry-After is retried no sooner than it asks.
func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	api.throttle, api.retryAfter = 1, 1
	if _, _, err := c.Create(context.Background(), Spec{Name: "web-1", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "docker-20-04"}); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	throttledAt := api.throttled[0]
	api.mu.Unlock()
	if n, posts := api.count(); n != 1 || posts != 1 {
		t.Fatalf("%d droplets after %d creates, want one", n, posts)
	}
	if waited := time.Since(throttledAt); waited < time.Second {
		t.Fatalf("retried %s after a 429 that asked for 1s", waited)
	}
}

// An answer slower than the HTTP client's timeout, then a dropped connection: a GET is
// retried on a fresh request, and the error after the last try says how many were made.
func TestLostAnswersAreRetried(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			time.Sleep(300 * time.Millisecond) // past the client's timeout
		case 2:
			conn, _, _ := w.(http.Hijacker).Hijack()
			_ = conn.Close()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(okDroplet))
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(ClientOptions{Token: "t", BaseURL: srv.URL, HTTPClient: &http.Client{Timeout: 100 * time.Millisecond},
		Retry: RetryPolicy{MaxAttempts: 3, MinWait: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := c.Get(context.Background(), 7); err != nil || d.ID != 7 {
		t.Fatalf("Get after a slow answer and a dropped connection = %v, %v", d, err)
	}
	if calls.Load() != 3 {
		t.Fatalf("API saw %d requests, want 3", calls.Load())
	}
	calls.Store(1) // from now on: always dropped
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		conn, _, _ := w.(http.Hijacker).Hijack()
		_ = conn.Close()
	})
	_, err = c.Get(context.Background(), 7)
	if err == nil || !strings.Contains(err.Error(), "tried 3 times") || !strings.Contains(err.Error(), "get droplet 7") {
		t.Fatalf("Get against an API that always drops the connection: %v; want the tries named", err)
	}
}
