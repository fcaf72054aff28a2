package swarm

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	dockerswarm "github.com/docker/docker/api/types/swarm"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// run is one Converge or Dissolve.
type run struct {
	c         *Cluster
	id        string
	ctl       *manager
	members   []Member
	managed   map[string]bool   // node IDs this configuration owns
	targets   map[string]Target // how to reach a node, by node ID
	unlockKey string
	// drain makes removals drain the node and wait for its tasks to move, and remove it
	// from the node list; without it (dissolving) a node only leaves.
	drain bool
	// left are nodes that left while dissolving.
	left map[string]bool
	// replaced are recorded nodes whose host is another machine now (replacedNodes).
	replaced map[string]bool
	done     []string
	warnings []string
	// mu guards members, managed, targets and warnings while steps run at once.
	mu sync.Mutex
}

// maxSteps bounds a converge loop: no plan needs more than a few steps per node.
func (r *run) maxSteps() int { return 4*(len(r.members)+len(r.managed)) + 8 }

func (r *run) converge(ctx context.Context) error {
	var last string
	for i := 0; ; i++ {
		nodes, err := r.nodes(ctx)
		if err != nil {
			return &StepError{Step: "list the swarm's nodes", Done: r.done, Err: err}
		}
		if i == 0 && r.drain { // not while dissolving: every node goes then
			// Resolved first: a member whose host changed claims the node at its address,
			// which may be another member's dead node still listed ready (replacements
			// that got each other's addresses); replacedNodes asks the host.
			r.members = Resolve(nodes, r.members)
			r.replacedNodes(ctx, nodes)
		}
		r.members = Resolve(slices.DeleteFunc(slices.Clone(nodes), func(n Node) bool { return r.replaced[n.ID] }), r.members)
		for _, m := range r.members {
			if m.NodeID != "" {
				r.managed[m.NodeID] = true
				r.targets[m.NodeID] = m.Target
			}
		}
		var managed []string
		for id := range r.managed {
			if !r.left[id] {
				managed = append(managed, id)
			}
		}
		steps, err := Plan(nodes, r.members, managed)
		if err != nil {
			return &StepError{Step: "plan the change", Done: r.done, Err: err}
		}
		if len(steps) == 0 {
			return nil
		}
		step := steps[0]
		if step.String() == last || i >= r.maxSteps() {
			return &StepError{Step: step.String(), Done: r.done, Err: fmt.Errorf("the step had no effect: %s", step.Node.describe())}
		}
		last = step.String()
		if batch := workerJoins(steps); len(batch) > 1 {
			if err := r.applyAtOnce(ctx, batch, nodes, len(steps)-len(batch)); err != nil {
				return err
			}
			continue
		}
		r.c.log(ctx, "swarm step", map[string]any{"swarm_id": r.id, "step": last, "remaining": len(steps) - 1})
		if err := r.apply(ctx, step, nodes); err != nil {
			return &StepError{Step: last, Done: r.done, Err: err}
		}
		r.done = append(r.done, last)
	}
}

// workerJoins returns the joins of workers that lead steps. They can run at once: a
// worker's join changes nothing in the managers' raft group, so no join waits on another,
// whereas managers join (and are promoted and demoted) one at a time, the quorum checked
// before each.
func workerJoins(steps []Step) []Step {
	n := 0
	for n < len(steps) && steps[n].Kind == StepJoin && steps[n].Member.Role == RoleWorker {
		n++
	}
	return steps[:n]
}

// applyAtOnce applies steps concurrently and waits for all of them. The ones that
// succeeded are done even if another failed; the first failure (in step order) is returned.
func (r *run) applyAtOnce(ctx context.Context, steps []Step, nodes []Node, remaining int) error {
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.String()
	}
	r.c.log(ctx, "swarm steps at once", map[string]any{"swarm_id": r.id, "steps": names, "remaining": remaining})
	errs := make([]error, len(steps))
	var wg sync.WaitGroup
	for i, s := range steps {
		wg.Go(func() { errs[i] = r.apply(ctx, s, nodes) })
	}
	wg.Wait()
	var failed *StepError
	for i, err := range errs {
		if err == nil {
			r.done = append(r.done, names[i])
		} else if failed == nil {
			failed = &StepError{Step: names[i], Err: err}
		}
	}
	if failed != nil {
		failed.Done = r.done
		return failed
	}
	return nil
}

