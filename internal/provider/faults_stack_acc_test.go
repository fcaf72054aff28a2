package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// Terraform interrupted in the middle of a full-stack create (3 droplets, a Consul server
// and 2 agents, a swarm of 1+2, a registrator, a blue/green app), at the moment a given
// resource starts creating, as users interrupt it: Ctrl-C, a SIGKILL of terraform alone
// (the provider goes on), a SIGKILL of its whole process group (the provider dies too).
// Then one apply converges and the plan after it is empty, with everything counted from
// outside the provider: the cloud's droplets (none duplicated, none orphaned), the swarm's
// nodes as a manager lists them (3, none left over from a join cut short), one Consul
// container per node and 3 live Consul members, and the app answering blue through every
// proxy node. Destroy leaves no droplet.
//
// The default run (CI) takes one case, a SIGKILL of the process group while the Consul
// server is created; `make test-faults` takes every point with every signal.
func TestAccFaults_interruptedFullStack(t *testing.T) {
	requireAcc(t)
	points := []string{
		"microswarm_swarm_cluster.test: Creating...",
		"microswarm_consul_server.s: Creating...",
		"microswarm_registrator.test: Creating...",
		"microswarm_microservice.test: Creating...",
	}
	type interruption struct {
		sig   syscall.Signal
		group bool
	}
	signals := []interruption{{syscall.SIGKILL, true}, {syscall.SIGKILL, false}, {syscall.SIGINT, false}}
	if os.Getenv(envFaults) != "1" {
		points, signals = points[1:2], signals[:1]
	}
	if only := os.Getenv("MICROSWARM_FAULTS_POINT"); only != "" {
		points = []string{only}
	}
	for _, point := range points {
		for _, s := range signals {
			name := fmt.Sprintf("%s group=%v at %s", unix(s.sig), s.group, strings.TrimSuffix(point, ": Creating..."))
			t.Run(name, func(t *testing.T) { interruptStackAndReapply(t, point, s.sig, s.group) })
		}
	}
}

// fullStackConfig is the microservice tests' stack with outputs to count it from outside,
// and a stack_id: a kill can land while a droplet is still being created, and only with a
// stack_id does the next apply adopt it (without one it refuses, as it must, and says so).
func fullStackConfig(prefix string) string {
	return fmt.Sprintf("provider \"microswarm\" {\n  stack_id = %q\n}\n", "ws-"+prefix) +
		microserviceConfig(prefix, colors("")+"  active = \"blue\"\n") + `
output "endpoints" {
  value = microswarm_microservice.test.endpoints
}

output "nodes" {
  value = [for n in microswarm_droplet_node.test : { host = n.docker_host, host_key = n.ssh_host_key }]
}
`
}

func interruptStackAndReapply(t *testing.T, point string, sig syscall.Signal, group bool) {
	const n = 3
	prefix := "ks-" + acctest.RandString(6)
	ws := testkit.NewWorkspace(t, fullStackConfig(prefix))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	what := fmt.Sprintf("%s of terraform%s when %s", unix(sig), map[bool]string{true: "'s process group", false: " alone"}[group],
		strings.TrimSuffix(point, "..."))
	destroyed := destroyAtCleanup(t, ws)

	run := ws.Start("apply", "-auto-approve")
	if !run.WaitFor(point, 10*time.Minute) {
		t.Fatalf("%s: the apply never reached the point:\n%s", what, run.Output())
	}
	time.Sleep(time.Second)
	run.Signal(sig, group)
	_ = run.WaitWithin(t, 5*time.Minute)
	before := count(t, prefix, n, ws.StateIDs("microswarm_droplet_node"))
	t.Logf("%s: after the interruption %s", what, before)

	took, after := reapplyStack(t, ctx, ws, prefix, n, what)
	nodes := checkStackAndDestroy(t, ctx, ws, prefix, n, what)
	*destroyed = true
	faultRow(t, what, fmt.Sprintf("after the interruption %d droplets (%d in state); one re-apply (%s) converged: %s, the app blue through every proxy; empty plan; destroy left 0",
		before.inCloud, before.inState, took, nodes), after)
}

func stackEndpoints(t *testing.T, ctx context.Context, ws *testkit.Workspace) []string {
	t.Helper()
	var endpoints []string
	outputJSON(t, ctx, ws, "endpoints", &endpoints)
	if len(endpoints) != 3 {
		t.Fatalf("endpoints %v, want 3", endpoints)
	}
	return endpoints
}

func outputJSON(t *testing.T, ctx context.Context, ws *testkit.Workspace, name string, v any) {
	t.Helper()
	out, err := ws.Terraform(ctx, "output", "-json", name)
	if err != nil {
		t.Fatalf("output %s: %v\n%s", name, err, out)
	}
	if i := strings.IndexAny(out, "[{"); i >= 0 {
		out = out[i:]
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("output %s %q: %v", name, out, err)
	}
}

