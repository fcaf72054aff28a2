package swarm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// Engine is the part of the Docker API client the package uses; *client.Client has it.
type Engine interface {
	Info(ctx context.Context) (system.Info, error)
	SwarmInit(ctx context.Context, req dockerswarm.InitRequest) (string, error)
	SwarmJoin(ctx context.Context, req dockerswarm.JoinRequest) error
	SwarmLeave(ctx context.Context, force bool) error
	SwarmInspect(ctx context.Context) (dockerswarm.Swarm, error)
	SwarmUpdate(ctx context.Context, version dockerswarm.Version, spec dockerswarm.Spec, flags dockerswarm.UpdateFlags) error
	SwarmGetUnlockKey(ctx context.Context) (dockerswarm.UnlockKeyResponse, error)
	SwarmUnlock(ctx context.Context, req dockerswarm.UnlockRequest) error
	NodeList(ctx context.Context, options dockerswarm.NodeListOptions) ([]dockerswarm.Node, error)
	NodeInspectWithRaw(ctx context.Context, nodeID string) (dockerswarm.Node, []byte, error)
	NodeUpdate(ctx context.Context, nodeID string, version dockerswarm.Version, node dockerswarm.NodeSpec) error
	NodeRemove(ctx context.Context, nodeID string, options dockerswarm.NodeRemoveOptions) error
	TaskList(ctx context.Context, options dockerswarm.TaskListOptions) ([]dockerswarm.Task, error)
}

// Connector reaches a node's engine. It returns errors wrapped with Permanent when
// retrying cannot help.
type Connector func(ctx context.Context, t Target) (Engine, error)

// DefaultReachTimeout bounds how long a node that must join or leave is retried.
const DefaultReachTimeout = time.Minute

// Cluster carries out changes to a swarm through its nodes' engines.
type Cluster struct {
	Connect Connector
	// Log receives progress messages; nil discards them.
	Log func(ctx context.Context, msg string, fields map[string]any)
	// ReachTimeout bounds retrying a node that must join, recover or leave; default
	// DefaultReachTimeout. Reads never retry.
	ReachTimeout time.Duration
}

// Settings are the swarm-wide options. Zero values of the init-only ones
// (DefaultAddrPool, SubnetSize, DataPathPort) mean Docker's defaults.
type Settings struct {
	DefaultAddrPool  []string
	SubnetSize       uint32
	DataPathPort     uint32
	TaskHistoryLimit int64
	Autolock         bool
	// CertExpiry is the node certificates' validity; zero keeps the swarm's.
	CertExpiry time.Duration
}

// Status is what a manager reports about the swarm.
type Status struct {
	ID               string
	WorkerJoinToken  string
	ManagerJoinToken string
	// UnlockKey is set when autolock is on.
	UnlockKey string
	Settings  Settings
	Nodes     []Node
	// ManagerNodeID is the node of the manager that answered.
	ManagerNodeID string
}

// Node returns the node with the given ID.
func (s *Status) Node(id string) (Node, bool) {
	i := slices.IndexFunc(s.Nodes, func(n Node) bool { return n.ID == id })
	if id == "" || i < 0 {
		return Node{}, false
	}
	return s.Nodes[i], true
}

// Desired is the swarm a configuration describes.
type Desired struct {
	// ID is the swarm's ID; empty before it exists. Converge then adopts the swarm a
	// configured manager already runs (an interrupted create), or initialises one on
	// the first manager in key order.
	ID      string
	Members []Member
	// Prior are the members as last recorded: their nodes belong to this configuration
	// (those no member claims any more are removed) and their hosts reach them.
	Prior            []Member
	Settings         Settings
	RotateJoinTokens bool
	// UnlockKey unlocks managers that restarted with autolock on.
	UnlockKey string
}

// Result is the swarm after Converge.
type Result struct {
	Status
	// Members are the desired members with their nodes (NodeID empty for a member that
	// did not join).
	Members []Member
	// Adopted says Converge found the swarm an interrupted create left, rather than
	// initialising a new one.
	Adopted bool
	// Done lists the steps carried out, in order.
	Done []string
	// Warnings are things the change had to skip, such as a removed node that could not
	// be reached to make it leave.
	Warnings []string
	// observed says Status holds the swarm as a manager reported it after the change,
	// rather than only its ID.
	observed bool
}

