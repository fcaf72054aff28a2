package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Transient reports whether err is a transport failure that another try, on a fresh
// connection where the old one died, may get past: an SSH session or channel that ended
// with EOF or without an exit status, a reset or refused connection, a forwarded
// connection cut off mid-way. A command that ran and failed, a refused host key or
// credentials are not.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var missing *ssh.ExitMissingError
	var openErr *ssh.OpenChannelError
	if errors.As(err, &missing) || (errors.As(err, &openErr) && openErr.Reason != ssh.Prohibited) {
		return true
	}
	var unknown *UnknownHostKeyError
	var mismatch *HostKeyMismatchError
	if errors.As(err, &unknown) || errors.As(err, &mismatch) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	// x/crypto/ssh reports a connection lost mid-request as plain text.
	msg := err.Error()
	return strings.Contains(msg, "connection lost") || strings.Contains(msg, "ssh: unexpected packet") ||
		strings.Contains(msg, "use of closed network connection")
}

// RetryPolicy bounds Retry: tries and the pause between them (doubled each time).
type RetryPolicy struct {
	Attempts int           // default 5
	MinWait  time.Duration // default 250ms
	MaxWait  time.Duration // default 5s
}

// DefaultRetry is what the provider uses for operations safe to repeat.
var DefaultRetry = RetryPolicy{Attempts: 5, MinWait: 250 * time.Millisecond, MaxWait: 5 * time.Second}

// Retry runs op, an operation safe to repeat, until it succeeds, fails with an error that
// is not Transient, the tries run out or ctx (the resource's timeout) ends. The error
// after the last try says what was tried, how often and over how long.
func Retry(ctx context.Context, p RetryPolicy, what string, op func(context.Context) error) error {
	if p.Attempts <= 0 {
		p.Attempts = DefaultRetry.Attempts
	}
	if p.MinWait <= 0 {
		p.MinWait = DefaultRetry.MinWait
	}
	if p.MaxWait <= 0 {
		p.MaxWait = DefaultRetry.MaxWait
	}
	start, wait := time.Now(), p.MinWait
	var errs []string
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil || !Transient(err) || ctx.Err() != nil {
			if err != nil && attempt > 1 {
				return fmt.Errorf("%s: %w (try %d; earlier tries: %s)", what, err, attempt, strings.Join(errs, "; "))
			}
			return err
		}
		errs = append(errs, err.Error())
		if attempt >= p.Attempts {
			return fmt.Errorf("%s: tried %d times over %s, on a fresh connection after each transport failure; last: %w",
				what, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%s: tried %d times, then the timeout ended it (%w); last: %w", what, attempt, ctx.Err(), err)
		case <-timer.C:
		}
		wait = min(wait*2, p.MaxWait)
	}
}

// RunIdempotent is Run for a command that is safe to run again (it leaves the host in
// the same state however often it runs): a session or connection that dies on the way is
// retried, on a fresh connection if the old one died, within ctx.
func (h *Host) RunIdempotent(ctx context.Context, command, stdin string) (string, error) {
	var out string
	err := Retry(ctx, DefaultRetry, fmt.Sprintf("running a command on %s", h.endpoint), func(ctx context.Context) error {
		var err error
		out, err = h.Run(ctx, command, strings.NewReader(stdin))
		return err
	})
	return out, err
}
