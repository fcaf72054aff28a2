package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// Outage recovery (Consul's "manual recovery using peers.json"): when a majority of the
// raft voters is lost, the survivors can never elect a leader on their own, new servers
// cannot join (joining is a raft write) and autopilot cannot remove the dead (also a write).
// The survivor is stopped, raft/peers.json in its data dir names the voters that remain,
// and on start it replaces its raft configuration with that list and elects a leader;
// the replacement servers then join it as usual.
//
// Doing that while a "dead" server is merely cut off would make two clusters (split
// brain). The invariant: a survivor recovers only when the voters that are gone FOR GOOD
// are so many that the rest can never make a majority, and a voter counts as gone for good
// only when
//   - the survivor's gossip sees no alive member with its node ID, and
//   - the DigitalOcean API proves its data is gone: no droplet of the account holds its
//     address any more (deleted), or the droplet at its address now runs a Consul server
//     with another node ID (replaced, the old one's data went with the old droplet).
// A droplet that is merely off is not gone for good (powered on, it comes back with its
// raft data): it makes the plan show the update (the apply that replaces it follows), but
// the apply waits for the proof above, which the replacement of the droplet brings. A
// network blip proves nothing: the API reports the droplet active and no other node ID at
// its address, so nothing is done.

// RaftPeer is one server in the raft configuration, as in peers.json.
type RaftPeer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"-"`
}

// Member is a LAN gossip member as the survivor sees it.
type Member struct {
	Name    string
	Address string // IP
	NodeID  string
	Server  bool
	Alive   bool
}

// DropletState is what the cloud API says about the droplet at an address.
type DropletState int

const (
	// DropletUnknown: the API could not say (no token, an error, not a droplet).
	DropletUnknown DropletState = iota
	DropletActive
	// DropletOff is powered off or archived: gone for now, perhaps not for good.
	DropletOff
	// DropletDeleted: no droplet of the account holds the address.
	DropletDeleted
)

func (s DropletState) String() string {
	return [...]string{"unknown", "active", "off", "deleted"}[s]
}

// DropletLookup asks the cloud API about the droplet at an IP address.
type DropletLookup func(ctx context.Context, ip string) (DropletState, error)

// GonePeer is a voter judged gone, and why.
type GonePeer struct {
	RaftPeer
	Reason string
	// ForGood says its data is proven gone; otherwise it is only off.
	ForGood bool
}

// Outage is a survivor's assessment of a cluster without a leader.
type Outage struct {
	Self RaftPeer
	// Voters is the number of voters in the survivor's raft configuration.
	Voters int
	// Remaining are the voters not judged gone (self included): peers.json lists them.
	Remaining []RaftPeer
	Gone      []GonePeer
	// Unproven names the voters that do not answer but are not proven gone, and why.
	Unproven []string
	// NotADroplet says why no proof could be had about anything (the survivor itself is
	// not a droplet the API knows): no recovery then.
	NotADroplet string
}

// Lost says the voters that remain can never make a majority of the configuration,
// counting off droplets as gone unless forGoodOnly.
func (o Outage) Lost(forGoodOnly bool) bool {
	if o.NotADroplet != "" || o.Voters == 0 {
		return false
	}
	gone := 0
	for _, g := range o.Gone {
		if g.ForGood || !forGoodOnly {
			gone++
		}
	}
	return o.Voters-gone < o.Voters/2+1
}

// PeersJSON is the peers.json that keeps the remaining voters (raft protocol 3).
func (o Outage) PeersJSON() []byte {
	type entry struct {
		ID       string `json:"id"`
		Address  string `json:"address"`
		NonVoter bool   `json:"non_voter"`
	}
	out := []entry{}
	for _, p := range o.Remaining {
		out = append(out, entry{ID: p.ID, Address: p.Address})
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	return append(b, '\n')
}

func (o Outage) String() string {
	var parts []string
	for _, g := range o.Gone {
		parts = append(parts, fmt.Sprintf("%s gone (%s)", g.Address, g.Reason))
	}
	parts = append(parts, o.Unproven...)
	if o.NotADroplet != "" {
		parts = append(parts, o.NotADroplet)
	}
	return fmt.Sprintf("%d voters, %d remaining; %s", o.Voters, len(o.Remaining), strings.Join(parts, "; "))
}

// AssessOutage judges every voter of the survivor's raft configuration (self is the
// survivor's node ID) from its gossip members and the cloud API. It is only meaningful
// when the survivor has no leader.
func AssessOutage(ctx context.Context, self string, peers []RaftPeer, members []Member, lookup DropletLookup) (Outage, error) {
	o := Outage{}
	byID := map[string]Member{}
	for _, m := range members {
		if m.NodeID != "" {
			byID[m.NodeID] = m
		}
	}
	var selfPeer *RaftPeer
	for i := range peers {
		if peers[i].ID == self {
			selfPeer = &peers[i]
		}
	}
	if selfPeer == nil || !selfPeer.Voter {
		return o, fmt.Errorf("this server (%s) is not a voter in its own raft configuration", self)
	}
	o.Self = *selfPeer
	selfState, err := lookup(ctx, hostOf(selfPeer.Address))
	if err != nil || selfState != DropletActive {
		o.NotADroplet = fmt.Sprintf("this server's address %s is not an active droplet the API knows (%s): no proof about the others can be had", selfPeer.Address, stateOrErr(selfState, err))
	}
	for _, p := range peers {
		if !p.Voter {
			continue
		}
		o.Voters++
		if p.ID == self {
			o.Remaining = append(o.Remaining, p)
			continue
		}
		if m, ok := byID[p.ID]; ok && m.Alive {
			o.Remaining = append(o.Remaining, p)
			o.Unproven = append(o.Unproven, fmt.Sprintf("%s is alive in gossip", p.Address))
			continue
		}
		ip := hostOf(p.Address)
		state, err := lookup(ctx, ip)
		other := otherServerAt(members, ip, p.ID)
		switch {
		case err != nil:
			o.Remaining = append(o.Remaining, p)
			o.Unproven = append(o.Unproven, fmt.Sprintf("%s does not answer and the API could not say why (%s)", p.Address, err))
		case state == DropletDeleted:
			o.Gone = append(o.Gone, GonePeer{RaftPeer: p, Reason: "no droplet holds its address any more", ForGood: true})
		case state == DropletActive && other != "":
			o.Gone = append(o.Gone, GonePeer{RaftPeer: p, Reason: fmt.Sprintf("its address now runs another Consul server, node ID %s", other), ForGood: true})
		case state == DropletOff:
			o.Gone = append(o.Gone, GonePeer{RaftPeer: p, Reason: "its droplet is off"})
		default:
			o.Remaining = append(o.Remaining, p)
			o.Unproven = append(o.Unproven, fmt.Sprintf("%s does not answer but its droplet is %s", p.Address, state))
		}
	}
	return o, nil
}

func stateOrErr(s DropletState, err error) string {
	if err != nil {
		return err.Error()
	}
	return s.String()
}

// otherServerAt is the node ID of an alive Consul server at ip that is not id.
func otherServerAt(members []Member, ip, id string) string {
	for _, m := range members {
		if m.Alive && m.Server && m.Address == ip && m.NodeID != "" && m.NodeID != id {
			return m.NodeID
		}
	}
	return ""
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// ClusterView is what the survivor's agent says; APIView reads it from the Consul API.
type ClusterView interface {
	Self(ctx context.Context) (Self, error)
	Leader(ctx context.Context) (string, error)
	// RaftPeers is the server's own raft configuration (a stale read: no leader needed).
	RaftPeers(ctx context.Context) ([]RaftPeer, error)
	Members(ctx context.Context) ([]Member, error)
	// Join makes the agent join the gossip member at addr.
	Join(ctx context.Context, addr string) error
}

// APIView is a ClusterView over the agent's HTTP API.
type APIView struct{ API *consulapi.Client }

func (v APIView) Self(ctx context.Context) (Self, error) { return ReadSelf(ctx, v.API) }

func (v APIView) Leader(ctx context.Context) (string, error) {
	return v.API.Status().LeaderWithQueryOptions(query(ctx))
}

func (v APIView) RaftPeers(ctx context.Context) ([]RaftPeer, error) {
	q := query(ctx)
	q.AllowStale = true
	cfg, err := v.API.Operator().RaftGetConfiguration(q)
	if err != nil {
		return nil, err
	}
	var out []RaftPeer
	for _, s := range cfg.Servers {
		out = append(out, RaftPeer{ID: s.ID, Address: s.Address, Voter: s.Voter})
	}
	return out, nil
}

func (v APIView) Members(ctx context.Context) ([]Member, error) {
	ms, err := Members(ctx, v.API)
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{Name: m.Name, Address: m.Addr, NodeID: m.Tags["id"], Server: m.Tags["role"] == "consul", Alive: m.Status == memberAlive})
	}
	return out, nil
}

func (v APIView) Join(ctx context.Context, addr string) error {
	_, err := v.API.Raw().Write("/v1/agent/join/"+addr, nil, nil, (&consulapi.WriteOptions{}).WithContext(ctx))
	return err
}

// ReadOutage assesses the cluster through view; ok is false when the server has a leader
// (no outage) or is not a voter.
func ReadOutage(ctx context.Context, view ClusterView, lookup DropletLookup) (o Outage, leaderless bool, err error) {
	leader, err := view.Leader(ctx)
	if err != nil {
		return o, false, err
	}
	if leader != "" {
		return o, false, nil
	}
	self, err := view.Self(ctx)
	if err != nil {
		return o, true, err
	}
	peers, err := view.RaftPeers(ctx)
	if err != nil {
		return o, true, fmt.Errorf("reading the raft configuration: %w", err)
	}
	members, err := view.Members(ctx)
	if err != nil {
		return o, true, fmt.Errorf("reading the gossip members: %w", err)
	}
	o, err = AssessOutage(ctx, self.NodeID, peers, members, lookup)
	return o, true, err
}

// PeersFile is where the survivor's agent looks for a recovery configuration at start.
const PeersFile = DataDir + "/raft/peers.json"

// NoQuorumError says the survivor has no leader and the voters lost are not proven gone
// for good, so recovering would risk two clusters.
type NoQuorumError struct {
	Outage  Outage
	Elapsed time.Duration
}

func (e *NoQuorumError) Error() string {
	return fmt.Sprintf("the Consul cluster has had no leader for %s, and outage recovery is not safe: %s", e.Elapsed.Round(time.Second), e.Outage)
}

// OutageRecovery waits until the survivor's cluster has a leader, and recovers it with
// peers.json when (and only when) the voters it lost are proven gone for good.
type OutageRecovery struct {
	Engine    Engine
	Container *Container
	View      ClusterView
	Lookup    DropletLookup
	Log       func(msg string, fields map[string]any)
	// Interval between looks (default 1 s).
	Interval time.Duration
	// Join are the addresses (the servers' retry_join as planned now) the recovered server
	// joins: the replacement servers may have started while it was down for the recovery,
	// joined each other only and stopped retrying, and the survivor's own retry_join list
	// is the one its container started with, the dead servers' addresses.
	Join []string
}

// Run returns the container (restarted if it recovered) once a leader answers or the
// recovery restarted the server (the caller waits for it to vote), recovered saying which.
// Without proof it keeps waiting, within ctx, for a leader or the proof: the apply that
// replaces a dead node brings the proof (its droplet deleted, its address taken by a new
// server) a little later.
func (r *OutageRecovery) Run(ctx context.Context) (c *Container, recovered bool, err error) {
	c = r.Container
	interval := r.Interval
	if interval <= 0 {
		interval = time.Second
	}
	started := time.Now()
	var last Outage
	var lastErr error
	err = wait.Until(ctx, wait.Options{What: "a Consul leader, or proof that the lost servers are gone for good", Interval: interval, MaxInterval: 2 * interval},
		func(ctx context.Context) (bool, string, error) {
			o, leaderless, err := ReadOutage(ctx, r.View, r.Lookup)
			if err != nil {
				lastErr = err
				return false, "the server's API does not answer yet", wait.Retryable(err)
			}
			if !leaderless {
				return true, "", nil
			}
			last = o
			if !o.Lost(true) {
				return false, o.String(), nil
			}
			r.log("recovering the Consul cluster from the loss of its quorum (peers.json)", map[string]any{"outage": o.String()})
			c, err = Recover(ctx, r.Engine, c, o)
			if err != nil {
				return false, "", err
			}
			recovered = true
			r.joinAll(ctx)
			return true, "", nil
		})
	var timeout *wait.TimeoutError
	if errors.As(err, &timeout) && last.Voters > 0 {
		return c, false, &NoQuorumError{Outage: last, Elapsed: time.Since(started)}
	}
	if err != nil && lastErr != nil && last.Voters == 0 {
		return c, false, fmt.Errorf("%w (last: %v)", err, lastErr)
	}
	return c, recovered, err
}

// joinAll joins the recovered server to every address in r.Join, retrying each for a
// while (the agent's API answers a moment after the restart); best effort, as a server
// that answers later still joins through its own retry_join.
func (r *OutageRecovery) joinAll(ctx context.Context) {
	for _, addr := range r.Join {
		joinCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := wait.Until(joinCtx, wait.Options{What: "joining " + addr, Interval: 250 * time.Millisecond, MaxInterval: 2 * time.Second},
			func(ctx context.Context) (bool, string, error) {
				if err := r.View.Join(ctx, addr); err != nil {
					return false, "", wait.Retryable(err)
				}
				return true, "", nil
			})
		cancel()
		if err != nil {
			r.log("the recovered server could not join a server address", map[string]any{"address": addr, "error": err.Error()})
		}
	}
}

func (r *OutageRecovery) log(msg string, fields map[string]any) {
	if r.Log != nil {
		r.Log(msg, fields)
	}
}

// Recover stops the server, writes peers.json naming the remaining voters into its data
// dir, and starts it again: Consul then replaces its raft configuration with that list
// (and deletes the file). The data volume and node ID are kept.
func Recover(ctx context.Context, e Engine, c *Container, o Outage) (*Container, error) {
	if len(o.Remaining) == 0 {
		return nil, errors.New("no voter would remain")
	}
	seconds := int(StopTimeout / time.Second)
	if err := e.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &seconds}); err != nil {
		return nil, fmt.Errorf("stopping %s for the recovery: %w", c.Name, err)
	}
	archive, err := tarFiles([]File{{Path: PeersFile, Mode: 0o644, Content: o.PeersJSON()}})
	if err != nil {
		return nil, err
	}
	if err := e.CopyToContainer(ctx, c.ID, "/", archive, container.CopyToContainerOptions{}); err != nil {
		// Started again as it was: the next look tries again.
		_ = e.ContainerStart(context.WithoutCancel(ctx), c.ID, container.StartOptions{})
		return nil, fmt.Errorf("writing %s into %s: %w", PeersFile, c.Name, err)
	}
	if err := e.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return nil, fmt.Errorf("starting %s after writing %s: %w", c.Name, PeersFile, err)
	}
	return Find(ctx, e, c.Name)
}
