// Package health reads Consul's view of a service, a node or a whole datacenter, and keeps
// the failure ledger behind replace_token: a counter that moves once per new failure and
// never on recovery, so a resource that follows it is replaced exactly once per failure.
package health

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// Statuses, from best to worst.
const (
	Passing  = consulapi.HealthPassing
	Warning  = consulapi.HealthWarning
	Critical = consulapi.HealthCritical
)

// Scope is what a report covers: one service (optionally only its instances with Tag),
// one node, or, with neither, the whole datacenter. Datacenter picks the datacenter to
// ask; empty is the agent's own.
type Scope struct {
	Service    string
	Tag        string
	Node       string
	Datacenter string
}

// ScopeError is a scope that names no single subject; Field is the setting at fault.
type ScopeError struct {
	Field, Summary, Reason string
}

func (e *ScopeError) Error() string { return e.Field + ": " + e.Reason }

// Validate rejects combinations that name no single subject, as a *ScopeError.
func (s Scope) Validate() error {
	switch {
	case s.Service != "" && s.Node != "":
		return &ScopeError{Field: "node", Summary: "Conflicting Health Scope",
			Reason: "set service or node, not both: a report covers one service, one node, or (with neither) the whole datacenter"}
	case s.Tag != "" && s.Service == "":
		return &ScopeError{Field: "tag", Summary: "Tag Without a Service", Reason: "tag filters a service's instances: set service too"}
	}
	return nil
}

// String names the scope, e.g. `service demo-app (tag blue)`, `node web-1`, `datacenter dc1`.
func (s Scope) String() string {
	dc := s.Datacenter
	if dc == "" {
		dc = "(agent's)"
	}
	switch {
	case s.Service != "" && s.Tag != "":
		return fmt.Sprintf("service %s (tag %s) in datacenter %s", s.Service, s.Tag, dc)
	case s.Service != "":
		return fmt.Sprintf("service %s in datacenter %s", s.Service, dc)
	case s.Node != "":
		return fmt.Sprintf("node %s in datacenter %s", s.Node, dc)
	}
	return "datacenter " + dc
}

// Check is one Consul health check.
type Check struct {
	ID, Name, Status, Output string
}

// Instance is one registered service instance and its checks (its node's checks included,
// as Consul counts them).
type Instance struct {
	ID, Service, Node, Address string
	Port                       int
	Tags                       []string
	Status                     string
	Checks                     []Check
}

// Node is one catalog node and its node-level checks (serfHealth: is the agent alive).
type Node struct {
	ID, Name, Address, Status string
	Checks                    []Check
}

// Report is what Read saw.
type Report struct {
	// Status is the worst status in scope; critical also when the subject is missing (a
	// service with no instance, a node not in the catalog).
	Status string
	// Passing, Warning and Critical count instances by their aggregated status.
	Passing, Warning, Critical int
	Instances                  []Instance
	Nodes                      []Node
	// Failing names each critical subject: an instance (by service ID), a node (by name
	// and node ID, so a replacement with the same name is a different subject) or a
	// missing subject. A node-scope report counts node-level checks only: an app
	// failing on a node is the app's failure, not the node's.
	Failing []string
	// Missing says what the scope names that Consul does not know, if anything.
	Missing string
	// Subjects maps every subject in scope (the names Failing uses) to whether it is
	// failing. A scope's presence is a subject too (`missing:SCOPE`), failing while the
	// scope names nothing Consul knows.
	Subjects map[string]bool
	// Leaderless: Consul had no leader, so the catalog may be stale; node states then come
	// from the agent's gossip view (a node the survivors see failed is critical).
	Leaderless bool

	instancesFail bool
	// observed is what the ledger is told (see Observation): the whole service's subjects
	// when the scope has a tag, the scope's own otherwise.
	observed map[string]bool
}

// Observation is what the report tells the ledger. A service's ledger is one for every
// tag, so every read of it observes the whole service, whatever its tag: reads of two
// tags, or of a tag and the whole service, made at different moments of one plan then
// count one failure once. Were each to fold in only its tag's subjects, a failure that
// spans colors (a node that runs both) would be counted by the first read for its color
// and again by the next read for the other one, and the first read's token would move a
// second time in the plan after.
func (r *Report) Observation(grace time.Duration) Observation {
	return Observation{Subjects: r.observed, Grace: grace}
}

// Read asks Consul (through any agent) for the scope's health. Stale reads are allowed so
// that a cluster that lost its leader still reports what its agents know.
// A failed read is tried again a few times: a client agent whose chosen server just died
// answers from another one on the next call.
func Read(ctx context.Context, api *consulapi.Client, s Scope) (*Report, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var err error
	for attempt := 1; ; attempt++ {
		var r *Report
		if r, err = readOnce(ctx, api, s); err == nil || attempt == readAttempts {
			return r, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(readRetryPause):
		}
	}
}