func (r *run) apply(ctx context.Context, s Step, nodes []Node) error {
	if (s.Kind == StepDemote || s.Kind == StepRemove) && s.Node.ID == r.ctl.nodeID {
		if err := r.switchControl(ctx, s.Node.ID, nodes); err != nil {
			return err
		}
	}
	switch s.Kind {
	case StepJoin:
		return r.join(ctx, s.Member, nodes)
	case StepRecover:
		return r.recover(ctx, s.Member, s.Node, nodes)
	case StepPromote:
		if err := r.updateNode(ctx, s.Node.ID, func(spec *dockerswarm.NodeSpec) { spec.Role = dockerswarm.NodeRoleManager }); err != nil {
			return err
		}
		return r.waitNode(ctx, s.Node.ID, "to become a reachable manager", func(n Node) bool { return n.Ready() && n.IsManager })
	case StepDemote:
		if err := r.updateNode(ctx, s.Node.ID, func(spec *dockerswarm.NodeSpec) { spec.Role = dockerswarm.NodeRoleWorker }); err != nil {
			return err
		}
		return r.waitNode(ctx, s.Node.ID, "to leave the raft group", func(n Node) bool { return !n.IsManager })
	case StepAvailability:
		return r.updateNode(ctx, s.Node.ID, func(spec *dockerswarm.NodeSpec) {
			spec.Availability = dockerswarm.NodeAvailability(s.Member.Availability)
		})
	case StepRemove:
		return r.remove(ctx, s.Node)
	}
	return fmt.Errorf("unknown step %q", s.Kind)
}

// switchControl moves the API calls to another reachable manager before the current
// one is demoted or removed: never act on the leader through itself.
func (r *run) switchControl(ctx context.Context, avoid string, nodes []Node) error {
	var candidates []Member
	for _, n := range nodes {
		if n.ID == avoid || !n.IsManager || n.Reachability != Reachable {
			continue
		}
		if t, ok := r.targets[n.ID]; ok {
			candidates = append(candidates, Member{Key: n.Hostname, Target: t, NodeID: n.ID})
		}
	}
	f, err := r.c.findManager(ctx, r.id, candidates, r.unlockKey)
	if err != nil {
		return fmt.Errorf("no other reachable manager to act through: %w", err)
	}
	r.ctl = f.manager
	return nil
}

func (r *run) nodes(ctx context.Context) ([]Node, error) {
	list, err := r.ctl.engine.NodeList(ctx, dockerswarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes through %s: %w", r.ctl.member, err)
	}
	return nodesOf(list), nil
}

