package swarm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
)

// fakeCloud is a set of engines that can form swarms, in memory: enough of swarm mode
// for Cluster's logic (membership, roles, leave, tasks), none of its networking.
type fakeCloud struct {
	mu      sync.Mutex
	engines map[string]*fakeEngine // by host
	swarms  map[string]*fakeSwarm  // by ID
	seq     int
	// joinDelay makes each SwarmJoin take that long, outside the lock; joins are then
	// counted: in flight, the most in flight at once, and whether a manager's join was
	// ever in flight beside another join.
	joinDelay              time.Duration
	joining, mostJoining   int
	managerJoinedBesideOne bool
	managerJoining         bool
	// joinErr fails the SwarmJoin of a host with its error (after joinDelay).
	joinErr map[string]error
	// leaveDelay makes each SwarmLeave take that long, outside the lock; leavesAtOnce
	// is the most in flight at once, and managerLeftBesideWorker says a manager's leave
	// was ever in flight beside a worker's.
	leaveDelay                      time.Duration
	leaving, leavesAtOnce           int
	managersLeaving, workersLeaving int
	managerLeftBesideWorker         bool
}

type fakeSwarm struct {
	id      string
	spec    dockerswarm.Spec
	version uint64
	worker  string
	manager string
	nodes   map[string]*fakeNode
	tasks   map[string][]string // node ID -> task IDs
	// goneOnDrain are hosts whose machine goes away as they are drained (their droplet
	// destroyed a moment before): the node turns down and its tasks never report.
	goneOnDrain map[string]bool
}

type fakeNode struct {
	node   dockerswarm.Node
	engine *fakeEngine // nil once the engine left
}

type fakeEngine struct {
	cloud    *fakeCloud
	host     string
	ip       string
	hostname string
	down     bool
	swarm    *fakeSwarm
	nodeID   string
	// listenAddr is the address the engine was told to listen on for swarm management.
	listenAddr string
	// locked is a manager whose engine restarted with autolock on: it answers Info as
	// locked and nothing else until SwarmUnlock gets the swarm's key.
	locked bool
	// infos counts the Info calls (Docker runs runc and docker-init for each).
	infos int
	// quorumLost is a manager whose swarm lost its raft quorum: Info reports its cluster
	// with no ID, as the engine does then.
	quorumLost bool
	// busyUpdates fails the next node updates as a manager whose raft proposal timed out,
	// the first one after committing it (the update may have gone through).
	busyUpdates int
}

func newFakeCloud(hosts ...string) *fakeCloud {
	c := &fakeCloud{engines: map[string]*fakeEngine{}, swarms: map[string]*fakeSwarm{}}
	for i, h := range hosts {
		c.engines[h] = &fakeEngine{cloud: c, host: h, ip: fmt.Sprintf("10.0.0.%d", i+1), hostname: "host-" + h}
	}
	return c
}

func (c *fakeCloud) connect(_ context.Context, t Target) (Engine, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.engines[t.Host]
	if !ok {
		return nil, Permanent(fmt.Errorf("unknown host %s", t.Host))
	}
	if e.down {
		return nil, fmt.Errorf("dial %s: connection refused", t.Host)
	}
	return e, nil
}

func (c *fakeCloud) member(key, host string, role Role) Member {
	return Member{Key: key, Target: Target{Host: host}, AdvertiseAddr: c.engines[host].ip, Role: role, Availability: AvailabilityActive}
}

func (c *fakeCloud) next(prefix string) string {
	c.seq++
	return fmt.Sprintf("%s%d", prefix, c.seq)
}

func (c *fakeCloud) setDown(host string, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.engines[host]
	e.down = down
	if e.swarm != nil {
		n := e.swarm.nodes[e.nodeID]
		n.node.Status.State = dockerswarm.NodeStateReady
		if down {
			n.node.Status.State = dockerswarm.NodeStateDown
		}
		if n.node.ManagerStatus != nil {
			n.node.ManagerStatus.Reachability = dockerswarm.ReachabilityReachable
			if down {
				n.node.ManagerStatus.Reachability = dockerswarm.ReachabilityUnreachable
			}
		}
	}
}