const (
	readAttempts   = 3
	readRetryPause = 500 * time.Millisecond
)

func readOnce(ctx context.Context, api *consulapi.Client, s Scope) (*Report, error) {
	q := (&consulapi.QueryOptions{Datacenter: s.Datacenter, AllowStale: true}).WithContext(ctx)
	r := &Report{instancesFail: true}
	// whole is the untagged service, for the ledger, when the scope has a tag.
	var whole *Report
	leader := func(meta *consulapi.QueryMeta) {
		if meta != nil && !meta.KnownLeader {
			r.Leaderless = true
		}
	}
	switch {
	case s.Service != "":
		// Every instance, whatever the tag: the report keeps the tag's, the ledger sees all
		// (Observation). One answer for both, so they cannot disagree.
		entries, meta, err := api.Health().Service(s.Service, "", false, q)
		if err != nil {
			return nil, fmt.Errorf("health of %s: %w", s, err)
		}
		leader(meta)
		r.addServiceEntries(entries, s)
		if s.Tag != "" {
			whole = &Report{instancesFail: true}
			whole.addServiceEntries(entries, Scope{Service: s.Service, Datacenter: s.Datacenter})
		}
	case s.Node != "":
		node, meta, err := api.Catalog().Node(s.Node, q)
		if err != nil {
			return nil, fmt.Errorf("catalog entry of %s: %w", s, err)
		}
		leader(meta)
		if node == nil || node.Node == nil {
			r.Missing = fmt.Sprintf("%s is not in Consul's catalog", s)
			break
		}
		checks, _, err := api.Health().Node(s.Node, q)
		if err != nil {
			return nil, fmt.Errorf("health of %s: %w", s, err)
		}
		services := make([]*consulapi.AgentService, 0, len(node.Services))
		for _, svc := range node.Services {
			services = append(services, svc)
		}
		// The node is the subject: its apps' failures are reported, not counted as its own.
		r.instancesFail = false
		r.addNode(node.Node, checks, services)
	default:
		nodes, meta, err := api.Catalog().Nodes(q)
		if err != nil {
			return nil, fmt.Errorf("nodes of %s: %w", s, err)
		}
		leader(meta)
		checks, _, err := api.Health().State(consulapi.HealthAny, q)
		if err != nil {
			return nil, fmt.Errorf("checks of %s: %w", s, err)
		}
		byNode := map[string]consulapi.HealthChecks{}
		for _, c := range checks {
			byNode[c.Node] = append(byNode[c.Node], c)
		}
		for _, cn := range nodes {
			services, _, err := api.Catalog().NodeServiceList(cn.Node, q)
			if err != nil {
				return nil, fmt.Errorf("services of node %s: %w", cn.Node, err)
			}
			var list []*consulapi.AgentService
			if services != nil {
				list = services.Services
			}
			r.addNode(cn, byNode[cn.Node], list)
		}
		if len(nodes) == 0 {
			r.Missing = fmt.Sprintf("%s has no node", s)
		}
	}
	down := gossipDown(api)
	r.finish(s, down)
	r.observed = r.Subjects
	if whole != nil {
		whole.finish(Scope{Service: s.Service, Datacenter: s.Datacenter}, down)
		r.observed = whole.Subjects
	}
	return r, nil
}

// addServiceEntries records the entries that carry the scope's tag (all of them without
// one, as Consul's tag filter would), their nodes, and a missing scope.
func (r *Report) addServiceEntries(entries []*consulapi.ServiceEntry, s Scope) {
	seen := map[string]bool{}
	for _, e := range entries {
		if s.Tag != "" && !slices.Contains(e.Service.Tags, s.Tag) {
			continue
		}
		if !seen[e.Node.Node] {
			seen[e.Node.Node] = true
			r.Nodes = append(r.Nodes, nodeOf(e.Node, e.Checks))
		}
		in := Instance{ID: e.Service.ID, Service: e.Service.Service, Node: e.Node.Node,
			Address: cmp.Or(e.Service.Address, e.Node.Address), Port: e.Service.Port, Tags: e.Service.Tags}
		for _, c := range e.Checks {
			in.Checks = append(in.Checks, checkOf(c))
		}
		r.Instances = append(r.Instances, in)
	}
	if len(r.Instances) == 0 {
		r.Missing = fmt.Sprintf("no instance of %s is registered", s)
	}
}