// Observed says the result holds the swarm as a manager reported it, not only its ID.
func (r *Result) Observed() bool { return r.observed }

// manager is the manager the API calls go to.
type manager struct {
	engine Engine
	member Member
	nodeID string
}

// Converge makes the swarm what d describes: it initialises or finds it, applies the
// settings, then repeats (observe, plan, carry out the first step) until the plan is
// empty, so that every step is chosen from the swarm as it is, not as it was. On
// failure it returns the swarm as last seen (nil if there is none yet) with the error.
func (c *Cluster) Converge(ctx context.Context, d Desired) (*Result, error) {
	members := slices.Clone(d.Members)
	slices.SortFunc(members, func(a, b Member) int { return cmp.Compare(a.Key, b.Key) })
	r := &run{c: c, members: members, managed: map[string]bool{}, targets: map[string]Target{}, unlockKey: d.UnlockKey, drain: true}
	for _, p := range d.Prior {
		if p.NodeID != "" {
			r.managed[p.NodeID] = true
			r.targets[p.NodeID] = p.Target
		}
	}
	res := &Result{}

	// Configured hosts first: recorded ones can be guesses (after an import).
	candidates := append(managersOf(members), managersOf(d.Prior)...)
	ctl, err := c.findManager(ctx, d.ID, candidates, d.UnlockKey)
	var none *NoManagerError
	switch {
	case err == nil:
		r.id, r.ctl = ctl.id, ctl.manager
		res.Adopted = d.ID == ""
		if res.Adopted {
			c.log(ctx, "adopting the swarm a configured manager already runs", map[string]any{"swarm_id": r.id, "manager": ctl.member.String()})
		}
	case d.ID == "" && errors.As(err, &none):
		first := managersOf(members)
		if len(first) == 0 {
			return nil, errors.New("a swarm needs at least one manager; the configuration names none")
		}
		m, id, err := c.initSwarm(ctx, first[0], d.Settings)
		if err != nil {
			return nil, &StepError{Step: "initialise the swarm on " + first[0].String(), Err: err}
		}
		r.id, r.ctl = id, m
		r.done = append(r.done, "initialise the swarm on "+first[0].String())
	default:
		return nil, err
	}
	r.targets[r.ctl.nodeID] = r.ctl.member.Target

	fail := func(err error) (*Result, error) {
		// Report the swarm as it is now, even when ctx has run out.
		obsCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if st, obsErr := r.status(obsCtx); obsErr == nil {
			res.Status = *st
			res.Members = Resolve(st.Nodes, r.members)
			res.observed = true
		} else {
			res.ID = r.id
			res.Members = r.members
		}
		res.Done, res.Warnings = r.done, r.warnings
		return res, err
	}

	if res.Adopted {
		if err := r.checkInitSettings(ctx, d.Settings); err != nil {
			return fail(err)
		}
	}
	if err := r.applySettings(ctx, d.Settings, d.RotateJoinTokens); err != nil {
		return fail(&StepError{Step: "update the swarm's settings", Done: r.done, Err: err})
	}
	if err := r.converge(ctx); err != nil {
		return fail(err)
	}
	st, err := r.status(ctx)
	if err != nil {
		return fail(err)
	}
	res.Status = *st
	res.Members = Resolve(st.Nodes, r.members)
	res.Done, res.Warnings = r.done, r.warnings
	res.observed = true
	return res, nil
}

// Observe reports the swarm through the first candidate that answers as its manager.
// With an empty id it reports whatever swarm the first manager runs (import).
func (c *Cluster) Observe(ctx context.Context, id string, candidates []Member, unlockKey string) (*Status, error) {
	found, err := c.findManager(ctx, id, candidates, unlockKey)
	if err != nil {
		return nil, err
	}
	r := &run{c: c, id: found.id, ctl: found.manager}
	return r.status(ctx)
}

