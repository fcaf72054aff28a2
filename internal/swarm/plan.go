package swarm

import (
	"cmp"
	"fmt"
	"slices"
)

// StepKind is one kind of change to the swarm's membership.
type StepKind string

const (
	// StepJoin makes a member that is not in the swarm join it (find-or-join: a node
	// that turns out to be in the swarm already is only recorded).
	StepJoin StepKind = "join"
	// StepRecover reaches a member whose node is not ready: it re-joins the node if the
	// node left, or waits until it is ready again.
	StepRecover StepKind = "recover"
	// StepPromote makes a worker a manager and waits until it is a reachable raft member.
	StepPromote StepKind = "promote"
	// StepAvailability changes a node's availability.
	StepAvailability StepKind = "availability"
	// StepDemote makes a manager a worker and waits until it has left the raft group.
	StepDemote StepKind = "demote"
	// StepRemove drains a worker, waits for its tasks to move, makes it leave and
	// removes it from the node list.
	StepRemove StepKind = "remove"
)

// Step is one change. Member is the member concerned (Key is empty for a node that
// no member claims any more); Node is the node as the swarm reported it (zero for joins).
type Step struct {
	Kind   StepKind
	Member Member
	Node   Node
}

func (s Step) String() string {
	who := s.Member.String()
	if s.Member.Key == "" {
		who = fmt.Sprintf("node %s (%s)", s.Node.ID, s.Node.Hostname)
	} else if s.Node.ID != "" {
		who = fmt.Sprintf("%s, node %s", who, s.Node.ID)
	}
	switch s.Kind {
	case StepJoin:
		return fmt.Sprintf("join %s as %s", who, s.Member.Role)
	case StepRecover:
		return fmt.Sprintf("recover %s (state %s)", who, s.Node.State)
	case StepPromote:
		return fmt.Sprintf("promote %s to manager", who)
	case StepAvailability:
		return fmt.Sprintf("set the availability of %s to %s", who, s.Member.Availability)
	case StepDemote:
		return fmt.Sprintf("demote %s to worker", who)
	case StepRemove:
		return fmt.Sprintf("drain and remove %s", who)
	}
	return string(s.Kind) + " " + who
}

// Resolve finds each member's node in the node list. A member keeps its recorded node
// while the swarm still lists it; a member with none (or one the swarm no longer lists)
// claims the unclaimed node whose address is its advertise address, preferring a ready
// node over a stale entry a node left behind. Members come back in key order, NodeID
// empty where no node was found.
func Resolve(nodes []Node, members []Member) []Member {
	out := slices.Clone(members)
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Key, b.Key) })
	listed := map[string]bool{}
	for _, n := range nodes {
		listed[n.ID] = true
	}
	claimed := map[string]bool{}
	for i, m := range out {
		if m.NodeID != "" && listed[m.NodeID] && !claimed[m.NodeID] {
			claimed[m.NodeID] = true
			continue
		}
		out[i].NodeID = ""
	}
	for i, m := range out {
		ip := m.advertiseHost()
		if m.NodeID != "" || ip == "" {
			continue
		}
		var best *Node
		for j := range nodes {
			n := &nodes[j]
			if claimed[n.ID] || !n.hasAddress(ip) {
				continue
			}
			if best == nil || (n.State == StateReady && best.State != StateReady) {
				best = n
			}
		}
		if best != nil {
			out[i].NodeID = best.ID
			claimed[best.ID] = true
		}
	}
	return out
}

