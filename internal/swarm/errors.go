package swarm

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// QuorumError says a change would leave the raft group without a quorum, or that it
// has none already.
type QuorumError struct {
	// Step is the change that would break the quorum.
	Step string
	// Managers and Reachable count the raft group after the step.
	Managers, Reachable int
	// Unreachable lists the managers that are unreachable now.
	Unreachable []string
}

func (e *QuorumError) Error() string {
	msg := fmt.Sprintf("%s would leave %d manager(s) with %d reachable, below the quorum of %d", e.Step, e.Managers, e.Reachable, Quorum(e.Managers))
	if e.Managers < 1 {
		msg = e.Step + " would leave the swarm without a manager"
	}
	if len(e.Unreachable) > 0 {
		msg += "; unreachable managers: " + strings.Join(e.Unreachable, ", ")
	}
	return msg
}

// UnreachableError says a node's engine could not be reached.
type UnreachableError struct {
	Member string
	// Tried is how long it was retried; zero for a single attempt.
	Tried time.Duration
	// Err is the last error.
	Err error
}

func (e *UnreachableError) Error() string {
	if e.Tried > 0 {
		return fmt.Sprintf("could not reach the Docker engine of %s for %s: %s", e.Member, e.Tried.Round(time.Second), e.Err)
	}
	return fmt.Sprintf("could not reach the Docker engine of %s: %s", e.Member, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// OtherSwarmError says a node belongs to a swarm other than this one.
type OtherSwarmError struct {
	Member string
	// ClusterID is the other swarm's ID when the node is one of its managers.
	ClusterID string
	// Managers are the other swarm's manager addresses when the node is a worker.
	Managers []string
}

func (e *OtherSwarmError) Error() string {
	if e.ClusterID != "" {
		return fmt.Sprintf("%s is a manager of another swarm (%s)", e.Member, e.ClusterID)
	}
	return fmt.Sprintf("%s is a worker of another swarm (managers %s)", e.Member, strings.Join(e.Managers, ", "))
}

// NoManagerError says none of the candidate managers answered as a manager of the swarm.
type NoManagerError struct {
	SwarmID string
	// Tried says, per candidate, why it was not used.
	Tried []string
	// Gone is true when every candidate answered and none is in the swarm any more:
	// the swarm was dissolved outside Terraform.
	Gone bool
}

func (e *NoManagerError) Error() string {
	what := "no reachable swarm manager"
	if e.SwarmID != "" {
		what = "no reachable manager of swarm " + e.SwarmID
	}
	if len(e.Tried) == 0 {
		return what + ": the configuration names no manager"
	}
	return what + ": " + strings.Join(e.Tried, "; ")
}

// LockedError says a manager is locked (autolock) and no unlocked manager reported the
// unlock key.
type LockedError struct {
	Member string
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s is locked (autolock is on and its engine restarted) and no unlocked manager reported the unlock key", e.Member)
}

// StepError is the failure of one step, with the steps done before it.
type StepError struct {
	Step string
	Done []string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %s", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks an error a Connector returns as one that retrying cannot cure (a
// refused host key, an invalid host): the node is not retried until the timeout.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
