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

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

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

// replacedNodes finds members whose node (recorded, or found at their address) the swarm
// still lists as ready, but whose host's engine says it is not that node (in no swarm, or
// another node): a droplet replaced by one with the same address, or replacements that got
// each other's addresses, before the managers saw the old ones go down.
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

// rejoined reports whether a member on the same host is in the swarm as another node:
// then the stale entry's host has nothing left to leave.
func (r *run) rejoined(t Target, staleID string) bool {
	return slices.ContainsFunc(r.members, func(m Member) bool {
		return m.Target.Host == t.Host && m.NodeID != "" && m.NodeID != staleID
	})
}

// waitTasksGone waits until no task runs on a drained node any more, or until the node
// is down: a node that went away (its droplet destroyed a moment before the swarm's
// update, as Terraform orders a scale-down) never reports its tasks stopped, and swarm
// has already rescheduled them elsewhere.
func (r *run) waitTasksGone(ctx context.Context, n Node) error {
	return wait.Until(ctx, wait.Options{What: fmt.Sprintf("the tasks on node %s (%s) to move after draining it", n.ID, n.Hostname), MaxInterval: 2 * time.Second},
		func(ctx context.Context) (bool, string, error) {
			if node, _, err := r.ctl.engine.NodeInspectWithRaw(ctx, n.ID); err == nil && node.Status.State != dockerswarm.NodeStateReady {
				r.c.log(ctx, "the drained node is down: its tasks cannot report, so they are not waited for",
					map[string]any{"node_id": n.ID, "hostname": n.Hostname, "state": string(node.Status.State)})
				return true, "", nil
			}
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