// Dissolve takes the swarm apart: every member but one manager is demoted (one at a
// time, keeping the quorum) and leaves, then the last manager leaves with force.
// Nodes that cannot be reached are reported as warnings, not errors: a node that is
// gone has nothing left to leave.
func (c *Cluster) Dissolve(ctx context.Context, id string, members []Member, unlockKey string) (warnings []string, err error) {
	found, err := c.findManager(ctx, id, managersOf(members), unlockKey)
	var none *NoManagerError
	if errors.As(err, &none) {
		// No manager of ours answers: make whatever still belongs to the swarm leave.
		if !none.Gone {
			warnings = append(warnings, "no manager of the swarm answered ("+none.Error()+"); making the reachable members leave one by one")
		}
		return append(warnings, c.leaveEach(ctx, id, members)...), nil
	}
	if err != nil {
		return nil, err
	}
	r := &run{c: c, id: found.id, ctl: found.manager, managed: map[string]bool{}, targets: map[string]Target{},
		unlockKey: unlockKey, left: map[string]bool{}}
	nodes, err := r.nodes(ctx)
	if err != nil {
		// Without a node list (no quorum, say) there is no order to keep.
		warnings = append(warnings, fmt.Sprintf("the swarm's nodes could not be listed (%s); making the members leave with force", err))
		return append(warnings, c.leaveEach(ctx, id, members)...), nil
	}
	for _, m := range Resolve(nodes, members) {
		if m.NodeID != "" {
			r.managed[m.NodeID] = true
			r.targets[m.NodeID] = m.Target
		}
	}
	keep := r.ctl.member
	keep.Role, keep.Availability, keep.NodeID = RoleManager, "", r.ctl.nodeID
	r.members = []Member{keep}
	err = r.converge(ctx)
	warnings = append(warnings, r.warnings...)
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("taking the swarm apart in order failed (%s); making the remaining members leave with force", err))
		warnings = append(warnings, c.leaveEach(ctx, id, members)...)
	}
	if err := r.ctl.engine.SwarmLeave(ctx, true); err != nil && !isNotInSwarm(ctx, r.ctl.engine) {
		return warnings, fmt.Errorf("the last manager, %s, did not leave: %w", r.ctl.member, err)
	}
	c.log(ctx, "swarm dissolved", map[string]any{"swarm_id": id, "last_manager": r.ctl.member.String()})
	return warnings, nil
}

// leaveEach makes every reachable member that is still in a swarm leave, with force,
// workers before managers. It returns a warning per member it could not make leave.
func (c *Cluster) leaveEach(ctx context.Context, id string, members []Member) []string {
	ordered := ByRole(members, false)
	var warnings []string
	for _, m := range ordered {
		eng, info, err := c.connectOnce(ctx, m.Target)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s could not be reached, so it was not made to leave: %s", m, err))
			continue
		}
		sw := info.Swarm
		if sw.LocalNodeState == dockerswarm.LocalNodeStateInactive {
			continue
		}
		if sw.Cluster != nil && sw.Cluster.ID != id {
			warnings = append(warnings, fmt.Sprintf("%s is a manager of another swarm (%s), so it was left alone", m, sw.Cluster.ID))
			continue
		}
		if sw.Cluster == nil && m.NodeID != "" && sw.NodeID != m.NodeID {
			warnings = append(warnings, fmt.Sprintf("%s is now node %s, not the recorded %s, so it was left alone", m, sw.NodeID, m.NodeID))
			continue
		}
		if err := eng.SwarmLeave(ctx, true); err != nil {
			warnings = append(warnings, fmt.Sprintf("%s did not leave: %s", m, err))
		}
	}
	return warnings
}

// ByRole is a copy of members with the managers first (managersFirst) or last, each
// role's members in their given order.
func ByRole(members []Member, managersFirst bool) []Member {
	rank := func(m Member) int {
		if (m.Role == RoleManager) == managersFirst {
			return 0
		}
		return 1
	}
	ordered := slices.Clone(members)
	slices.SortStableFunc(ordered, func(a, b Member) int { return cmp.Compare(rank(a), rank(b)) })
	return ordered
}

// found is a manager of a swarm and the swarm's ID.
type found struct {
	*manager
	id string
}

