// Package swarmservice creates, updates, waits for and removes swarm services through a
// manager's Docker API: find-or-create by name and owner label, so a create is safe to
// re-run; convergence judged on task state, not on the CLI's progress display; removal
// that tolerates what is already gone.
package swarmservice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// LabelOwner marks a service made by the provider, with the resource type as value; a
// create adopts a service of the same name only when it carries this label.
const LabelOwner = "microswarm.owner"

// LabelSpecHash holds the hash of the spec the provider last applied: the engine fills
// in defaults, so the live spec never equals the one sent, and comparing hashes is what
// tells an unchanged service (no update, no version bump) from a changed one.
const LabelSpecHash = "microswarm.spec-hash"

// withOwner labels spec with its owner and its own hash.
func withOwner(spec swarm.ServiceSpec, owner string) swarm.ServiceSpec {
	labels := map[string]string{}
	for k, v := range spec.Labels {
		if k != LabelSpecHash {
			labels[k] = v
		}
	}
	labels[LabelOwner] = owner
	spec.Labels = labels
	raw, _ := json.Marshal(spec)
	sum := sha256.Sum256(raw)
	spec.Labels = maps.Clone(labels)
	spec.Labels[LabelSpecHash] = hex.EncodeToString(sum[:])[:16]
	return spec
}

// Engine is the part of a manager's Docker API this package uses (*client.Client).
type Engine interface {
	ServiceCreate(ctx context.Context, service swarm.ServiceSpec, options swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error)
	ServiceInspectWithRaw(ctx context.Context, serviceID string, options swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, service swarm.ServiceSpec, options swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
	ServiceRemove(ctx context.Context, serviceID string) error
	ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error)
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
	NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error)
}

// ErrNotFound says the service does not exist.
var ErrNotFound = errors.New("service not found")

// ForeignServiceError says a service of the wanted name exists but was not made by the
// provider: it is never adopted silently.
type ForeignServiceError struct{ Name, ID string }

func (e *ForeignServiceError) Error() string {
	return fmt.Sprintf("a swarm service named %q (%s) exists and was not created by microswarm (no %s label): "+
		"import it, remove it, or choose another name", e.Name, e.ID, LabelOwner)
}

// Get returns the service by ID or name, ErrNotFound when it is gone.
func Get(ctx context.Context, e Engine, idOrName string) (swarm.Service, error) {
	svc, _, err := e.ServiceInspectWithRaw(ctx, idOrName, swarm.ServiceInspectOptions{})
	if errdefs.IsNotFound(err) {
		return swarm.Service{}, ErrNotFound
	}
	return svc, err
}

// Ensure creates the service spec describes, or adopts the one of that name the same
// owner made before (a create that failed half-way) and brings it to spec. The image is
// not resolved to a digest against a registry (nodes pull the tag through their own
// mirror and credentials).
func Ensure(ctx context.Context, e Engine, spec swarm.ServiceSpec, owner string) (svc swarm.Service, adopted bool, err error) {
	spec = withOwner(spec, owner)
	existing, err := Get(ctx, e, spec.Name)
	switch {
	case err == nil:
		if existing.Spec.Labels[LabelOwner] != owner || existing.Spec.Name != spec.Name {
			return swarm.Service{}, false, &ForeignServiceError{Name: spec.Name, ID: existing.ID}
		}
		if err := update(ctx, e, existing, spec); err != nil {
			return swarm.Service{}, false, err
		}
		svc, err = Get(ctx, e, existing.ID)
		return svc, true, err
	case !errors.Is(err, ErrNotFound):
		return swarm.Service{}, false, err
	}
	created, err := e.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{QueryRegistry: false})
	if err != nil {
		return swarm.Service{}, false, fmt.Errorf("create service %s: %w", spec.Name, err)
	}
	svc, err = Get(ctx, e, created.ID)
	return svc, false, err
}

