package consul

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// APIConfig says how to reach the agent of spec from its host. With TLS the agent's CA
// verifies it and its own certificate is the client certificate (verify_incoming).
func APIConfig(spec Spec) (conn.ConsulConfig, error) {
	cfg := conn.ConsulConfig{Address: spec.APIAddress(), Scheme: spec.APIScheme()}
	if spec.TLS == nil {
		return cfg, nil
	}
	t, err := conn.ConsulTLS([]byte(spec.TLS.CAPEM), []byte(spec.TLS.CertPEM), []byte(spec.TLS.KeyPEM))
	if err != nil {
		return cfg, err
	}
	cfg.TLS = t
	return cfg, nil
}

// Member statuses, as serf numbers them.
var memberStatusNames = map[int]string{0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}

// MemberStatusName names a serf member status ("alive", "failed", ...).
func MemberStatusName(status int) string {
	if name, ok := memberStatusNames[status]; ok {
		return name
	}
	return fmt.Sprintf("unknown(%d)", status)
}

const memberAlive = 1

// Self is who an agent says it is.
type Self struct {
	NodeID     string
	NodeName   string
	Datacenter string
	Server     bool
	// Addr is the agent's gossip (and, on a server, raft) IP address.
	Addr string
}

// ReadSelf asks the agent who it is.
func ReadSelf(ctx context.Context, api *consulapi.Client) (Self, error) {
	var out struct {
		Config struct {
			NodeID     string
			NodeName   string
			Datacenter string
			Server     bool
		}
		Member struct{ Addr string }
	}
	if _, err := api.Raw().Query("/v1/agent/self", &out, query(ctx)); err != nil {
		return Self{}, err
	}
	return Self{NodeID: out.Config.NodeID, NodeName: out.Config.NodeName, Datacenter: out.Config.Datacenter, Server: out.Config.Server,
		Addr: out.Member.Addr}, nil
}

// Members lists the LAN members as the agent sees them.
func Members(ctx context.Context, api *consulapi.Client) ([]*consulapi.AgentMember, error) {
	var out []*consulapi.AgentMember
	_, err := api.Raw().Query("/v1/agent/members", &out, query(ctx))
	return out, err
}

func query(ctx context.Context) *consulapi.QueryOptions {
	return (&consulapi.QueryOptions{}).WithContext(ctx)
}

// ServerStatus is a server's place in the cluster.
type ServerStatus struct {
	Self
	// Leader is the leader's server address (IP:port), "" when there is none.
	Leader string
	// Voter says the server is a voter in the raft configuration.
	Voter bool
	// IsLeader says this server is the leader.
	IsLeader bool
	// InRaft says the raft configuration holds this server, as a voter or not.
	InRaft bool
	// AddressHeldBy is the ID of another server in the raft configuration at this
	// server's address (a dead server this one replaces), "" when there is none.
	AddressHeldBy string
	Voters        int
	Servers       int
}

func (s ServerStatus) String() string {
	leader := s.Leader
	if leader == "" {
		leader = "none"
	}
	return fmt.Sprintf("leader %s; %d servers, %d voters; this server (%s) voter=%t", leader, s.Servers, s.Voters, s.NodeName, s.Voter)
}

// ReadServerStatus asks a server for its node ID, the leader and the raft configuration.
func ReadServerStatus(ctx context.Context, api *consulapi.Client) (ServerStatus, error) {
	self, err := ReadSelf(ctx, api)
	if err != nil {
		return ServerStatus{}, err
	}
	st := ServerStatus{Self: self}
	if st.Leader, err = api.Status().LeaderWithQueryOptions(query(ctx)); err != nil {
		return st, err
	}
	if st.Leader == "" {
		return st, nil
	}
	raft, err := api.Operator().RaftGetConfiguration(query(ctx))
	if err != nil {
		return st, err
	}
	st.Servers = len(raft.Servers)
	for _, s := range raft.Servers {
		if s.Voter {
			st.Voters++
		}
		switch {
		case s.ID == self.NodeID:
			st.Voter, st.IsLeader, st.InRaft = s.Voter, s.Leader, true
		case self.Addr != "" && hostOf(s.Address) == self.Addr:
			st.AddressHeldBy = s.ID
		}
	}
	return st, nil
}

// waitOptions polls often (an agent starts in about a second, an election takes one or
// two): a read of the local agent is cheap, and each pause past the moment the cluster
// is ready is a pause of the whole apply.
func waitOptions(what string) wait.Options {
	return wait.Options{What: what, Interval: 250 * time.Millisecond, MaxInterval: time.Second}
}

// AliveCheck fails (not retryable) when the agent container died while it was awaited.
type AliveCheck func(ctx context.Context) error

// Rejoiner makes the server leave the cluster gracefully and join it again (Rejoin).
type Rejoiner func(ctx context.Context) error

// RejoinAfter is how long a server stays left out (leftOut) before WaitServerReady has it
// rejoin; rejoinAgain spaces the tries. A leader adds a joining server within
// milliseconds: both are long past that.
const (
	RejoinAfter = 5 * time.Second
	rejoinAgain = 30 * time.Second
)