// findManager returns the first candidate that answers as a manager of swarm id (of
// any swarm when id is empty). Candidates are tried once each: a read must not wait.
//
// A candidate found locked (autolock, after its engine restarted) is unlocked with
// unlockKey if one is given, else with the key the first unlocked manager of the swarm
// reports: the key is read from the swarm when it is needed, never kept anywhere else.
func (c *Cluster) findManager(ctx context.Context, id string, candidates []Member, unlockKey string) (*found, error) {
	none := &NoManagerError{SwarmID: id, Gone: len(candidates) > 0}
	seen := map[string]bool{}
	type lockedManager struct {
		eng Engine
		m   Member
	}
	var locked []lockedManager
	unlockTheLocked := func(f *found) {
		if len(locked) == 0 {
			return
		}
		key, err := f.engine.SwarmGetUnlockKey(ctx)
		if err != nil || key.UnlockKey == "" {
			c.log(ctx, "could not read the unlock key to unlock the locked managers", map[string]any{"manager": f.member.String()})
			return
		}
		for _, l := range locked {
			if err := l.eng.SwarmUnlock(ctx, dockerswarm.UnlockRequest{UnlockKey: key.UnlockKey}); err != nil {
				c.log(ctx, "unlocking a locked manager failed", map[string]any{"manager": l.m.String(), "error": err.Error()})
				continue
			}
			c.log(ctx, "unlocked a locked manager with the key another manager reported", map[string]any{"manager": l.m.String()})
		}
	}
	for _, m := range candidates {
		if seen[m.Target.Host] {
			continue
		}
		seen[m.Target.Host] = true
		eng, info, err := c.connectOnce(ctx, m.Target)
		if err != nil {
			none.Tried = append(none.Tried, fmt.Sprintf("%s: %s", m, err))
			none.Gone = false
			continue
		}
		sw := info.Swarm
		if sw.LocalNodeState == dockerswarm.LocalNodeStateLocked && unlockKey != "" {
			if err := eng.SwarmUnlock(ctx, dockerswarm.UnlockRequest{UnlockKey: unlockKey}); err != nil {
				none.Tried = append(none.Tried, fmt.Sprintf("%s: locked, and unlocking it failed: %s", m, err))
				none.Gone = false
				continue
			}
			c.log(ctx, "unlocked a locked manager", map[string]any{"manager": m.String()})
			if info, err = eng.Info(ctx); err != nil {
				none.Tried = append(none.Tried, fmt.Sprintf("%s: %s", m, err))
				none.Gone = false
				continue
			}
			sw = info.Swarm
		}
		switch {
		case sw.LocalNodeState == dockerswarm.LocalNodeStateActive && sw.ControlAvailable && sw.Cluster != nil:
			if id == "" || sw.Cluster.ID == id {
				f := &found{manager: &manager{engine: eng, member: m, nodeID: sw.NodeID}, id: sw.Cluster.ID}
				unlockTheLocked(f)
				return f, nil
			}
			none.Tried = append(none.Tried, fmt.Sprintf("%s: a manager of another swarm (%s)", m, sw.Cluster.ID))
		case sw.LocalNodeState == dockerswarm.LocalNodeStateActive:
			none.Tried = append(none.Tried, fmt.Sprintf("%s: a worker, not a manager", m))
			none.Gone = false
		case sw.LocalNodeState == dockerswarm.LocalNodeStateInactive:
			none.Tried = append(none.Tried, fmt.Sprintf("%s: not in a swarm", m))
		case sw.LocalNodeState == dockerswarm.LocalNodeStateLocked:
			none.Tried = append(none.Tried, fmt.Sprintf("%s: locked (autolock), and no unlocked manager answered to read the unlock key from; "+
				"run `docker swarm unlock` on it with the key you kept", m))
			none.Gone = false
			locked = append(locked, lockedManager{eng: eng, m: m})
		default:
			none.Tried = append(none.Tried, fmt.Sprintf("%s: swarm state %s %s", m, sw.LocalNodeState, sw.Error))
			none.Gone = false
		}
	}
	return nil, none
}