// nodesOf is a node list in ID order.
func nodesOf(list []dockerswarm.Node) []Node {
	nodes := make([]Node, 0, len(list))
	for _, n := range list {
		nodes = append(nodes, NodeFromDocker(n))
	}
	slices.SortFunc(nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	return nodes
}

func (r *run) status(ctx context.Context) (*Status, error) {
	sw, err := r.ctl.engine.SwarmInspect(ctx)
	if err != nil {
		return nil, fmt.Errorf("inspecting the swarm through %s: %w", r.ctl.member, err)
	}
	nodes, err := r.nodes(ctx)
	if err != nil {
		return nil, err
	}
	return r.statusOf(ctx, sw, nodes)
}

// observeManager is Observe's short way: m's engine asked for the swarm and its nodes at
// once. ok is false unless it answers both, the swarm is id, and m's recorded node is a
// manager there at m's advertise address (when it names one).
func (c *Cluster) observeManager(ctx context.Context, id string, m Member, eng Engine) (st *Status, ok bool) {
	var sw dockerswarm.Swarm
	var list []dockerswarm.Node
	var swErr, listErr error
	var wg sync.WaitGroup
	wg.Go(func() { sw, swErr = eng.SwarmInspect(ctx) })
	wg.Go(func() { list, listErr = eng.NodeList(ctx, dockerswarm.NodeListOptions{}) })
	wg.Wait()
	if swErr != nil || listErr != nil || sw.ID != id {
		return nil, false
	}
	nodes := nodesOf(list)
	i := slices.IndexFunc(nodes, func(n Node) bool { return n.ID == m.NodeID })
	if i < 0 || !nodes[i].IsManager || (m.advertiseHost() != "" && !nodes[i].hasAddress(m.advertiseHost())) {
		return nil, false
	}
	r := &run{c: c, id: id, ctl: &manager{engine: eng, member: m, nodeID: m.NodeID}}
	st, err := r.statusOf(ctx, sw, nodes)
	return st, err == nil
}

// statusOf is the status the manager reported: the swarm sw and its nodes.
func (r *run) statusOf(ctx context.Context, sw dockerswarm.Swarm, nodes []Node) (*Status, error) {
	st := &Status{
		ID:               sw.ID,
		WorkerJoinToken:  sw.JoinTokens.Worker,
		ManagerJoinToken: sw.JoinTokens.Manager,
		Nodes:            nodes,
		ManagerNodeID:    r.ctl.nodeID,
		Settings: Settings{
			DefaultAddrPool: sw.DefaultAddrPool,
			SubnetSize:      sw.SubnetSize,
			DataPathPort:    sw.DataPathPort,
			Autolock:        sw.Spec.EncryptionConfig.AutoLockManagers,
			CertExpiry:      sw.Spec.CAConfig.NodeCertExpiry,
		},
	}
	if l := sw.Spec.Orchestration.TaskHistoryRetentionLimit; l != nil {
		st.Settings.TaskHistoryLimit = *l
	}
	if st.Settings.Autolock {
		key, err := r.ctl.engine.SwarmGetUnlockKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the unlock key through %s: %w", r.ctl.member, err)
		}
		st.UnlockKey = key.UnlockKey
	}
	return st, nil
}

// applySettings updates the in-place settings and rotates the join tokens if asked.
func (r *run) applySettings(ctx context.Context, s Settings, rotate bool) error {
	return r.retryOnNewVersion(ctx, "the swarm's settings", func(ctx context.Context) (uint64, error) {
		sw, err := r.ctl.engine.SwarmInspect(ctx)
		if err != nil {
			return 0, err
		}
		spec := sw.Spec
		changed := false
		if l := spec.Orchestration.TaskHistoryRetentionLimit; l == nil || *l != s.TaskHistoryLimit {
			limit := s.TaskHistoryLimit
			spec.Orchestration.TaskHistoryRetentionLimit = &limit
			changed = true
		}
		if s.CertExpiry > 0 && spec.CAConfig.NodeCertExpiry != s.CertExpiry {
			spec.CAConfig.NodeCertExpiry = s.CertExpiry
			changed = true
		}
		if spec.EncryptionConfig.AutoLockManagers != s.Autolock {
			spec.EncryptionConfig.AutoLockManagers = s.Autolock
			changed = true
		}
		if !changed && !rotate {
			return 0, nil
		}
		flags := dockerswarm.UpdateFlags{RotateWorkerToken: rotate, RotateManagerToken: rotate}
		if err := r.ctl.engine.SwarmUpdate(ctx, sw.Version, spec, flags); err != nil {
			return sw.Version.Index, err
		}
		r.c.log(ctx, "updated the swarm's settings", map[string]any{"swarm_id": r.id, "rotated_join_tokens": flags.RotateWorkerToken})
		return 0, nil
	}, func(ctx context.Context) (uint64, error) {
		sw, err := r.ctl.engine.SwarmInspect(ctx)
		return sw.Version.Index, err
	})
}

