package wait

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	t.Parallel()
	fatal := errors.New("boom")
	cases := map[string]struct {
		opts      Options
		timeout   time.Duration
		results   []error // nil = done, errNotYet = not done, other = returned error
		wantCalls int
		wantErr   string
		timedOut  bool
	}{
		"done at once":          {results: []error{nil}, wantCalls: 1},
		"done after polling":    {results: []error{errNotYet, errNotYet, nil}, wantCalls: 3},
		"retryable then done":   {results: []error{Retryable(fatal), nil}, wantCalls: 2},
		"fatal stops":           {results: []error{errNotYet, fatal}, wantCalls: 2, wantErr: "boom"},
		"needs two in a row":    {opts: Options{Consecutive: 2}, results: []error{nil, errNotYet, nil, nil}, wantCalls: 4},
		"timeout keeps last":    {opts: Options{What: "the thing"}, timeout: 50 * time.Millisecond, results: []error{Retryable(fatal)}, wantErr: "waiting for the thing; last state: state ", timedOut: true},
		"timeout while pending": {opts: Options{What: "x"}, timeout: 50 * time.Millisecond, results: []error{errNotYet}, wantErr: "waiting for x", timedOut: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			tc.opts.Interval = time.Millisecond
			calls := 0
			err := Until(ctx, tc.opts, func(context.Context) (bool, string, error) {
				r := tc.results[min(calls, len(tc.results)-1)]
				calls++
				state := "state " + string(rune('0'+min(calls, 9)))
				if errors.Is(r, errNotYet) {
					return false, state, nil
				}
				return r == nil, state, r
			})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Until: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Until error = %v, want it to contain %q", err, tc.wantErr)
			}
			var timeout *TimeoutError
			if errors.As(err, &timeout) != tc.timedOut {
				t.Fatalf("Until error %v: TimeoutError = %v, want %v", err, !tc.timedOut, tc.timedOut)
			}
			if tc.timedOut && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("timeout error %v does not wrap the context's error", err)
			}
			if tc.timedOut && !strings.HasSuffix(err.Error(), "last error: boom") && strings.Contains(tc.wantErr, "thing") {
				t.Fatalf("timeout error %q does not end with the last error", err)
			}
			if tc.wantCalls > 0 && calls != tc.wantCalls {
				t.Fatalf("check ran %d times, want %d", calls, tc.wantCalls)
			}
		})
	}
}

var errNotYet = errors.New("not yet")
