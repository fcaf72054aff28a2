package droplet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// Readiness is what a node reports once it is a usable Docker host.
type Readiness struct {
	// HostKey is the SSH host key that was verified (or, on first use, recorded).
	HostKey       string
	DockerVersion string
}

// NotReadyError says which part of a node did not come up.
type NotReadyError struct {
	Stage string // "ssh" or "docker"
	Host  string
	Err   error
}

func (e *NotReadyError) Error() string {
	switch e.Stage {
	case "ssh":
		return fmt.Sprintf("SSH on %s did not come up: %s", e.Host, e.Err)
	default:
		return fmt.Sprintf("the Docker API on %s did not answer: %s", e.Host, e.Err)
	}
}

func (e *NotReadyError) Unwrap() error { return e.Err }

// WaitReady waits until the host answers SSH with an acceptable host key and then its
// Docker API answers. A host key that is refused ends the wait at once: retrying
// cannot make an untrusted key trusted.
func WaitReady(ctx context.Context, pool *conn.Pool, target conn.Target) (Readiness, error) {
	var host *conn.Host
	err := wait.Until(ctx, wait.Options{What: "SSH on " + target.Host, Interval: 250 * time.Millisecond, MaxInterval: time.Second},
		func(ctx context.Context) (bool, string, error) {
			h, err := pool.Open(ctx, target)
			if err != nil {
				var unknown *conn.UnknownHostKeyError
				var mismatch *conn.HostKeyMismatchError
				if errors.As(err, &unknown) || errors.As(err, &mismatch) {
					return false, "", err
				}
				return false, "", wait.Retryable(err)
			}
			host = h
			return true, "", nil
		})
	if err != nil {
		return Readiness{}, &NotReadyError{Stage: "ssh", Host: target.Host, Err: err}
	}
	docker, err := host.Docker()
	if err != nil {
		return Readiness{}, &NotReadyError{Stage: "docker", Host: target.Host, Err: err}
	}
	var version string
	err = wait.Until(ctx, wait.Options{What: "the Docker API on " + target.Host, Interval: 250 * time.Millisecond, MaxInterval: time.Second},
		func(ctx context.Context) (bool, string, error) {
			v, err := docker.ServerVersion(ctx)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			version = v.Version
			return true, "", nil
		})
	if err != nil {
		return Readiness{}, &NotReadyError{Stage: "docker", Host: target.Host, Err: err}
	}
	return Readiness{HostKey: host.HostKey(), DockerVersion: version}, nil
}