// Plan orders the steps that take the swarm from its node list to the members, so that
// the raft quorum holds after every one of them:
//
//  1. joins and recoveries, managers first, so new managers are reachable before any leaves;
//  2. promotions, one manager at a time;
//  3. availability changes;
//  4. demotions, one at a time: unreachable managers first, the leader last, each only
//     if the managers left reachable still make a quorum;
//  5. removals of the nodes in managed that no member claims (demoted first if managers).
//
// members must be resolved (Resolve). Nodes in the swarm that are neither claimed nor
// managed are not touched. An empty plan means the swarm is as the members describe it.
func Plan(nodes []Node, members []Member, managed []string) ([]Step, error) {
	if !slices.ContainsFunc(members, func(m Member) bool { return m.Role == RoleManager }) {
		return nil, fmt.Errorf("a swarm needs at least one manager; the configuration names none")
	}
	byID := map[string]Node{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	managers, reachable := raftCounts(nodes)
	if managers > 0 && reachable < Quorum(managers) {
		return nil, &QuorumError{Managers: managers, Reachable: reachable, Unreachable: unreachableManagers(nodes),
			Step: "any change to the swarm"}
	}

	sorted := slices.Clone(members)
	slices.SortStableFunc(sorted, func(a, b Member) int {
		if a.Role != b.Role {
			if a.Role == RoleManager {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Key, b.Key)
	})

	var joins, promotions, availability, demotions, removals []Step
	claimed := map[string]bool{}
	for _, m := range sorted {
		n, inSwarm := byID[m.NodeID]
		if m.NodeID == "" || !inSwarm {
			joins = append(joins, Step{Kind: StepJoin, Member: m})
			continue
		}
		claimed[n.ID] = true
		if n.State != StateReady {
			joins = append(joins, Step{Kind: StepRecover, Member: m, Node: n})
			continue
		}
		switch {
		case m.Role == RoleManager && !n.reachableManager():
			promotions = append(promotions, Step{Kind: StepPromote, Member: m, Node: n})
		case m.Role == RoleWorker && (n.Role == RoleManager || n.IsManager):
			demotions = append(demotions, Step{Kind: StepDemote, Member: m, Node: n})
		}
		if m.Availability != "" && n.Availability != m.Availability {
			availability = append(availability, Step{Kind: StepAvailability, Member: m, Node: n})
		}
	}
	for _, id := range sortedUnique(managed) {
		n, inSwarm := byID[id]
		if !inSwarm || claimed[id] {
			continue
		}
		if n.Role == RoleManager || n.IsManager {
			demotions = append(demotions, Step{Kind: StepDemote, Node: n})
		}
		removals = append(removals, Step{Kind: StepRemove, Node: n})
	}

	// Every join or promotion of a manager adds a reachable raft member (the steps wait
	// for it); check the demotions against the group as it will be by then.
	for _, s := range append(slices.Clone(joins), promotions...) {
		if s.Member.Role == RoleManager && (s.Kind == StepJoin || s.Kind == StepPromote) {
			managers++
			reachable++
		}
	}
	slices.SortStableFunc(demotions, func(a, b Step) int {
		return cmp.Or(
			cmp.Compare(demotionRank(a.Node), demotionRank(b.Node)),
			cmp.Compare(a.Node.Hostname, b.Node.Hostname),
			cmp.Compare(a.Node.ID, b.Node.ID))
	})
	for _, s := range demotions {
		if !s.Node.IsManager {
			continue // a promotion that never completed: not a raft member
		}
		managers--
		if s.Node.Reachability == Reachable {
			reachable--
		}
		if managers < 1 || reachable < Quorum(managers) {
			return nil, &QuorumError{Step: s.String(), Managers: managers, Reachable: reachable, Unreachable: unreachableManagers(nodes)}
		}
	}

	steps := slices.Concat(joins, promotions, availability, demotions, removals)
	return steps, nil
}

// demotionRank orders demotions: unreachable managers first (removing them can only
// help the quorum), then reachable followers, the leader last.
func demotionRank(n Node) int {
	switch {
	case n.Reachability != Reachable:
		return 0
	case !n.Leader:
		return 1
	default:
		return 2
	}
}

func raftCounts(nodes []Node) (managers, reachable int) {
	for _, n := range nodes {
		if !n.IsManager {
			continue
		}
		managers++
		if n.Reachability == Reachable {
			reachable++
		}
	}
	return managers, reachable
}

func unreachableManagers(nodes []Node) []string {
	var out []string
	for _, n := range nodes {
		if n.IsManager && n.Reachability != Reachable {
			out = append(out, fmt.Sprintf("%s (%s, %s)", n.ID, n.Hostname, n.Reachability))
		}
	}
	return out
}

func sortedUnique(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
