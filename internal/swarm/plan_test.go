package swarm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Test nodes: managers m1..m3 and workers w1..w3 at 10.0.0.x.
func mgr(id string, leader bool) Node {
	return Node{ID: id, Hostname: "h-" + id, Addr: "0.0.0.0", ManagerAddr: addrOf(id) + ":2377", Role: RoleManager, IsManager: true,
		Availability: AvailabilityActive, State: StateReady, Reachability: Reachable, Leader: leader}
}

func wrk(id string) Node {
	return Node{ID: id, Hostname: "h-" + id, Addr: addrOf(id), Role: RoleWorker, Availability: AvailabilityActive, State: StateReady}
}

func down(n Node) Node {
	n.State = StateDown
	if n.IsManager {
		n.Reachability = Unreachable
		n.Leader = false
	}
	return n
}

func addrOf(id string) string {
	return map[string]string{"m1": "10.0.0.1", "m2": "10.0.0.2", "m3": "10.0.0.3", "w1": "10.0.0.11", "w2": "10.0.0.12", "w3": "10.0.0.13", "x": "10.0.0.99"}[id]
}

// member is a configured member named like its node, recorded as that node.
func member(id string, role Role) Member {
	return Member{Key: id, Target: Target{Host: "ssh://root@" + id}, AdvertiseAddr: addrOf(id), Role: role, Availability: AvailabilityActive, NodeID: id}
}

func unjoined(m Member) Member {
	m.NodeID = ""
	return m
}

func steps(s []Step) []string {
	out := make([]string, 0, len(s))
	for _, st := range s {
		id := st.Member.Key
		if id == "" {
			id = st.Node.ID
		}
		out = append(out, fmt.Sprintf("%s %s", st.Kind, id))
	}
	return out
}

func TestPlan(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		nodes   []Node
		members []Member
		managed []string
		want    []string
		wantErr string
	}{
		"a converged swarm plans nothing": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{member("m1", RoleManager), member("w1", RoleWorker)},
			managed: []string{"m1", "w1"},
			want:    []string{},
		},
		"new members join, managers before workers": {
			nodes:   []Node{mgr("m1", true)},
			members: []Member{member("m1", RoleManager), unjoined(member("w1", RoleWorker)), unjoined(member("m2", RoleManager))},
			want:    []string{"join m2", "join w1"},
		},
		"a member that left joins again": {
			nodes:   []Node{mgr("m1", true), wrk("w2")},
			members: []Member{member("m1", RoleManager), unjoined(member("w1", RoleWorker)), member("w2", RoleWorker)},
			managed: []string{"m1", "w2"},
			want:    []string{"join w1"},
		},
		"a member that is down is recovered": {
			nodes:   []Node{mgr("m1", true), down(wrk("w1"))},
			members: []Member{member("m1", RoleManager), member("w1", RoleWorker)},
			managed: []string{"m1", "w1"},
			want:    []string{"recover w1"},
		},
		"one to three managers promotes one at a time": {
			nodes:   []Node{mgr("m1", true), wrk("w1"), wrk("w2")},
			members: []Member{member("m1", RoleManager), member("w1", RoleManager), member("w2", RoleManager)},
			managed: []string{"m1", "w1", "w2"},
			want:    []string{"promote w1", "promote w2"},
		},
		"an unfinished promotion is promoted again": {
			nodes:   []Node{mgr("m1", true), {ID: "w1", Role: RoleManager, State: StateReady, Availability: AvailabilityActive}},
			members: []Member{member("m1", RoleManager), member("w1", RoleManager)},
			want:    []string{"promote w1"},
		},
		"three to one managers demotes followers before the leader": {
			nodes:   []Node{mgr("m1", false), mgr("m2", true), mgr("m3", false)},
			members: []Member{member("m1", RoleManager), member("m2", RoleWorker), member("m3", RoleWorker)},
			want:    []string{"demote m3", "demote m2"},
		},
		"unreachable managers are demoted first": {
			nodes:   []Node{mgr("m1", true), mgr("m2", false), down(mgr("m3", false))},
			members: []Member{member("m1", RoleManager)},
			managed: []string{"m1", "m2", "m3"},
			want:    []string{"demote m3", "demote m2", "remove m2", "remove m3"},
		},
		"a removed worker is drained and removed": {
			nodes:   []Node{mgr("m1", true), wrk("w1"), wrk("w2")},
			members: []Member{member("m1", RoleManager), member("w1", RoleWorker)},
			managed: []string{"m1", "w1", "w2"},
			want:    []string{"remove w2"},
		},
		"promotions come before demotions, so a manager swap keeps the quorum": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{member("m1", RoleWorker), member("w1", RoleManager)},
			want:    []string{"promote w1", "demote m1"},
		},
		"a replaced manager host joins before the old node leaves": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{unjoined(member("m2", RoleManager)), member("w1", RoleWorker)},
			managed: []string{"m1", "w1"},
			want:    []string{"join m2", "demote m1", "remove m1"},
		},
		"availability changes in place": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{member("m1", RoleManager), func() Member { m := member("w1", RoleWorker); m.Availability = AvailabilityDrain; return m }()},
			want:    []string{"availability w1"},
		},
		"an empty availability means any": {
			nodes:   []Node{mgr("m1", true), func() Node { n := wrk("w1"); n.Availability = AvailabilityPause; return n }()},
			members: []Member{member("m1", RoleManager), func() Member { m := member("w1", RoleWorker); m.Availability = ""; return m }()},
			want:    []string{},
		},
		"nodes the configuration does not own are left alone": {
			nodes:   []Node{mgr("m1", true), wrk("x")},
			members: []Member{member("m1", RoleManager)},
			managed: []string{"m1"},
			want:    []string{},
		},
		"managed nodes already gone need nothing": {
			nodes:   []Node{mgr("m1", true)},
			members: []Member{member("m1", RoleManager)},
			managed: []string{"m1", "w9"},
			want:    []string{},
		},
		"a demotion that would lose the quorum is refused": {
			nodes:   []Node{mgr("m1", true), mgr("m2", false), down(mgr("m3", false))},
			members: []Member{member("m1", RoleManager), member("m2", RoleWorker), member("m3", RoleManager)},
			wantErr: "below the quorum of 2",
		},
		"a swarm without quorum is refused": {
			nodes:   []Node{mgr("m1", true), down(mgr("m2", false)), down(mgr("m3", false))},
			members: []Member{member("m1", RoleManager)},
			wantErr: "1 reachable, below the quorum of 2",
		},
		"the last manager is never demoted": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{member("m1", RoleWorker), member("w1", RoleWorker)},
			wantErr: "at least one manager",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := Plan(tc.nodes, Resolve(tc.nodes, tc.members), tc.managed)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Plan error = %v, want one containing %q (steps %v)", err, tc.wantErr, steps(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if !slices.Equal(steps(got), tc.want) {
				t.Fatalf("Plan = %q, want %q", steps(got), tc.want)
			}
		})
	}
}

