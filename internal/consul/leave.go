package consul

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// LeaveTimeout bounds a graceful leave: a server in a cluster that already lost quorum
// can take a while to give up.
const LeaveTimeout = 60 * time.Second

// Leave makes the agent leave the cluster gracefully (`consul leave` in the container),
// so the servers mark it left, deregister it from the catalog and, for a server, remove
// it from the raft peers; then it waits for the container to exit. The restart policy is
// turned off first, or the engine would start the agent again and it would rejoin.
// spec says how to reach the agent's API from inside the container.
func Leave(ctx context.Context, e Engine, c *Container, spec Spec) error {
	if !c.Running {
		return fmt.Errorf("container %s is %s, so its agent cannot leave gracefully", c.Name, c.State)
	}
	ctx, cancel := context.WithTimeout(ctx, LeaveTimeout)
	defer cancel()
	if _, err := e.ContainerUpdate(ctx, c.ID, container.UpdateConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
	}); err != nil {
		return fmt.Errorf("turning off the restart policy of %s: %w", c.Name, err)
	}
	out, exitCode, execErr := execute(ctx, e, c.ID, spec.CLIEnv(), Binary, "leave")
	if (execErr != nil || exitCode != 0) && stillRunning(ctx, e, c.ID) {
		// The CLI failed (unreachable API, TLS) and the agent is up: waiting cannot help.
		if execErr != nil {
			return fmt.Errorf("running `consul leave` in %s: %w", c.Name, execErr)
		}
		return fmt.Errorf("`consul leave` in %s exited %d: %s", c.Name, exitCode, strings.TrimSpace(out))
	}
	// The agent exits once it has left; an exec cut short by that exit is a success.
	if _, err := waitExited(ctx, e, c.ID); err != nil {
		if execErr != nil {
			return fmt.Errorf("running `consul leave` in %s: %w", c.Name, execErr)
		}
		return fmt.Errorf("the agent in %s did not exit after `consul leave` (%s): %w", c.Name, strings.TrimSpace(out), err)
	}
	return nil
}

func stillRunning(ctx context.Context, e Engine, id string) bool {
	info, err := e.ContainerInspect(ctx, id)
	return err == nil && info.State != nil && info.State.Running
}

// execute runs a command in a running container and returns its output and exit code.
func execute(ctx context.Context, e Engine, id string, env []string, cmd ...string) (string, int, error) {
	created, err := e.ContainerExecCreate(ctx, id, container.ExecOptions{
		Cmd: cmd, Env: env, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return "", 0, err
	}
	attached, err := e.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", 0, err
	}
	defer attached.Close()
	if deadline, ok := ctx.Deadline(); ok && attached.Conn != nil {
		_ = attached.Conn.SetDeadline(deadline)
	}
	var out bytes.Buffer
	_, copyErr := stdcopy.StdCopy(&out, &out, attached.Reader)
	inspected, err := e.ContainerExecInspect(ctx, created.ID)
	if err != nil {
		return out.String(), 0, errors.Join(copyErr, err)
	}
	if inspected.Running {
		return out.String(), 0, fmt.Errorf("the command was still running when its output ended: %w", errors.Join(copyErr, ctx.Err()))
	}
	return out.String(), inspected.ExitCode, nil
}

// waitExited waits, bounded by ctx, until the container is not running.
func waitExited(ctx context.Context, e Engine, id string) (bool, error) {
	waitC, errC := e.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case <-waitC:
		return true, nil
	case err := <-errC:
		return false, err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}