// checkInitSettings refuses to adopt a swarm whose init-only settings differ from the
// configured ones: they cannot change, so the configuration could never be met.
func (r *run) checkInitSettings(ctx context.Context, s Settings) error {
	sw, err := r.ctl.engine.SwarmInspect(ctx)
	if err != nil {
		return err
	}
	var diffs []string
	if len(s.DefaultAddrPool) > 0 && !slices.Equal(s.DefaultAddrPool, sw.DefaultAddrPool) {
		diffs = append(diffs, fmt.Sprintf("default address pool %v, not %v", sw.DefaultAddrPool, s.DefaultAddrPool))
	}
	if s.SubnetSize != 0 && s.SubnetSize != sw.SubnetSize {
		diffs = append(diffs, fmt.Sprintf("subnet size %d, not %d", sw.SubnetSize, s.SubnetSize))
	}
	if s.DataPathPort != 0 && s.DataPathPort != sw.DataPathPort {
		diffs = append(diffs, fmt.Sprintf("data path port %d, not %d", sw.DataPathPort, s.DataPathPort))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("swarm %s, found running on %s, was initialised with %s; these are set at init only: "+
			"make the nodes leave it (`docker swarm leave --force`) or configure what it has", r.id, r.ctl.member, strings.Join(diffs, ", "))
	}
	return nil
}

// updateNode changes a node's spec through the current manager.
func (r *run) updateNode(ctx context.Context, id string, change func(*dockerswarm.NodeSpec)) error {
	return r.retryOnNewVersion(ctx, "node "+id, func(ctx context.Context) (uint64, error) {
		n, _, err := r.ctl.engine.NodeInspectWithRaw(ctx, id)
		if err != nil {
			return 0, err
		}
		spec := n.Spec
		change(&spec)
		if spec.Role == n.Spec.Role && spec.Availability == n.Spec.Availability {
			return 0, nil
		}
		if err := r.ctl.engine.NodeUpdate(ctx, id, n.Version, spec); err != nil {
			return n.Version.Index, err
		}
		return 0, nil
	}, func(ctx context.Context) (uint64, error) {
		n, _, err := r.ctl.engine.NodeInspectWithRaw(ctx, id)
		return n.Version.Index, err
	})
}

// retryOnNewVersion runs an update; when it fails and the object's version has moved
// on meanwhile (someone else updated it: "update out of sequence"), it tries again with
// the new version. Any other failure is returned.
func (r *run) retryOnNewVersion(ctx context.Context, what string, update func(context.Context) (uint64, error), version func(context.Context) (uint64, error)) error {
	return wait.Until(ctx, wait.Options{What: "an update of " + what + " to go through"}, func(ctx context.Context) (bool, string, error) {
		used, err := update(ctx)
		if err == nil {
			return true, "", nil
		}
		now, verr := version(ctx)
		if verr == nil && used != 0 && now != used {
			return false, "version moved on", wait.Retryable(err)
		}
		if ctx.Err() == nil && managerBusy(err) {
			// The raft proposal may have gone through: the next try reads the version
			// again and finds the node changed already, or updates it.
			return false, "the manager did not commit in time", wait.Retryable(err)
		}
		return false, "", err
	})
}

// managerBusy reports a manager that could not commit an update in time (its raft
// proposal's deadline passed, or it had no leader for a moment), as a swarm of many nodes
// on busy machines does now and then: another try usually goes through. Seen promoting
// the 4th node of 12 on 2 cores: "rpc error: code = DeadlineExceeded desc = context
// deadline exceeded".
func managerBusy(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "code = DeadlineExceeded") || strings.Contains(msg, "code = Unavailable") ||
		strings.Contains(msg, "lost leader") || strings.Contains(msg, "no elected cluster leader")
}

// waitNode waits until the node, as the current manager sees it, satisfies ok.
func (r *run) waitNode(ctx context.Context, id, what string, ok func(Node) bool) error {
	return wait.Until(ctx, wait.Options{What: "node " + id + " " + what, Interval: 250 * time.Millisecond, MaxInterval: 2 * time.Second},
		func(ctx context.Context) (bool, string, error) {
			d, _, err := r.ctl.engine.NodeInspectWithRaw(ctx, id)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			n := NodeFromDocker(d)
			return ok(n), n.describe(), nil
		})
}

func (r *run) warn(ctx context.Context, msg string) {
	r.mu.Lock()
	r.warnings = append(r.warnings, msg)
	r.mu.Unlock()
	r.c.log(ctx, msg, nil)
}

// claim records that a member's node is id.
func (r *run) claim(key, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.members {
		if r.members[i].Key == key {
			r.members[i].NodeID = id
			r.managed[id] = true
			r.targets[id] = r.members[i].Target
		}
	}
}