// TestPlanKeepsQuorumAtEveryStep applies each plan's first step to a model of the raft
// group, re-plans, and checks the quorum after every step, for manager count changes.
func TestPlanKeepsQuorumAtEveryStep(t *testing.T) {
	t.Parallel()
	ids := []string{"m1", "m2", "m3", "w1", "w2"}
	cases := map[string]struct{ from, to int }{
		"1 to 3": {1, 3}, "3 to 1": {3, 1}, "1 to 5": {1, 5}, "5 to 1": {5, 1}, "3 to 5": {3, 5}, "5 to 3": {5, 3},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var nodes []Node
			var members []Member
			for i, id := range ids {
				n := wrk(id)
				if i < tc.from {
					n = mgr(id, i == tc.from-1) // the leader is the last manager, the one a shrink demotes
				}
				nodes = append(nodes, n)
				role := RoleWorker
				if i < tc.to {
					role = RoleManager
				}
				members = append(members, member(id, role))
			}
			for round := 0; ; round++ {
				if round > 10 {
					t.Fatal("no convergence after 10 steps")
				}
				plan, err := Plan(nodes, Resolve(nodes, members), ids)
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if len(plan) == 0 {
					break
				}
				s := plan[0]
				for i := range nodes {
					if nodes[i].ID != s.Node.ID {
						continue
					}
					switch s.Kind {
					case StepPromote:
						nodes[i] = mgr(nodes[i].ID, false)
					case StepDemote:
						if nodes[i].Leader && slices.ContainsFunc(plan[1:], func(s Step) bool { return s.Kind == StepDemote }) {
							t.Fatalf("round %d: the leader %s was demoted before the followers in %v", round, nodes[i].ID, steps(plan[1:]))
						}
						nodes[i] = wrk(nodes[i].ID)
					default:
						t.Fatalf("round %d: unexpected step %s", round, s)
					}
				}
				if m, r := raftCounts(nodes); r < Quorum(m) {
					t.Fatalf("round %d: after %s, %d of %d managers reachable", round, s, r, m)
				}
			}
			if m, _ := raftCounts(nodes); m != tc.to {
				t.Fatalf("ended with %d managers, want %d", m, tc.to)
			}
		})
	}
}