func (c *fakeCloud) localState(host string) dockerswarm.LocalNodeState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.engines[host].swarm == nil {
		return dockerswarm.LocalNodeStateInactive
	}
	return dockerswarm.LocalNodeStateActive
}

var errNotInSwarm = errors.New("this node is not a swarm manager")

// manager returns the swarm the engine manages, or an error.
func (e *fakeEngine) managed() (*fakeSwarm, error) {
	if e.locked { // as Docker: a locked manager answers no swarm call until unlocked
		return nil, errors.New("swarm is encrypted and needs to be unlocked before it can be used")
	}
	if e.swarm == nil || e.swarm.nodes[e.nodeID].node.ManagerStatus == nil {
		return nil, errNotInSwarm
	}
	return e.swarm, nil
}

func (e *fakeEngine) Info(context.Context) (system.Info, error) {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	e.infos++
	info := system.Info{Swarm: dockerswarm.Info{NodeID: e.nodeID, LocalNodeState: dockerswarm.LocalNodeStateInactive}}
	if e.locked {
		info.Swarm.LocalNodeState = dockerswarm.LocalNodeStateLocked
		return info, nil
	}
	if s := e.swarm; s != nil {
		info.Swarm.LocalNodeState = dockerswarm.LocalNodeStateActive
		for id, n := range s.nodes {
			if n.node.ManagerStatus != nil {
				info.Swarm.RemoteManagers = append(info.Swarm.RemoteManagers, dockerswarm.Peer{NodeID: id, Addr: n.node.ManagerStatus.Addr})
			}
		}
		if s.nodes[e.nodeID].node.ManagerStatus != nil {
			info.Swarm.ControlAvailable = true
			info.Swarm.Cluster = &dockerswarm.ClusterInfo{ID: s.id}
			if e.quorumLost {
				info.Swarm.Cluster.ID = ""
			}
		}
	}
	return info, nil
}

func (e *fakeEngine) SwarmInit(_ context.Context, req dockerswarm.InitRequest) (string, error) {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	if e.swarm != nil {
		return "", errors.New("this node is already part of a swarm")
	}
	s := &fakeSwarm{id: e.cloud.next("swarm"), version: 1, nodes: map[string]*fakeNode{}, tasks: map[string][]string{},
		worker: e.cloud.next("SWMTKN-w-"), manager: e.cloud.next("SWMTKN-m-")}
	limit := int64(5)
	s.spec.Orchestration.TaskHistoryRetentionLimit = &limit
	if l := req.Spec.Orchestration.TaskHistoryRetentionLimit; l != nil && *l != 0 {
		s.spec.Orchestration.TaskHistoryRetentionLimit = l
	}
	s.spec.EncryptionConfig.AutoLockManagers = req.AutoLockManagers
	e.cloud.swarms[s.id] = s
	e.listenAddr = req.ListenAddr
	e.addNode(s, dockerswarm.NodeRoleManager, req.Availability, true)
	return e.nodeID, nil
}

func (e *fakeEngine) addNode(s *fakeSwarm, role dockerswarm.NodeRole, availability dockerswarm.NodeAvailability, leader bool) {
	id := e.cloud.next("node")
	n := dockerswarm.Node{ID: id}
	n.Version.Index = 1
	n.Description.Hostname = e.hostname
	n.Spec.Role = role
	n.Spec.Availability = availability
	n.Status = dockerswarm.NodeStatus{State: dockerswarm.NodeStateReady, Addr: e.ip}
	if role == dockerswarm.NodeRoleManager {
		n.Status.Addr = "0.0.0.0"
		n.ManagerStatus = &dockerswarm.ManagerStatus{Leader: leader, Reachability: dockerswarm.ReachabilityReachable, Addr: e.ip + ":2377"}
	}
	s.nodes[id] = &fakeNode{node: n, engine: e}
	e.swarm, e.nodeID = s, id
}

