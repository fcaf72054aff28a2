// Package swarm builds and reshapes a Docker swarm-mode cluster through the Docker API:
// init or adopt, find-or-join, promote and demote one manager at a time so the raft
// quorum holds at every step, drain-and-leave, and dissolve. The planner (Plan, Resolve)
// is pure; Cluster carries the plan out against real engines.
package swarm

import (
	"fmt"
	"net"
	"strings"

	dockerswarm "github.com/docker/docker/api/types/swarm"
)

// Role is a node's swarm role.
type Role string

const (
	RoleManager Role = "manager"
	RoleWorker  Role = "worker"
)

// Roles lists the roles, for validators and docs.
var Roles = []Role{RoleManager, RoleWorker}

// Availability is whether the scheduler places tasks on a node.
type Availability string

const (
	AvailabilityActive Availability = "active"
	AvailabilityPause  Availability = "pause"
	AvailabilityDrain  Availability = "drain"
)

// Availabilities lists the availabilities, for validators and docs.
var Availabilities = []Availability{AvailabilityActive, AvailabilityPause, AvailabilityDrain}

// Node states as managers report them, plus StateLeft for a node that is not in the
// node list at all.
const (
	StateReady        = "ready"
	StateDown         = "down"
	StateUnknown      = "unknown"
	StateDisconnected = "disconnected"
	StateLeft         = "left"
)

// States lists every state a member can be reported in, for docs.
var States = []string{StateReady, StateDown, StateUnknown, StateDisconnected, StateLeft}

// Manager reachabilities.
const (
	Reachable   = "reachable"
	Unreachable = "unreachable"
)

// DefaultManagementPort is swarm's port for cluster management traffic (raft, joins).
const DefaultManagementPort = "2377"

// Node is a swarm node as a manager reports it.
type Node struct {
	ID       string
	Hostname string
	// Addr is the node's address as the swarm sees it; ManagerAddr is a manager's raft
	// address, host:port (Addr can read 0.0.0.0 for managers).
	Addr        string
	ManagerAddr string
	// Role is the role the swarm wants for the node; IsManager says whether it is a raft
	// member now (the two differ while a promotion or demotion is under way).
	Role         Role
	IsManager    bool
	Availability Availability
	State        string
	Reachability string
	Leader       bool
}

// Ready says the node is up and, if it is a manager, reachable.
func (n Node) Ready() bool {
	return n.State == StateReady && (!n.IsManager || n.Reachability == Reachable)
}

// reachableManager says the node is a manager, a raft member and reachable.
func (n Node) reachableManager() bool {
	return n.Role == RoleManager && n.IsManager && n.Reachability == Reachable
}

// IP is the node's address, from its raft address for managers that report 0.0.0.0.
func (n Node) IP() string {
	if n.ManagerAddr != "" && (n.Addr == "" || n.Addr == "0.0.0.0") {
		return hostPart(n.ManagerAddr)
	}
	return n.Addr
}

// hasAddress reports whether ip is one of the node's addresses.
func (n Node) hasAddress(ip string) bool {
	return ip != "" && (n.Addr == ip || hostPart(n.ManagerAddr) == ip)
}

func (n Node) describe() string {
	s := fmt.Sprintf("node %s (%s): role %s, state %s, availability %s", n.ID, n.Hostname, n.Role, n.State, n.Availability)
	if n.IsManager {
		s += ", manager " + n.Reachability
		if n.Leader {
			s += ", leader"
		}
	}
	return s
}

// NodeFromDocker maps the Docker API's node.
func NodeFromDocker(d dockerswarm.Node) Node {
	n := Node{
		ID:           d.ID,
		Hostname:     d.Description.Hostname,
		Addr:         d.Status.Addr,
		Role:         Role(d.Spec.Role),
		Availability: Availability(d.Spec.Availability),
		State:        string(d.Status.State),
	}
	if m := d.ManagerStatus; m != nil {
		n.IsManager = true
		n.Reachability = string(m.Reachability)
		n.Leader = m.Leader
		n.ManagerAddr = m.Addr
	}
	return n
}

// Target says how to reach a node's engine: a host string (ssh://, unix://, tcp://)
// and the host key pinned for it. The package passes both to the Connector untouched.
type Target struct {
	Host    string
	HostKey string
}

// Member is a node the configuration wants in the swarm.
type Member struct {
	// Key is the user's name for the member; it is how the member is reported back.
	Key    string
	Target Target
	// AdvertiseAddr is what the node advertises to the swarm: an IP, IP:port or interface.
	AdvertiseAddr string
	Role          Role
	Availability  Availability
	// NodeID is the swarm node recorded for the member, if any. Resolve checks it
	// against the node list and fills it in from addresses when it is missing.
	NodeID string
}

func (m Member) String() string {
	if m.Key == "" {
		return m.Target.Host
	}
	return fmt.Sprintf("%s (%s)", m.Key, m.Target.Host)
}

// advertiseHost is the IP part of the advertise address, or "" for an interface name.
func (m Member) advertiseHost() string {
	h := hostPart(m.AdvertiseAddr)
	if net.ParseIP(h) == nil {
		return ""
	}
	return h
}

// listenAddr is where the node listens for management traffic: the address it
// advertises (IP or interface, its port or 2377), never every interface, which on a
// droplet includes the public one.
func (m Member) listenAddr() string {
	if h, p, err := net.SplitHostPort(m.AdvertiseAddr); err == nil {
		return net.JoinHostPort(h, p)
	}
	return net.JoinHostPort(strings.Trim(m.AdvertiseAddr, "[]"), DefaultManagementPort)
}

func hostPart(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return strings.Trim(addr, "[]")
}

// Quorum is how many managers a raft group of n needs to reach decisions.
func Quorum(managers int) int { return managers/2 + 1 }

// ManagerCountWarning says why an even manager count is a poor choice, or "" if the
// count is odd.
func ManagerCountWarning(managers int) string {
	if managers == 0 || managers%2 == 1 {
		return ""
	}
	return fmt.Sprintf("%d managers need %d of them reachable and so tolerate the loss of %d, no more than %d managers would: "+
		"an even count adds raft traffic and a failure point without adding fault tolerance. Prefer %d or %d managers.",
		managers, Quorum(managers), managers-Quorum(managers), managers-1, managers-1, managers+1)
}