// Update brings the service to spec, unless it already is (the same spec hash).
func Update(ctx context.Context, e Engine, id string, spec swarm.ServiceSpec, owner string) error {
	current, err := Get(ctx, e, id)
	if err != nil {
		return err
	}
	return update(ctx, e, current, withOwner(spec, owner))
}

// UpToDate reports whether live already is spec as Ensure would make it for owner: Ensure
// would not update it.
func UpToDate(live swarm.Service, spec swarm.ServiceSpec, owner string) bool {
	return upToDate(live, withOwner(spec, owner))
}

func upToDate(current swarm.Service, spec swarm.ServiceSpec) bool {
	return current.Spec.Labels[LabelSpecHash] == spec.Labels[LabelSpecHash] && sameJSON(coreOf(current.Spec), coreOf(spec))
}

// update brings current to spec (already labelled by withOwner), unless it already is.
func update(ctx context.Context, e Engine, current swarm.Service, spec swarm.ServiceSpec) error {
	if upToDate(current, spec) {
		return nil
	}
	resp, err := e.ServiceUpdate(ctx, current.ID, current.Version, spec, swarm.ServiceUpdateOptions{QueryRegistry: false})
	if err != nil {
		return fmt.Errorf("update service %s: %w", spec.Name, err)
	}
	if len(resp.Warnings) > 0 {
		return fmt.Errorf("update service %s: %s", spec.Name, strings.Join(resp.Warnings, "; "))
	}
	return nil
}

// Remove removes the services, if they are still there, all at once, and waits until
// their tasks are gone (their containers stopped), bounded by ctx. The wait polls often
// and evenly: a task stops within its grace period, and each pause past that is a pause
// of every destroy.
func Remove(ctx context.Context, e Engine, ids ...string) error {
	if err := RemoveNoWait(ctx, e, ids...); err != nil {
		return err
	}
	return WaitStopped(ctx, e, ids...)
}

// RemoveNoWait removes the services, if they are still there, and returns while their
// tasks stop: what only the services held (their configs, node labels) can go meanwhile.
// WaitStopped waits for the tasks.
func RemoveNoWait(ctx context.Context, e Engine, ids ...string) error {
	for _, id := range ids {
		if err := e.ServiceRemove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove service %s: %w", id, err)
		}
	}
	return nil
}

// WaitStopped waits until no task of the removed services ids runs on a ready node,
// bounded by ctx. No ids: nothing to wait for, and no call.
func WaitStopped(ctx context.Context, e Engine, ids ...string) error {
	return WaitStoppedOr(ctx, e, nil, ids...)
}

// WaitStoppedOr is WaitStopped that also takes a task as stopped when seen (not nil) says
// so by its ID: its node's own engine saw its container stopped. The manager hears of
// that late: a node that had begun its graceful stop of the task (Docker pauses 2 s first,
// for the load balancer's gossip, when the task is on a network) reports it only once
// that pause is over, however the container ended meanwhile.
func WaitStoppedOr(ctx context.Context, e Engine, seen func(taskID string) bool, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	waiting := map[string]bool{}
	for _, id := range ids {
		waiting[id] = true
	}
	what := "service " + strings.Join(ids, ", ") + "'s tasks to stop"
	return wait.Until(ctx, wait.Options{What: what, Interval: 100 * time.Millisecond, MaxInterval: 250 * time.Millisecond},
		func(ctx context.Context) (bool, string, error) {
			// Not filtered by service: the engine refuses that filter once the service is gone.
			tasks, err := e.TaskList(ctx, swarm.TaskListOptions{})
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			nodes, err := e.NodeList(ctx, swarm.NodeListOptions{})
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			// A task on a node that is down can never report that it stopped: its node
			// is gone (or stops it when it comes back), so it is not waited for.
			ready := map[string]bool{}
			for _, n := range nodes {
				ready[n.ID] = n.Status.State == swarm.NodeStateReady
			}
			live, unreachable := 0, 0
			for _, t := range tasks {
				switch {
				case !waiting[t.ServiceID] || terminal(t.Status.State) || (seen != nil && seen(t.ID)):
				case t.NodeID != "" && !ready[t.NodeID]:
					unreachable++
				default:
					live++
				}
			}
			return live == 0, fmt.Sprintf("%d tasks still running (and %d on nodes that are down)", live, unreachable), nil
		})
}