// WaitServerReady waits until the cluster has a leader and this server is a voter.
//
// A leader adds a server to the raft configuration when the server joins the gossip pool
// (or when the leader takes office), and again only at its reconcile a minute later. If
// the add was refused then (the dead server at this address could not be removed without
// losing the quorum: two replacements at the dead servers' own addresses), the server
// waits out that minute. So once it has been left out (leftOut) for RejoinAfter, rejoin
// (when not nil) makes it leave and join again, which the leader handles at once.
//
// member (when not nil) runs once, beside the rest of the wait, as soon as the server is
// in the raft configuration of a cluster with a leader (or, at the latest, once it votes):
// what needs only a leader (the agent's ACL token, its node in the catalog) need not wait
// for the vote, which autopilot gives a joining server only on its reconcile tick, every
// 10 s. WaitServerReady returns once member has returned too; if the wait fails, member's
// context is cancelled first.
func WaitServerReady(ctx context.Context, api *consulapi.Client, alive AliveCheck, rejoin Rejoiner, member OnMember) (ServerStatus, error) {
	return waitServerReady(ctx, api, alive, rejoin, member, RejoinAfter, rejoinAgain)
}

// OnMember is what a server's wait runs once the server is in the raft configuration
// (WaitServerReady), with its status then.
type OnMember func(ctx context.Context, st ServerStatus)

// serverPollMax bounds the pause between two reads of a joining server's status: the
// vote comes on autopilot's tick, and every moment past it is a moment of the apply.
const serverPollMax = 500 * time.Millisecond

func waitServerReady(ctx context.Context, api *consulapi.Client, alive AliveCheck, rejoin Rejoiner, member OnMember, after, again time.Duration) (ServerStatus, error) {
	var st ServerStatus
	var outSince, rejoined time.Time
	var memberDone chan struct{}
	memberCancel := context.CancelFunc(func() {})
	startMember := func(st ServerStatus) {
		var mctx context.Context
		mctx, memberCancel = context.WithCancel(ctx)
		memberDone = make(chan struct{})
		go func() { defer close(memberDone); member(mctx, st) }()
	}
	opts := waitOptions("the server to be a voter in a cluster with a leader")
	opts.MaxInterval = serverPollMax
	err := wait.Until(ctx, opts, func(ctx context.Context) (bool, string, error) {
		if err := alive(ctx); err != nil {
			return false, "", err
		}
		var err error
		st, err = ReadServerStatus(ctx, api)
		if err != nil {
			return false, "the agent's API does not answer yet", wait.Retryable(err)
		}
		if member != nil && memberDone == nil && st.Leader != "" && st.InRaft {
			startMember(st)
		}
		if st.Leader != "" && st.Voter {
			return true, st.String(), nil
		}
		if rejoin == nil || !leftOut(ctx, api, st) {
			outSince = time.Time{}
			return false, st.String(), nil
		}
		if outSince.IsZero() {
			outSince = time.Now()
		}
		if time.Since(outSince) < after || (!rejoined.IsZero() && time.Since(rejoined) < again) {
			return false, st.String() + "; left out of the raft configuration", nil
		}
		outSince, rejoined = time.Time{}, time.Now()
		if err := rejoin(ctx); err != nil { // the leader's own reconcile still adds it; the alive check catches a dead agent
			return false, fmt.Sprintf("%s; left out of the raft configuration, and leaving and joining again failed: %v", st, err), nil
		}
		return false, st.String() + "; left and joined again, as the leader had left it out of the raft configuration", nil
	})
	if member != nil {
		switch {
		case err != nil:
			memberCancel()
		case memberDone == nil:
			startMember(st)
		}
		if memberDone != nil {
			<-memberDone
		}
		memberCancel()
	}
	return st, err
}

// leftOut says the leader has left this server out of the raft configuration and will
// not add it before its next reconcile:
//   - with a leader: the configuration does not hold the server, and no other server is
//     at its address (that one, dead, is pruned first, then the add would succeed);
//   - with no leader this server knows of: its own copy of the configuration is not empty
//     (it has been part of a cluster: a new server at a dead one's address gets the log
//     under the dead one's ID until the leader prunes that ID, and then hears of no
//     leader at all) and does not hold it. A server that has never been replicated to,
//     as in a first election or a cluster that lost its quorum, has an empty one.
func leftOut(ctx context.Context, api *consulapi.Client, st ServerStatus) bool {
	if st.InRaft || st.NodeID == "" {
		return false
	}
	if st.Leader != "" {
		return st.AddressHeldBy == ""
	}
	peers, err := APIView{API: api}.RaftPeers(ctx)
	if err != nil || len(peers) == 0 {
		return false
	}
	for _, p := range peers {
		if p.ID == st.NodeID {
			return false
		}
	}
	return true
}

// AgentStatus is a client agent's place in the cluster.
type AgentStatus struct {
	Self
	// MemberStatus is how the agent sees itself: "alive", "left", ...
	MemberStatus string
	Leader       string
	// InCatalog says the servers registered the agent's node.
	InCatalog bool
	// Servers is the number of alive servers the agent sees.
	Servers int
	// Unreached says why the servers could not be asked about the agent yet.
	Unreached string
}