// gossipDown names the members the local agent's gossip sees failed or gone, with their
// node IDs: without a leader the catalog keeps saying they pass. Best effort: a report
// without it is the catalog's.
func gossipDown(api *consulapi.Client) map[string]string {
	members, err := api.Agent().Members(false)
	if err != nil {
		return nil
	}
	down := map[string]string{}
	for _, m := range members {
		if m.Status != int(serfAlive) {
			down[m.Name] = m.Tags["id"]
		}
	}
	return down
}

// serfAlive is a gossip member's status when it is alive (serf.StatusAlive).
const serfAlive = 1

// addNode records a node, its node-level checks, and its service instances with the checks
// Consul counts for them (theirs and the node's).
func (r *Report) addNode(cn *consulapi.Node, checks consulapi.HealthChecks, services []*consulapi.AgentService) {
	n := nodeOf(cn, checks)
	r.Nodes = append(r.Nodes, n)
	slices.SortFunc(services, func(a, b *consulapi.AgentService) int { return strings.Compare(a.ID, b.ID) })
	for _, svc := range services {
		in := Instance{ID: svc.ID, Service: svc.Service, Node: cn.Node, Address: cmp.Or(svc.Address, cn.Address), Port: svc.Port, Tags: svc.Tags}
		for _, c := range checks {
			if c.ServiceID == svc.ID || c.ServiceID == "" {
				in.Checks = append(in.Checks, checkOf(c))
			}
		}
		r.Instances = append(r.Instances, in)
	}
}

// finish applies the gossip view to the nodes (down: name -> node ID of members that are
// not alive), settles every status and count, the subjects and the failures, in a stable
// order.
func (r *Report) finish(s Scope, down map[string]string) {
	downIDs := map[string]bool{}
	for i := range r.Nodes {
		n := &r.Nodes[i]
		if id, ok := down[n.Name]; ok && (id == "" || n.ID == "" || id == n.ID) {
			n.Checks = append(n.Checks, gossipCheck)
			downIDs[n.Name] = true
		}
		n.Status = worst(n.Checks)
	}
	r.Subjects = map[string]bool{}
	statuses := []string{Passing}
	for i := range r.Instances {
		in := &r.Instances[i]
		if downIDs[in.Node] {
			in.Checks = append(in.Checks, gossipCheck)
		}
		in.Status = worst(in.Checks)
		statuses = append(statuses, in.Status)
		switch in.Status {
		case Passing:
			r.Passing++
		case Warning:
			r.Warning++
		default:
			r.Critical++
		}
		if r.instancesFail {
			r.Subjects["instance:"+in.Node+"/"+in.ID] = in.Status == Critical
		}
	}
	for _, n := range r.Nodes {
		statuses = append(statuses, n.Status)
		// The node ID keeps a replacement that took the name apart from the failed node.
		r.Subjects["node:"+n.Name+"/"+n.ID] = n.Status == Critical
	}
	r.Subjects["missing:"+s.String()] = r.Missing != ""
	if r.Missing != "" {
		statuses = append(statuses, Critical)
	}
	r.Status = worstOf(statuses)
	r.Failing = nil
	for _, name := range slices.Sorted(maps.Keys(r.Subjects)) {
		if r.Subjects[name] {
			r.Failing = append(r.Failing, name)
		}
	}
}

// gossipCheck stands for what the catalog cannot say without a leader: the agent's
// gossip sees the node failed or gone.
var gossipCheck = Check{ID: "gossip", Name: "Gossip Membership", Status: Critical,
	Output: "the local agent's gossip sees this member failed or gone"}

func nodeOf(cn *consulapi.Node, checks consulapi.HealthChecks) Node {
	n := Node{ID: cn.ID, Name: cn.Node, Address: cn.Address}
	for _, c := range checks {
		if c.ServiceID == "" && c.Node == cn.Node {
			n.Checks = append(n.Checks, checkOf(c))
		}
	}
	return n
}

func checkOf(c *consulapi.HealthCheck) Check {
	return Check{ID: c.CheckID, Name: c.Name, Status: c.Status, Output: strings.TrimSpace(c.Output)}
}

// worst is the aggregated status of checks, as Consul computes it: maintenance counts as
// critical; no check at all is passing.
func worst(checks []Check) string {
	statuses := make([]string, 0, len(checks))
	for _, c := range checks {
		statuses = append(statuses, c.Status)
	}
	return worstOf(statuses)
}

func worstOf(statuses []string) string {
	out := Passing
	for _, s := range statuses {
		switch s {
		case Passing:
		case Warning:
			if out == Passing {
				out = Warning
			}
		default: // critical, maintenance, or anything Consul adds later
			out = Critical
		}
	}
	return out
}