func (e *fakeEngine) SwarmJoin(_ context.Context, req dockerswarm.JoinRequest) error {
	if c := e.cloud; c.joinDelay > 0 {
		c.mu.Lock()
		manager := false
		for _, s := range c.swarms {
			manager = manager || req.JoinToken == s.manager
		}
		c.joining++
		c.mostJoining = max(c.mostJoining, c.joining)
		if c.joining > 1 && (manager || c.managerJoining) {
			c.managerJoinedBesideOne = true
		}
		c.managerJoining = c.managerJoining || manager
		c.mu.Unlock()
		time.Sleep(c.joinDelay)
		c.mu.Lock()
		c.joining--
		if manager {
			c.managerJoining = false
		}
		c.mu.Unlock()
	}
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	if err := e.cloud.joinErr[e.host]; err != nil {
		return err
	}
	if e.swarm != nil {
		return errors.New("this node is already part of a swarm")
	}
	e.listenAddr = req.ListenAddr
	for _, s := range e.cloud.swarms {
		switch req.JoinToken {
		case s.worker:
			e.addNode(s, dockerswarm.NodeRoleWorker, req.Availability, false)
			return nil
		case s.manager:
			e.addNode(s, dockerswarm.NodeRoleManager, req.Availability, false)
			return nil
		}
	}
	return errors.New("invalid join token")
}

func (e *fakeEngine) SwarmLeave(_ context.Context, force bool) error {
	if c := e.cloud; c.leaveDelay > 0 {
		c.mu.Lock()
		role := &c.workersLeaving
		if s := e.swarm; s != nil && s.nodes[e.nodeID] != nil && s.nodes[e.nodeID].node.ManagerStatus != nil {
			role = &c.managersLeaving
		}
		*role++
		c.leaving++
		c.leavesAtOnce = max(c.leavesAtOnce, c.leaving)
		c.managerLeftBesideWorker = c.managerLeftBesideWorker || (c.managersLeaving > 0 && c.workersLeaving > 0)
		c.mu.Unlock()
		time.Sleep(c.leaveDelay)
		c.mu.Lock()
		c.leaving--
		*role--
		c.mu.Unlock()
	}
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	s := e.swarm
	if s == nil {
		return errors.New("this node is not part of a swarm")
	}
	n := s.nodes[e.nodeID]
	if n.node.ManagerStatus != nil && !force {
		return errors.New("you are attempting to leave the swarm on a node that is participating as a manager")
	}
	n.node.Status.State = dockerswarm.NodeStateDown
	if n.node.ManagerStatus != nil {
		n.node.ManagerStatus.Reachability = dockerswarm.ReachabilityUnreachable
		n.node.ManagerStatus.Leader = false
	}
	n.engine = nil
	e.swarm, e.nodeID = nil, ""
	return nil
}

func (e *fakeEngine) SwarmInspect(context.Context) (dockerswarm.Swarm, error) {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	s, err := e.managed()
	if err != nil {
		return dockerswarm.Swarm{}, err
	}
	var sw dockerswarm.Swarm
	sw.ID, sw.Spec, sw.Version.Index = s.id, s.spec, s.version
	sw.DefaultAddrPool, sw.SubnetSize, sw.DataPathPort = []string{"10.0.0.0/8"}, 24, 4789
	sw.JoinTokens = dockerswarm.JoinTokens{Worker: s.worker, Manager: s.manager}
	return sw, nil
}

func (e *fakeEngine) SwarmUpdate(_ context.Context, v dockerswarm.Version, spec dockerswarm.Spec, flags dockerswarm.UpdateFlags) error {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	s, err := e.managed()
	if err != nil {
		return err
	}
	if v.Index != s.version {
		return errors.New("update out of sequence")
	}
	s.spec, s.version = spec, s.version+1
	if flags.RotateWorkerToken {
		s.worker = e.cloud.next("SWMTKN-w-")
	}
	if flags.RotateManagerToken {
		s.manager = e.cloud.next("SWMTKN-m-")
	}
	return nil
}

const fakeUnlockKey = "SWMKEY-1-fake"

func (e *fakeEngine) SwarmGetUnlockKey(context.Context) (dockerswarm.UnlockKeyResponse, error) {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	if _, err := e.managed(); err != nil || e.locked {
		return dockerswarm.UnlockKeyResponse{}, errNotInSwarm
	}
	return dockerswarm.UnlockKeyResponse{UnlockKey: fakeUnlockKey}, nil
}

