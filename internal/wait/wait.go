// Package wait polls a check until it is done, fails or its context ends, with backoff,
// and reports a timeout with the last state seen.
package wait

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Check reports whether the awaited condition holds. state describes what was seen
// (for the timeout error); a non-nil err stops the wait at once unless it is Retryable.
type Check func(ctx context.Context) (done bool, state string, err error)

// Options tune the polling. Zero values take the defaults.
type Options struct {
	// What names the awaited condition in errors: "droplet 42 to become active".
	What string
	// Interval is the first pause between checks (default 250ms); it grows by Factor
	// (default 1.5) up to MaxInterval (default 5s).
	Interval    time.Duration
	MaxInterval time.Duration
	Factor      float64
	// Consecutive is how many successes in a row count as done (default 1).
	Consecutive int
}

// TimeoutError says the condition did not hold before the context ended.
type TimeoutError struct {
	What      string
	Elapsed   time.Duration
	LastState string
	LastErr   error
	Cause     error
}

func (e *TimeoutError) Error() string {
	msg := fmt.Sprintf("timed out after %s waiting for %s", e.Elapsed.Round(time.Second), e.What)
	if e.LastState != "" {
		msg += "; last state: " + e.LastState
	}
	if e.LastErr != nil {
		msg += "; last error: " + e.LastErr.Error()
	}
	return msg
}

func (e *TimeoutError) Unwrap() error { return e.Cause }

type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

// Retryable marks an error a Check returns as passing: polling goes on, and the error is
// reported if the wait times out.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return retryable{err}
}

// Until runs check until it is done (Consecutive times in a row), returns a
// non-retryable error, or ctx ends (then *TimeoutError).
func Until(ctx context.Context, opts Options, check Check) error {
	interval := opts.Interval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	maxInterval := opts.MaxInterval
	if maxInterval <= 0 {
		maxInterval = 5 * time.Second
	}
	factor := opts.Factor
	if factor < 1 {
		factor = 1.5
	}
	need := max(opts.Consecutive, 1)

	start := time.Now()
	var lastState string
	var lastErr error
	streak := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return &TimeoutError{What: opts.What, Elapsed: time.Since(start), LastState: lastState, LastErr: lastErr, Cause: ctx.Err()}
		case <-timer.C:
		}
		done, state, err := check(ctx)
		if state != "" {
			lastState = state
		}
		var r retryable
		switch {
		case errors.As(err, &r):
			lastErr, streak = r.err, 0
		case err != nil:
			if ctx.Err() != nil {
				return &TimeoutError{What: opts.What, Elapsed: time.Since(start), LastState: lastState, LastErr: err, Cause: ctx.Err()}
			}
			return err
		case done:
			streak++
			if streak >= need {
				return nil
			}
			lastErr = nil
		default:
			streak, lastErr = 0, nil
		}
		timer.Reset(interval)
		interval = min(time.Duration(float64(interval)*factor), maxInterval)
	}
}
