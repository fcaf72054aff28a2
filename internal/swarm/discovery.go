package swarm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// manager is the manager the API calls go to.
type manager struct {
	engine Engine
	member Member
	nodeID string
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