// Status is a service's tasks as a user wants to see them.
type Status struct {
	Desired int
	Running int
	// Tasks are the tasks meant to run, by node hostname (node ID when unknown) and slot.
	Tasks []Task
}

// Task is one task meant to run.
type Task struct {
	ID, Node, NodeID, State, Error string
	Slot                           int
	// Current says the task runs the service's current spec.
	Current bool
}

// ReadStatus reads the service's tasks, the nodes they run on and how many it wants.
func ReadStatus(ctx context.Context, e Engine, svc swarm.Service) (Status, error) {
	tasks, err := e.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", svc.ID), filters.Arg("desired-state", string(swarm.TaskStateRunning)))})
	if err != nil {
		return Status{}, err
	}
	nodes, err := e.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return Status{}, err
	}
	hostnames := map[string]string{}
	for _, n := range nodes {
		hostnames[n.ID] = n.Description.Hostname
	}
	var st Status
	for _, t := range tasks {
		task := Task{
			ID: t.ID, NodeID: t.NodeID, Node: hostnames[t.NodeID], Slot: t.Slot,
			State: string(t.Status.State), Error: t.Status.Err,
			Current: sameJSON(taskKey(t.Spec), taskKey(svc.Spec.TaskTemplate)),
		}
		if task.Node == "" {
			task.Node = t.NodeID
		}
		st.Tasks = append(st.Tasks, task)
		if t.Status.State == swarm.TaskStateRunning && task.Current {
			st.Running++
		}
	}
	slices.SortFunc(st.Tasks, func(a, b Task) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return a.Slot - b.Slot
	})
	st.Desired = desiredTasks(ctx, e, svc)
	return st, nil
}

// desiredTasks is how many tasks the service should run: its replicas, or for a global
// service the number of nodes the orchestrator finds eligible.
func desiredTasks(ctx context.Context, e Engine, svc swarm.Service) int {
	if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
		return int(*r.Replicas)
	}
	list, err := e.ServiceList(ctx, swarm.ServiceListOptions{Status: true, Filters: filters.NewArgs(filters.Arg("id", svc.ID))})
	if err == nil {
		for _, s := range list {
			if s.ID == svc.ID && s.ServiceStatus != nil {
				return int(s.ServiceStatus.DesiredTasks)
			}
		}
	}
	return -1
}

// UpdateFailedError says swarm paused or rolled back an update of the service.
type UpdateFailedError struct {
	Service, State, Message string
}

func (e *UpdateFailedError) Error() string {
	return fmt.Sprintf("the update of service %s is %s: %s", e.Service, e.State, e.Message)
}

// WaitConverged waits until every task the service wants runs its current spec, with
// ctx's deadline; a timeout reports each task that is not there yet and why.
func WaitConverged(ctx context.Context, e Engine, id string) (Status, error) {
	var last Status
	err := wait.Until(ctx, wait.Options{What: "service " + id + " to converge", Interval: 100 * time.Millisecond, MaxInterval: time.Second},
		func(ctx context.Context) (bool, string, error) {
			svc, err := Get(ctx, e, id)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			if u := svc.UpdateStatus; u != nil {
				switch u.State {
				case swarm.UpdateStatePaused, swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackPaused, swarm.UpdateStateRollbackCompleted:
					return false, "", &UpdateFailedError{Service: svc.Spec.Name, State: string(u.State), Message: u.Message}
				}
			}
			st, err := ReadStatus(ctx, e, svc)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			last = st
			done := st.Desired >= 0 && st.Running == st.Desired && len(st.Tasks) == st.Desired
			return done, st.Describe(), nil
		})
	return last, err
}