// initSwarm initialises a swarm on m with the settings.
func (c *Cluster) initSwarm(ctx context.Context, m Member, s Settings) (*manager, string, error) {
	eng, info, err := c.reach(ctx, m)
	if err != nil {
		return nil, "", err
	}
	if st := info.Swarm.LocalNodeState; st != dockerswarm.LocalNodeStateInactive {
		if st == dockerswarm.LocalNodeStateActive && !info.Swarm.ControlAvailable {
			return nil, "", &OtherSwarmError{Member: m.String(), Managers: peerAddrs(info.Swarm.RemoteManagers)}
		}
		return nil, "", fmt.Errorf("%s cannot start a swarm: its swarm state is %s %s", m, st, info.Swarm.Error)
	}
	limit := s.TaskHistoryLimit
	req := dockerswarm.InitRequest{
		ListenAddr:       m.listenAddr(),
		AdvertiseAddr:    m.AdvertiseAddr,
		DataPathPort:     s.DataPathPort,
		DefaultAddrPool:  s.DefaultAddrPool,
		SubnetSize:       s.SubnetSize,
		AutoLockManagers: s.Autolock,
		Availability:     dockerswarm.NodeAvailability(cmp.Or(m.Availability, AvailabilityActive)),
		Spec: dockerswarm.Spec{
			Orchestration: dockerswarm.OrchestrationConfig{TaskHistoryRetentionLimit: &limit},
			CAConfig:      dockerswarm.CAConfig{NodeCertExpiry: s.CertExpiry},
		},
	}
	nodeID, err := eng.SwarmInit(ctx, req)
	if err != nil {
		return nil, "", fmt.Errorf("swarm init on %s: %w", m, err)
	}
	info, err = eng.Info(ctx)
	if err != nil {
		return nil, "", err
	}
	if info.Swarm.Cluster == nil {
		return nil, "", fmt.Errorf("swarm init on %s returned, but the engine reports no swarm", m)
	}
	c.log(ctx, "initialised the swarm", map[string]any{"swarm_id": info.Swarm.Cluster.ID, "manager": m.String(), "node_id": nodeID})
	return &manager{engine: eng, member: m, nodeID: nodeID}, info.Swarm.Cluster.ID, nil
}

// connectOnce reaches a node's engine and asks for its info, once.
func (c *Cluster) connectOnce(ctx context.Context, t Target) (Engine, system.Info, error) {
	eng, err := c.Connect(ctx, t)
	if err != nil {
		return nil, system.Info{}, err
	}
	info, err := eng.Info(ctx)
	if err != nil {
		return nil, system.Info{}, err
	}
	return eng, info, nil
}

// reach retries reaching a node's engine for up to ReachTimeout: a node that is
// booting answers soon; one that is off is reported as unreachable.
func (c *Cluster) reach(ctx context.Context, m Member) (Engine, system.Info, error) {
	reachCtx, cancel := context.WithTimeout(ctx, cmp.Or(c.ReachTimeout, DefaultReachTimeout))
	defer cancel()
	var eng Engine
	var info system.Info
	err := wait.Until(reachCtx, wait.Options{What: "the Docker engine of " + m.String() + " to answer", Interval: time.Second, MaxInterval: 5 * time.Second},
		func(ctx context.Context) (bool, string, error) {
			e, i, err := c.connectOnce(ctx, m.Target)
			if err != nil {
				if isPermanent(err) {
					return false, "", err
				}
				return false, "", wait.Retryable(err)
			}
			eng, info = e, i
			return true, "", nil
		})
	var timeout *wait.TimeoutError
	if errors.As(err, &timeout) && timeout.LastErr != nil {
		return nil, system.Info{}, &UnreachableError{Member: m.String(), Tried: timeout.Elapsed, Err: timeout.LastErr}
	}
	if err != nil {
		return nil, system.Info{}, &UnreachableError{Member: m.String(), Err: err}
	}
	return eng, info, nil
}

func (c *Cluster) log(ctx context.Context, msg string, fields map[string]any) {
	if c.Log != nil {
		c.Log(ctx, msg, fields)
	}
}

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
		r.c.log(ctx, "swarm step", map[string]any{"swarm_id": r.id, "step": last, "remaining": len(steps) - 1})
		if err := r.apply(ctx, step, nodes); err != nil {
			return &StepError{Step: last, Done: r.done, Err: err}
		}
		r.done = append(r.done, last)
	}
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
	nodes := make([]Node, 0, len(list))
	for _, n := range list {
		nodes = append(nodes, NodeFromDocker(n))
	}
	slices.SortFunc(nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	return nodes, nil
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
		return false, "", err
	})
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