func (e *fakeEngine) SwarmUnlock(_ context.Context, req dockerswarm.UnlockRequest) error {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	if !e.locked {
		return errors.New("swarm is not locked")
	}
	if req.UnlockKey != fakeUnlockKey {
		return errors.New("invalid key")
	}
	e.locked = false
	return nil
}

func (e *fakeEngine) NodeList(context.Context, dockerswarm.NodeListOptions) ([]dockerswarm.Node, error) {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	s, err := e.managed()
	if err != nil {
		return nil, err
	}
	var out []dockerswarm.Node
	for _, n := range s.nodes {
		out = append(out, n.node)
	}
	return out, nil
}

func (e *fakeEngine) NodeInspectWithRaw(_ context.Context, id string) (dockerswarm.Node, []byte, error) {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	s, err := e.managed()
	if err != nil {
		return dockerswarm.Node{}, nil, err
	}
	n, ok := s.nodes[id]
	if !ok {
		return dockerswarm.Node{}, nil, fmt.Errorf("node %s not found", id)
	}
	return n.node, nil, nil
}

func (e *fakeEngine) NodeUpdate(_ context.Context, id string, v dockerswarm.Version, spec dockerswarm.NodeSpec) (err error) {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	s, err := e.managed()
	if err != nil {
		return err
	}
	n, ok := s.nodes[id]
	if !ok {
		return fmt.Errorf("node %s not found", id)
	}
	if v.Index != n.node.Version.Index {
		return errors.New("update out of sequence")
	}
	busy := e.busyUpdates > 0
	committed := busy && e.busyUpdates%2 == 1
	if busy {
		e.busyUpdates--
		if !committed {
			return errors.New("Error response from daemon: rpc error: code = DeadlineExceeded desc = context deadline exceeded")
		}
		defer func() {
			err = errors.New("Error response from daemon: rpc error: code = DeadlineExceeded desc = context deadline exceeded")
		}()
	}
	n.node.Version.Index++
	if spec.Role != n.node.Spec.Role {
		if spec.Role == dockerswarm.NodeRoleManager && n.engine != nil {
			n.node.ManagerStatus = &dockerswarm.ManagerStatus{Reachability: dockerswarm.ReachabilityReachable, Addr: n.engine.ip + ":2377"}
		}
		if spec.Role == dockerswarm.NodeRoleWorker {
			if n.node.ManagerStatus != nil && n.node.ManagerStatus.Leader {
				for _, other := range s.nodes {
					if other != n && other.node.ManagerStatus != nil && other.node.ManagerStatus.Reachability == dockerswarm.ReachabilityReachable {
						other.node.ManagerStatus.Leader = true
						break
					}
				}
			}
			n.node.ManagerStatus = nil
		}
	}
	if spec.Availability == dockerswarm.NodeAvailabilityDrain {
		if n.engine != nil && s.goneOnDrain[n.engine.host] {
			n.engine.down = true
			n.node.Status.State = dockerswarm.NodeStateDown
		} else {
			delete(s.tasks, id) // the tasks move at once
		}
	}
	n.node.Spec = spec
	return nil
}

func (e *fakeEngine) NodeRemove(_ context.Context, id string, opts dockerswarm.NodeRemoveOptions) error {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	s, err := e.managed()
	if err != nil {
		return err
	}
	n, ok := s.nodes[id]
	if !ok {
		return fmt.Errorf("node %s not found", id)
	}
	if n.node.Status.State == dockerswarm.NodeStateReady && !opts.Force {
		return errors.New("node is not down and can't be removed")
	}
	if n.node.ManagerStatus != nil {
		return errors.New("node is a manager; demote it first")
	}
	delete(s.nodes, id)
	return nil
}

func (e *fakeEngine) TaskList(_ context.Context, opts dockerswarm.TaskListOptions) ([]dockerswarm.Task, error) {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	s, err := e.managed()
	if err != nil {
		return nil, err
	}
	var out []dockerswarm.Task
	for node, ids := range s.tasks {
		if f := opts.Filters; f.Len() > 0 && !f.ExactMatch("node", node) {
			continue
		}
		for _, id := range ids {
			out = append(out, dockerswarm.Task{ID: id, NodeID: node, Status: dockerswarm.TaskStatus{State: dockerswarm.TaskStateRunning}})
		}
	}
	return out, nil
}