// Describe says how far the service is, naming the tasks that are not running.
func (s Status) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d tasks running", s.Running, s.Desired)
	for _, t := range s.Tasks {
		if t.State == string(swarm.TaskStateRunning) && t.Current {
			continue
		}
		fmt.Fprintf(&b, "; task %s on %s: %s", t.ID, t.Node, t.State)
		if !t.Current {
			b.WriteString(" (previous spec)")
		}
		if t.Error != "" {
			b.WriteString(" (" + t.Error + ")")
		}
	}
	return b.String()
}

func terminal(s swarm.TaskState) bool {
	switch s {
	case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateOrphaned, swarm.TaskStateRemove:
		return true
	}
	return false
}

// core is what a user controls of a service, in a form the engine reports back as sent:
// a live spec whose core differs from the one applied was changed out of band.
type core struct {
	Replicas    *uint64
	Global      bool
	Image       string
	Command     []string
	Args        []string
	Env         []string
	Labels      map[string]string
	Hostname    string
	Mounts      []string
	Secrets     []string
	Configs     []string
	Healthcheck any
	Constraints []string
	Resources   any
	Ports       []string
}

func coreOf(spec swarm.ServiceSpec) core {
	c := core{Global: spec.Mode.Global != nil, Constraints: nil}
	if r := spec.Mode.Replicated; r != nil {
		c.Replicas = r.Replicas
	}
	if cs := spec.TaskTemplate.ContainerSpec; cs != nil {
		c.Image, c.Hostname = cs.Image, cs.Hostname
		c.Command, c.Args, c.Env = nilIfEmpty(cs.Command), nilIfEmpty(cs.Args), nilIfEmpty(cs.Env)
		if len(cs.Labels) > 0 {
			c.Labels = cs.Labels
		}
		for _, m := range cs.Mounts {
			c.Mounts = append(c.Mounts, fmt.Sprintf("%s:%s:%s:%t", m.Type, m.Source, m.Target, m.ReadOnly))
		}
		for _, sec := range cs.Secrets {
			c.Secrets = append(c.Secrets, sec.SecretName)
		}
		for _, cfg := range cs.Configs {
			c.Configs = append(c.Configs, cfg.ConfigName)
		}
		if cs.Healthcheck != nil {
			c.Healthcheck = cs.Healthcheck
		}
	}
	if p := spec.TaskTemplate.Placement; p != nil {
		c.Constraints = nilIfEmpty(p.Constraints)
	}
	if r := spec.TaskTemplate.Resources; r != nil && r.Limits != nil && (r.Limits.NanoCPUs != 0 || r.Limits.MemoryBytes != 0) {
		c.Resources = r.Limits
	}
	if ep := spec.EndpointSpec; ep != nil {
		for _, p := range ep.Ports {
			c.Ports = append(c.Ports, fmt.Sprintf("%d:%d/%s/%s", p.PublishedPort, p.TargetPort, p.Protocol, p.PublishMode))
		}
	}
	return c
}

// nilIfEmpty: the engine reports an empty list as absent.
func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// taskKey is the part of a task spec that the engine reports the same way for a service
// and its tasks (a task's spec comes back without the restart policy, runtime and stop
// grace period the service holds), so a task running the current spec compares equal.
func taskKey(spec swarm.TaskSpec) swarm.TaskSpec {
	spec.RestartPolicy, spec.Runtime = nil, ""
	if spec.ContainerSpec != nil {
		cs := *spec.ContainerSpec
		cs.StopGracePeriod = nil
		spec.ContainerSpec = &cs
	}
	return spec
}

// sameJSON compares two API values as the engine would serialise them.
func sameJSON(a, b any) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && string(ja) == string(jb)
}