func (s AgentStatus) String() string {
	msg := fmt.Sprintf("member %s, %d alive servers seen, leader %q, in catalog %t", s.MemberStatus, s.Servers, s.Leader, s.InCatalog)
	if s.Unreached != "" {
		msg += "; servers not reached: " + s.Unreached
	}
	return msg
}

// Joined says the agent is an alive member that reached the servers. Whether the catalog
// holds its node as its own is WaitCatalogName's question: the agent may need its ACL
// token first, which takes a leader.
func (s AgentStatus) Joined() bool {
	return s.MemberStatus == "alive" && s.Servers > 0 && s.Leader != ""
}

// ReadAgentStatus asks a client agent about itself and whether the servers know it.
func ReadAgentStatus(ctx context.Context, api *consulapi.Client) (AgentStatus, error) {
	self, err := ReadSelf(ctx, api)
	if err != nil {
		return AgentStatus{}, err
	}
	st := AgentStatus{Self: self, MemberStatus: "none"}
	members, err := Members(ctx, api)
	if err != nil {
		return st, err
	}
	for _, m := range members {
		if m.Name == self.NodeName {
			st.MemberStatus = MemberStatusName(m.Status)
		}
		if m.Tags["role"] == "consul" && m.Status == memberAlive {
			st.Servers++
		}
	}
	// Until the agent has joined, questions for the servers fail: that is a state, not an error.
	leader, err := api.Status().LeaderWithQueryOptions(query(ctx))
	if err != nil {
		st.Unreached = err.Error()
		return st, nil //nolint:nilerr // recorded in st.Unreached
	}
	st.Leader = leader
	if leader == "" {
		return st, nil
	}
	node, _, err := api.Catalog().Node(self.NodeName, query(ctx))
	if err != nil {
		st.Unreached = err.Error()
		return st, nil //nolint:nilerr // recorded in st.Unreached
	}
	st.InCatalog = node != nil && node.Node != nil
	return st, nil
}

// WaitAgentJoined waits until the agent is an alive member that sees a leader.
func WaitAgentJoined(ctx context.Context, api *consulapi.Client, alive AliveCheck) (AgentStatus, error) {
	var st AgentStatus
	err := wait.Until(ctx, waitOptions("the agent to join the cluster as an alive member"), func(ctx context.Context) (bool, string, error) {
		if err := alive(ctx); err != nil {
			return false, "", err
		}
		var err error
		st, err = ReadAgentStatus(ctx, api)
		if err != nil {
			return false, "the agent's API does not answer yet", wait.Retryable(err)
		}
		return st.Joined(), st.String(), nil
	})
	return st, err
}

// ServerHealth is autopilot's view of the servers.
type ServerHealth struct {
	Healthy          bool
	FailureTolerance int
	// Unhealthy names the servers autopilot does not consider healthy.
	Unhealthy []string
	Servers   int
}

func (h ServerHealth) String() string {
	if len(h.Unhealthy) == 0 {
		return fmt.Sprintf("all %d servers healthy, failure tolerance %d", h.Servers, h.FailureTolerance)
	}
	return fmt.Sprintf("unhealthy servers: %s (of %d)", strings.Join(h.Unhealthy, ", "), h.Servers)
}

// ReadServerHealth asks autopilot (through the leader) about every server. except names a
// server not to count as unhealthy: the one about to be restarted, or already down.
func ReadServerHealth(ctx context.Context, api *consulapi.Client, exceptNodeID string) (ServerHealth, error) {
	reply, err := api.Operator().AutopilotServerHealth(query(ctx))
	if err != nil {
		return ServerHealth{}, err
	}
	h := ServerHealth{Healthy: reply.Healthy, FailureTolerance: reply.FailureTolerance, Servers: len(reply.Servers)}
	for _, s := range reply.Servers {
		if !s.Healthy && s.ID != exceptNodeID {
			h.Unhealthy = append(h.Unhealthy, fmt.Sprintf("%s (%s, serf %s)", s.Name, s.Address, s.SerfStatus))
		}
	}
	sort.Strings(h.Unhealthy)
	return h, nil
}

// WaitServersHealthy waits until autopilot reports every server except exceptNodeID
// healthy, twice in a row so that a server just back is not counted too early.
func WaitServersHealthy(ctx context.Context, api *consulapi.Client, exceptNodeID string) (ServerHealth, error) {
	var h ServerHealth
	opts := waitOptions("every other Consul server to be healthy")
	if exceptNodeID == "" {
		opts.What = "every Consul server to be healthy"
	}
	opts.Consecutive = 2
	err := wait.Until(ctx, opts, func(ctx context.Context) (bool, string, error) {
		var err error
		h, err = ReadServerHealth(ctx, api, exceptNodeID)
		if err != nil {
			return false, "autopilot does not answer (no leader?)", wait.Retryable(err)
		}
		return len(h.Unhealthy) == 0, h.String(), nil
	})
	return h, err
}