// joinInfo returns the join token for a role and the managers to join through.
func (r *run) joinInfo(ctx context.Context, role Role, nodes []Node) (token string, remotes []string, err error) {
	sw, err := r.ctl.engine.SwarmInspect(ctx)
	if err != nil {
		return "", nil, err
	}
	token = sw.JoinTokens.Worker
	if role == RoleManager {
		token = sw.JoinTokens.Manager
	}
	for _, n := range nodes {
		if n.IsManager && n.Reachability == Reachable && n.ManagerAddr != "" {
			remotes = append(remotes, n.ManagerAddr)
		}
	}
	if len(remotes) == 0 {
		return "", nil, errors.New("no reachable manager address to join through")
	}
	return token, remotes, nil
}

// join is find-or-join: a node already in this swarm is recorded, a node that is in no
// swarm joins, a node that the swarm dropped leaves its stale membership and joins, and
// a node in another swarm is an error.
func (r *run) join(ctx context.Context, m Member, nodes []Node) error {
	eng, info, err := r.c.reach(ctx, m)
	if err != nil {
		return err
	}
	if info.Swarm.LocalNodeState == dockerswarm.LocalNodeStateLocked {
		// A manager of this swarm whose engine restarted: unlock it with the key the
		// manager in control reports, then it is a member like any other.
		if err := r.unlock(ctx, eng, m); err != nil {
			return err
		}
		if info, err = eng.Info(ctx); err != nil {
			return err
		}
	}
	sw := info.Swarm
	listed := func(id string) bool { return slices.ContainsFunc(nodes, func(n Node) bool { return n.ID == id }) }
	switch sw.LocalNodeState {
	case dockerswarm.LocalNodeStateActive:
		if listed(sw.NodeID) {
			r.claim(m.Key, sw.NodeID)
			r.c.log(ctx, "node is already in the swarm", map[string]any{"member": m.String(), "node_id": sw.NodeID})
			return nil // the next plan promotes, demotes or recovers it as needed
		}
		if sw.ControlAvailable && sw.Cluster != nil {
			return &OtherSwarmError{Member: m.String(), ClusterID: sw.Cluster.ID}
		}
		if !r.ourManagers(sw.RemoteManagers, nodes) {
			return &OtherSwarmError{Member: m.String(), Managers: peerAddrs(sw.RemoteManagers)}
		}
		r.c.log(ctx, "node holds a membership the swarm dropped; leaving it to join again", map[string]any{"member": m.String(), "node_id": sw.NodeID})
		if err := eng.SwarmLeave(ctx, true); err != nil {
			return fmt.Errorf("leaving the dropped membership: %w", err)
		}
	case dockerswarm.LocalNodeStatePending, dockerswarm.LocalNodeStateError:
		// A join that never finished (the engine keeps retrying it): start over.
		if err := eng.SwarmLeave(ctx, true); err != nil {
			return fmt.Errorf("abandoning an unfinished join (state %s %s): %w", sw.LocalNodeState, sw.Error, err)
		}
	case dockerswarm.LocalNodeStateLocked:
		return &LockedError{Member: m.String()}
	}
	token, remotes, err := r.joinInfo(ctx, m.Role, nodes)
	if err != nil {
		return err
	}
	req := dockerswarm.JoinRequest{
		ListenAddr:    m.listenAddr(),
		AdvertiseAddr: m.AdvertiseAddr,
		RemoteAddrs:   remotes,
		JoinToken:     token,
		Availability:  dockerswarm.NodeAvailability(cmp.Or(m.Availability, AvailabilityActive)),
	}
	if err := eng.SwarmJoin(ctx, req); err != nil {
		return fmt.Errorf("swarm join through %s: %w", strings.Join(remotes, ", "), err)
	}
	info, err = eng.Info(ctx)
	if err != nil {
		return err
	}
	id := info.Swarm.NodeID
	r.claim(m.Key, id)
	r.c.log(ctx, "node joined the swarm", map[string]any{"member": m.String(), "node_id": id, "role": string(m.Role)})
	return r.waitNode(ctx, id, "to be ready after joining", func(n Node) bool {
		return n.State == StateReady && (m.Role != RoleManager || (n.IsManager && n.Reachability == Reachable))
	})
}

