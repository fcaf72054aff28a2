package consul

import (
	"context"
	"errors"
	"fmt"
)

// Deleted is what Delete found and did besides removing things.
type Deleted struct {
	// Foreign is set when the container of that name was not made by microswarm: it was
	// left alone, and only the data volume was removed.
	Foreign error
	// NodeName is the agent's node name, when a container of ours was found.
	NodeName string
	// LeaveErr is a graceful leave that failed; the container was removed anyway.
	LeaveErr error
	// NoLeave says the leave was skipped because the plan said so (the whole cluster is
	// going: see Departures).
	NoLeave bool
}

// DeleteStep names the step of Delete that failed.
type DeleteStep string

const (
	StepInspect         DeleteStep = "inspect"
	StepRemoveContainer DeleteStep = "remove-container"
	StepRemoveVolume    DeleteStep = "remove-volume"
)

// DeleteError is a step of Delete that failed; what came before it was done.
type DeleteError struct {
	Step DeleteStep
	Err  error
}

func (e *DeleteError) Error() string { return e.Err.Error() }
func (e *DeleteError) Unwrap() error { return e.Err }

// Delete takes the agent in container name away in the order that keeps the cluster
// whole: a graceful leave first (the other members see it go, rather than fail it and
// keep it for 72 hours), then the container, then its data volume (name + "-data"). What
// is already gone is fine, so a delete cut short is finished by the next. A container of
// that name that microswarm did not make is left alone; a failed leave does not stop the
// removal (a dead agent cannot leave, and the servers reap it). leave says how to talk
// to the running agent (its flags and TLS, read back from it), and whether to leave at
// all: a server whose whole cluster is being deleted has nobody to hand its place to.
func Delete(ctx context.Context, e Engine, name string, leave func(*Container) (spec Spec, graceful bool)) (Deleted, error) {
	var out Deleted
	c, err := Find(ctx, e, name)
	var notManaged *NotManagedError
	switch {
	case errors.Is(err, ErrNotFound):
	case errors.As(err, &notManaged):
		out.Foreign = err
	case err != nil:
		return out, &DeleteError{Step: StepInspect, Err: fmt.Errorf("inspecting container %s: %w", name, err)}
	default:
		out.NodeName = c.Spec.NodeName
		if spec, graceful := leave(c); graceful {
			out.LeaveErr = Leave(ctx, e, c, spec)
		} else {
			out.NoLeave = true
		}
		if err := Remove(ctx, e, c.ID, ""); err != nil {
			return out, &DeleteError{Step: StepRemoveContainer, Err: err}
		}
	}
	if err := Remove(ctx, e, "", name+"-data"); err != nil {
		return out, &DeleteError{Step: StepRemoveVolume, Err: err}
	}
	return out, nil
}
