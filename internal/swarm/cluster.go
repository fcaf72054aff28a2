package swarm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
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
//
// A refresh asks the first candidate, when it is a recorded manager, for the swarm and
// its nodes at once, without the engine's Info first: Docker answers Info only after
// running runc and docker-init on the node (0.1-0.25 s on a busy demo node, on every
// plan's path). An engine that answers the swarm's inspect with id is an active,
// unlocked manager of it. Any other answer, or none, goes the long way (findManager),
// without connecting to that candidate again.
func (c *Cluster) Observe(ctx context.Context, id string, candidates []Member, unlockKey string) (*Status, error) {
	if id != "" && len(candidates) > 0 && candidates[0].Role == RoleManager && candidates[0].NodeID != "" {
		first := candidates[0]
		eng, err := c.Connect(ctx, first.Target)
		if err == nil {
			if st, ok := c.observeManager(ctx, id, first, eng); ok {
				return st, nil
			}
		}
		connect, once := c.Connect, *c
		once.Connect = func(ctx context.Context, t Target) (Engine, error) {
			if t == first.Target {
				return eng, err
			}
			return connect(ctx, t)
		}
		c = &once
	}
	found, err := c.findManager(ctx, id, candidates, unlockKey)
	if err != nil {
		return nil, err
	}
	r := &run{c: c, id: found.id, ctl: found.manager}
	return r.status(ctx)
}

// Dissolve takes the swarm apart. Every member goes, so there is no quorum to keep and
// no node to hand work to: the members leave with force, the workers all at once, then the
// managers all at once, the one that answered too (a worker's forced leave needs no
// manager, but one that overlaps the managers' may wait out Docker's 5 s bound on
// releasing its ingress network). Nodes that cannot be reached are reported as warnings,
// not errors: a node that is gone has nothing left to leave. A reachable manager that
// answered and does not leave is an error, so the state keeps the swarm, and the next
// destroy finds the others already out.
func (c *Cluster) Dissolve(ctx context.Context, id string, members []Member, unlockKey string) (warnings []string, err error) {
	found, err := c.findManager(ctx, id, managersOf(members), unlockKey)
	var none *NoManagerError
	if errors.As(err, &none) {
		// No manager of ours answers: make whatever still belongs to the swarm leave.
		if !none.Gone {
			warnings = append(warnings, "no manager of the swarm answered ("+none.Error()+"); making the reachable members leave")
		}
		return append(warnings, c.leaveEach(ctx, id, members, nil)...), nil
	}
	if err != nil {
		return nil, err
	}
	last := found.member
	others := slices.DeleteFunc(slices.Clone(members), func(m Member) bool { return m.Target.Host == last.Target.Host })
	left := make(chan error, 1)
	warnings = c.leaveEach(ctx, id, others, func() { go func() { left <- found.engine.SwarmLeave(ctx, true) }() })
	if err := <-left; err != nil && !isNotInSwarm(ctx, found.engine) {
		return warnings, fmt.Errorf("the manager %s did not leave: %w", last, err)
	}
	c.log(ctx, "swarm dissolved", map[string]any{"swarm_id": found.id, "manager": last.String()})
	return warnings, nil
}

// leaveEach makes every reachable member that is still in swarm id leave, with force: the
// workers all at once, then the managers all at once, when startManagers (if not nil) is
// called too. Not all together: a worker that leaves while the managers do may wait out
// Docker's 5 s bound on releasing its ingress network (seen on the demo, 2026-12-05). It
// returns a warning per member it could not make leave, the workers' first.
func (c *Cluster) leaveEach(ctx context.Context, id string, members []Member, startManagers func()) []string {
	workers := slices.DeleteFunc(slices.Clone(members), func(m Member) bool { return m.Role == RoleManager })
	warnings := c.leaveAtOnce(ctx, id, workers)
	if startManagers != nil {
		startManagers()
	}
	return append(warnings, c.leaveAtOnce(ctx, id, managersOf(members))...)
}

// leaveAtOnce makes members leave (leaveOne) all at once; it returns their warnings in
// members' order.
func (c *Cluster) leaveAtOnce(ctx context.Context, id string, members []Member) []string {
	results := make([]string, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			results[i] = c.leaveOne(ctx, id, m)
		})
	}
	wg.Wait()
	return slices.DeleteFunc(results, func(w string) bool { return w == "" })
}

// leaveOne makes one member leave swarm id with force; it returns a warning, or "".
func (c *Cluster) leaveOne(ctx context.Context, id string, m Member) string {
	eng, info, err := c.connectOnce(ctx, m.Target)
	if err != nil {
		return fmt.Sprintf("%s could not be reached, so it was not made to leave: %s", m, err)
	}
	sw := info.Swarm
	// A manager that lost its quorum (the others leave at the same time) reports a cluster
	// with no ID: not another swarm, so its node ID decides.
	clusterID := ""
	if sw.Cluster != nil {
		clusterID = sw.Cluster.ID
	}
	switch {
	case sw.LocalNodeState == dockerswarm.LocalNodeStateInactive:
		return ""
	case clusterID != "" && clusterID != id:
		return fmt.Sprintf("%s is a manager of another swarm (%s), so it was left alone", m, clusterID)
	case clusterID == "" && m.NodeID != "" && sw.NodeID != m.NodeID:
		return fmt.Sprintf("%s is now node %s, not the recorded %s, so it was left alone", m, sw.NodeID, m.NodeID)
	}
	if err := eng.SwarmLeave(ctx, true); err != nil {
		return fmt.Sprintf("%s did not leave: %s", m, err)
	}
	return ""
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

func (c *Cluster) log(ctx context.Context, msg string, fields map[string]any) {
	if c.Log != nil {
		c.Log(ctx, msg, fields)
	}
}