// unlock unlocks a locked manager with the run's unlock key, or the one the manager in
// control reports.
func (r *run) unlock(ctx context.Context, eng Engine, m Member) error {
	key := r.unlockKey
	if key == "" {
		resp, err := r.ctl.engine.SwarmGetUnlockKey(ctx)
		if err != nil || resp.UnlockKey == "" {
			return &LockedError{Member: m.String()}
		}
		key = resp.UnlockKey
	}
	if err := eng.SwarmUnlock(ctx, dockerswarm.UnlockRequest{UnlockKey: key}); err != nil {
		return fmt.Errorf("%s is locked and unlocking it failed: %w", m, err)
	}
	r.c.log(ctx, "unlocked a locked manager", map[string]any{"member": m.String()})
	return nil
}

// recover reaches a member whose node is not ready: a node that left joins again (its
// stale entry is removed by a later step), one that is still a member is waited for.
func (r *run) recover(ctx context.Context, m Member, n Node, nodes []Node) error {
	_, info, err := r.c.reach(ctx, m)
	if err != nil {
		return fmt.Errorf("node %s is %s in the swarm: %w", n.ID, n.State, err)
	}
	if info.Swarm.LocalNodeState == dockerswarm.LocalNodeStateActive && info.Swarm.NodeID == n.ID {
		return r.waitNode(ctx, n.ID, "to be ready again", func(n Node) bool { return n.Ready() })
	}
	return r.join(ctx, m, nodes)
}

// replacedNodes finds members whose recorded node the swarm still lists as ready, but
// whose host's engine says it is not that node (in no swarm, or another node): a droplet
// replaced by one with the same address, before the managers saw the old one go down.
// Such a member claims no node (its host joins), and the old entry is removed without
// draining, like any node this configuration owns and no member claims. A host that does
// not answer is left to the usual steps.
func (r *run) replacedNodes(ctx context.Context, nodes []Node) {
	r.replaced = map[string]bool{}
	for i, m := range r.members {
		idx := slices.IndexFunc(nodes, func(n Node) bool { return n.ID == m.NodeID })
		if m.NodeID == "" || idx < 0 || nodes[idx].State != StateReady {
			continue
		}
		_, info, err := r.c.connectOnce(ctx, m.Target)
		if err != nil {
			continue
		}
		state := info.Swarm.LocalNodeState
		if state == dockerswarm.LocalNodeStateActive && info.Swarm.NodeID == m.NodeID || state == dockerswarm.LocalNodeStatePending {
			continue
		}
		r.c.log(ctx, "the member's host is another machine than its recorded node: it joins, the old entry goes",
			map[string]any{"node_id": m.NodeID, "host": m.Target.Host, "host_node_id": info.Swarm.NodeID, "host_state": string(state)})
		r.replaced[m.NodeID] = true
		r.managed[m.NodeID] = true
		r.targets[m.NodeID] = m.Target
		r.members[i].NodeID = ""
	}
}

// remove drains a worker, waits for its tasks to stop, makes it leave (if it is the
// recorded node and still up) and removes it from the node list.
func (r *run) remove(ctx context.Context, n Node) error {
	if r.drain && n.State == StateReady && !r.replaced[n.ID] {
		if err := r.updateNode(ctx, n.ID, func(spec *dockerswarm.NodeSpec) { spec.Availability = dockerswarm.NodeAvailabilityDrain }); err != nil {
			return fmt.Errorf("draining: %w", err)
		}
		if err := r.waitTasksGone(ctx, n); err != nil {
			return err
		}
	}
	left := false
	t, known := r.targets[n.ID]
	switch {
	case !known:
		r.warn(ctx, fmt.Sprintf("node %s (%s) was removed without being made to leave: no host is recorded for it", n.ID, n.Hostname))
	case n.State != StateReady && r.rejoined(t, n.ID):
		r.c.log(ctx, "removing the entry a node left behind before it joined again", map[string]any{"node_id": n.ID, "host": t.Host})
	case n.State != StateReady:
		r.warn(ctx, fmt.Sprintf("node %s (%s, %s) is %s, so it was removed without being made to leave; if it comes back, run `docker swarm leave --force` on it",
			n.ID, n.Hostname, t.Host, n.State))
	default:
		eng, info, err := r.c.connectOnce(ctx, t)
		switch {
		case err != nil:
			r.warn(ctx, fmt.Sprintf("node %s (%s, %s) could not be reached to make it leave (%s); it was removed from the swarm regardless", n.ID, n.Hostname, t.Host, err))
		case info.Swarm.NodeID != n.ID || info.Swarm.LocalNodeState != dockerswarm.LocalNodeStateActive:
			// The host is another node now (or none): it is not this node's to leave.
		default:
			if err := eng.SwarmLeave(ctx, false); err != nil {
				return fmt.Errorf("swarm leave on %s: %w", t.Host, err)
			}
			left = true
		}
	}
	if r.left != nil {
		// Dissolving: the node has left (or cannot be reached); the swarm goes anyway.
		r.left[n.ID] = true
		return nil
	}
	if left {
		if err := r.waitNode(ctx, n.ID, "to be down after leaving", func(n Node) bool { return n.State != StateReady }); err != nil {
			return err
		}
	}
	err := r.ctl.engine.NodeRemove(ctx, n.ID, dockerswarm.NodeRemoveOptions{Force: !left})
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("node rm: %w", err)
	}
	delete(r.managed, n.ID)
	r.c.log(ctx, "node removed from the swarm", map[string]any{"node_id": n.ID, "hostname": n.Hostname, "left": left})
	return nil
}