func TestPlanQuorumErrorNamesTheUnreachable(t *testing.T) {
	t.Parallel()
	nodes := []Node{mgr("m1", true), mgr("m2", false), down(mgr("m3", false))}
	_, err := Plan(nodes, Resolve(nodes, []Member{member("m1", RoleManager), member("m3", RoleManager)}), []string{"m2"})
	var qe *QuorumError
	if !errors.As(err, &qe) {
		t.Fatalf("error %v is not a QuorumError", err)
	}
	if qe.Managers != 2 || qe.Reachable != 1 || len(qe.Unreachable) != 1 || !strings.Contains(qe.Unreachable[0], "m3") {
		t.Fatalf("QuorumError = %+v", qe)
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	stale := down(wrk("w1"))
	stale.ID = "old-w1"
	cases := map[string]struct {
		nodes   []Node
		members []Member
		want    map[string]string // key -> node ID
	}{
		"a recorded node still listed is kept": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{member("m1", RoleManager), member("w1", RoleWorker)},
			want:    map[string]string{"m1": "m1", "w1": "w1"},
		},
		"a member with no record claims the node at its address": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{unjoined(member("m1", RoleManager)), unjoined(member("w1", RoleWorker))},
			want:    map[string]string{"m1": "m1", "w1": "w1"},
		},
		"a recorded node that is gone falls back to the address": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{member("m1", RoleManager), func() Member { m := member("w1", RoleWorker); m.NodeID = "gone"; return m }()},
			want:    map[string]string{"m1": "m1", "w1": "w1"},
		},
		"a ready node wins over the stale entry a node left behind": {
			nodes:   []Node{mgr("m1", true), stale, wrk("w1")},
			members: []Member{member("m1", RoleManager), unjoined(member("w1", RoleWorker))},
			want:    map[string]string{"m1": "m1", "w1": "w1"},
		},
		"a stale entry is claimed when it is all there is": {
			nodes:   []Node{mgr("m1", true), stale},
			members: []Member{member("m1", RoleManager), unjoined(member("w1", RoleWorker))},
			want:    map[string]string{"m1": "m1", "w1": "old-w1"},
		},
		"a node at no member's address is nobody's": {
			nodes:   []Node{mgr("m1", true), wrk("x")},
			members: []Member{member("m1", RoleManager), unjoined(member("w1", RoleWorker))},
			want:    map[string]string{"m1": "m1", "w1": ""},
		},
		"an interface name matches no address": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{member("m1", RoleManager), func() Member { m := unjoined(member("w1", RoleWorker)); m.AdvertiseAddr = "eth1"; return m }()},
			want:    map[string]string{"m1": "m1", "w1": ""},
		},
		"an advertise address with a port matches": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{member("m1", RoleManager), func() Member { m := unjoined(member("w1", RoleWorker)); m.AdvertiseAddr = "10.0.0.11:2377"; return m }()},
			want:    map[string]string{"m1": "m1", "w1": "w1"},
		},
		"a node is claimed once": {
			nodes:   []Node{mgr("m1", true), wrk("w1")},
			members: []Member{member("m1", RoleManager), unjoined(member("w1", RoleWorker)), func() Member { m := unjoined(member("w1", RoleWorker)); m.Key = "w1-again"; return m }()},
			want:    map[string]string{"m1": "m1", "w1": "w1", "w1-again": ""},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := map[string]string{}
			for _, m := range Resolve(tc.nodes, tc.members) {
				got[m.Key] = m.NodeID
			}
			for k, want := range tc.want {
				if got[k] != want {
					t.Errorf("%s resolved to %q, want %q", k, got[k], want)
				}
			}
		})
	}
}

func TestManagerCountWarning(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		managers int
		warn     bool
	}{
		"one": {1, false}, "two": {2, true}, "three": {3, false}, "four": {4, true}, "five": {5, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := ManagerCountWarning(tc.managers); (got != "") != tc.warn {
				t.Fatalf("ManagerCountWarning(%d) = %q, want a warning: %v", tc.managers, got, tc.warn)
			}
		})
	}
}

func TestQuorum(t *testing.T) {
	t.Parallel()
	for managers, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 7: 4} {
		if got := Quorum(managers); got != want {
			t.Errorf("Quorum(%d) = %d, want %d", managers, got, want)
		}
	}
}

func TestByRole(t *testing.T) {
	members := []Member{{Key: "w1", Role: RoleWorker}, {Key: "m1", Role: RoleManager}, {Key: "w2", Role: RoleWorker}, {Key: "m2", Role: RoleManager}}
	keys := func(ms []Member) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Key)
		}
		return strings.Join(out, ",")
	}
	if got := keys(ByRole(members, true)); got != "m1,m2,w1,w2" {
		t.Errorf("managers first: %s", got)
	}
	if got := keys(ByRole(members, false)); got != "w1,w2,m1,m2" {
		t.Errorf("managers last: %s", got)
	}
	if got := keys(members); got != "w1,m1,w2,m2" {
		t.Errorf("ByRole changed its argument: %s", got)
	}
}