// stackFromOutside checks the nodes as they are, through SSH with the pinned keys: the
// manager lists exactly 3 swarm nodes, all ready; every node runs exactly one Consul
// container; the Consul server sees 3 live members. It returns a summary.
func stackFromOutside(t *testing.T, ctx context.Context, ws *testkit.Workspace) string {
	t.Helper()
	var nodes []struct {
		Host    string `json:"host"`
		HostKey string `json:"host_key"`
	}
	outputJSON(t, ctx, ws, "nodes", &nodes)
	pool := testkit.Pool(t)
	var swarmNodes, consulContainers, members int
	for i, n := range nodes {
		h, err := pool.Open(ctx, conn.Target{Host: n.Host, HostKey: n.HostKey})
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		docker, err := h.Docker()
		if err != nil {
			t.Fatal(err)
		}
		list, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "consul"))})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 {
			names := []string{}
			for _, c := range list {
				names = append(names, strings.Join(c.Names, ","))
			}
			t.Fatalf("node %d runs %d Consul containers %v, want 1", i, len(list), names)
		}
		consulContainers += len(list)
		if i != 0 {
			continue
		}
		// Node 0 is the swarm's manager and the Consul server.
		sn, err := docker.NodeList(ctx, swarm.NodeListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sn {
			if s.Status.State != swarm.NodeStateReady {
				t.Fatalf("swarm node %s (%s) is %s: a node left over from an interrupted join", s.ID, s.Description.Hostname, s.Status.State)
			}
		}
		swarmNodes = len(sn)
		api, err := h.Consul(conn.ConsulConfig{})
		if err != nil {
			t.Fatal(err)
		}
		ms, err := api.Agent().Members(false)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Status == 1 { // alive
				members++
			}
		}
	}
	if swarmNodes != 3 || members != 3 {
		t.Fatalf("from outside: %d swarm nodes, %d live Consul members; want 3 and 3", swarmNodes, members)
	}
	return fmt.Sprintf("%d swarm nodes ready, %d Consul containers, %d live members", swarmNodes, consulContainers, members)
}

// A node powered off in the middle of a full-stack create (the worker that the Consul
// agent a[1] is being started on), as a droplet that crashes or is stopped from the
// control panel would be: the apply fails with an error that names the resource, and the
// next apply replaces the droplet (when_off = "replace", the default) and converges, with
// the same counts from outside as the interrupted creates. `make test-faults` only.
func TestAccFaults_nodeOffDuringCreate(t *testing.T) {
	requireLongFaults(t)
	const n = 3
	prefix := "off-" + acctest.RandString(6)
	ws := testkit.NewWorkspace(t, fullStackConfig(prefix))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	destroyed := destroyAtCleanup(t, ws)
	point := "microswarm_consul_agent.a[1]: Creating..."
	what := "worker w2 powered off when " + strings.TrimSuffix(point, "...")
	run := ws.Start("apply", "-auto-approve")
	if !run.WaitFor(point, 10*time.Minute) {
		t.Fatalf("%s: the apply never reached the point:\n%s", what, run.Output())
	}
	victim := dropletNamed(t, prefix, prefix+"-w2")
	if _, _, err := testkit.Godo(t).DropletActions.PowerOff(ctx, victim); err != nil {
		t.Fatal(err)
	}
	failed := run.WaitWithin(t, 15*time.Minute) != nil
	first := run.Output()
	errLine := firstError(first)
	t.Logf("%s: the apply failed=%v: %s", what, failed, errLine)
	// Terraform wraps diagnostics to the terminal's width: compare the words.
	flat := strings.Join(strings.Fields(strings.ReplaceAll(first, "│", " ")), " ")
	if failed && (!strings.Contains(flat, "with microswarm_") || !strings.Contains(flat, "the next apply heals it")) {
		t.Fatalf("%s: the error names no resource or does not say what the next apply does:\n%s", what, first)
	}

	took, after := reapplyStack(t, ctx, ws, prefix, n, what)
	for _, d := range dropletsPrefixed(t, prefix) {
		if d.ID == victim {
			t.Fatalf("%s: the powered-off droplet %d is still there", what, victim)
		}
	}
	nodes := checkStackAndDestroy(t, ctx, ws, prefix, n, what)
	*destroyed = true
	faultRow(t, what, fmt.Sprintf("the apply failed=%v: %s; one re-apply (%s) replaced the droplet and converged: %s, the app blue through every proxy; empty plan; destroy left 0",
		failed, errLine, took, nodes), after)
}

// reapplyStack runs the one apply that must converge after a fault, then a plan that must
// be empty, and checks the droplets: n in the cloud, all in state, none duplicated or
// orphaned. It returns how long the apply took and the count.
func reapplyStack(t *testing.T, ctx context.Context, ws *testkit.Workspace, prefix string, n int, what string) (time.Duration, tally) {
	t.Helper()
	start := time.Now()
	out, err := ws.Terraform(ctx, "apply", "-auto-approve")
	if err != nil {
		t.Fatalf("%s: the next apply failed: %v\n%s", what, err, out)
	}
	took := time.Since(start).Round(time.Second)
	if plan, err := ws.Terraform(ctx, "plan", "-detailed-exitcode"); err != nil {
		t.Fatalf("%s: the plan after the re-apply is not empty (or failed): %v\n%s", what, err, plan)
	}
	after := count(t, prefix, n, ws.StateIDs("microswarm_droplet_node"))
	if after.inCloud != n || after.inState != n || after.duplicated != 0 || after.orphaned != 0 {
		t.Fatalf("%s: after one re-apply %s; want %d, all in state\n%s", what, after, n, out)
	}
	return took, after
}

// checkStackAndDestroy checks the converged stack from outside (stackFromOutside, blue
// through every proxy), then destroys it and checks that no droplet is left. It returns
// stackFromOutside's summary.
func checkStackAndDestroy(t *testing.T, ctx context.Context, ws *testkit.Workspace, prefix string, n int, what string) string {
	t.Helper()
	nodes := stackFromOutside(t, ctx, ws)
	if color, ok := agreedColor(stackEndpoints(t, ctx, ws), "blue", 30*time.Second); !ok {
		t.Fatalf("%s: the proxies do not all answer blue: %s", what, color)
	}
	if out, err := ws.Terraform(ctx, "destroy", "-auto-approve"); err != nil {
		t.Fatalf("%s: destroy: %v\n%s", what, err, out)
	}
	if left := count(t, prefix, n); left.inCloud != 0 {
		t.Fatalf("%s: %d droplets left after destroy", what, left.inCloud)
	}
	return nodes
}