// terminalTaskStates are task states that hold no container any more.
var terminalTaskStates = []dockerswarm.TaskState{
	dockerswarm.TaskStateComplete, dockerswarm.TaskStateShutdown, dockerswarm.TaskStateFailed,
	dockerswarm.TaskStateRejected, dockerswarm.TaskStateOrphaned, dockerswarm.TaskStateRemove,
}

func (r *run) warn(ctx context.Context, msg string) {
	r.warnings = append(r.warnings, msg)
	r.c.log(ctx, msg, nil)
}

// rejoined reports whether a member on the same host is in the swarm as another node:
// then the stale entry's host has nothing left to leave.
func (r *run) rejoined(t Target, staleID string) bool {
	return slices.ContainsFunc(r.members, func(m Member) bool {
		return m.Target.Host == t.Host && m.NodeID != "" && m.NodeID != staleID
	})
}

// waitTasksGone waits until no task runs on a drained node any more.
func (r *run) waitTasksGone(ctx context.Context, n Node) error {
	return wait.Until(ctx, wait.Options{What: fmt.Sprintf("the tasks on node %s (%s) to move after draining it", n.ID, n.Hostname), MaxInterval: 2 * time.Second},
		func(ctx context.Context) (bool, string, error) {
			tasks, err := r.ctl.engine.TaskList(ctx, dockerswarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("node", n.ID))})
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			var running []string
			for _, t := range tasks {
				if !slices.Contains(terminalTaskStates, t.Status.State) {
					running = append(running, fmt.Sprintf("task %s of service %s (%s)", t.ID, t.ServiceID, t.Status.State))
				}
			}
			return len(running) == 0, strings.Join(running, ", "), nil
		})
}

// claim records that a member's node is id.
func (r *run) claim(key, id string) {
	for i := range r.members {
		if r.members[i].Key == key {
			r.members[i].NodeID = id
			r.managed[id] = true
			r.targets[id] = r.members[i].Target
		}
	}
}

// ourManagers reports whether any of a worker's remote managers is a manager here.
func (r *run) ourManagers(peers []dockerswarm.Peer, nodes []Node) bool {
	for _, p := range peers {
		for _, n := range nodes {
			if n.IsManager && (p.NodeID == n.ID || p.Addr == n.ManagerAddr) {
				return true
			}
		}
	}
	return false
}

func isNotInSwarm(ctx context.Context, eng Engine) bool {
	info, err := eng.Info(ctx)
	return err == nil && info.Swarm.LocalNodeState == dockerswarm.LocalNodeStateInactive
}

func peerAddrs(peers []dockerswarm.Peer) []string {
	out := make([]string, 0, len(peers))
	for _, p := range peers {
		out = append(out, p.Addr)
	}
	return out
}

func managersOf(members []Member) []Member {
	var out []Member
	for _, m := range members {
		if m.Role == RoleManager {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b Member) int { return cmp.Compare(a.Key, b.Key) })
	return out
}
