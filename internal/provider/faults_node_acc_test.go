package provider

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"

	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// nodeFault is a fault of one node in the middle of a full-stack create, made from
// outside as it happens on a droplet: inside the node's machine (here, the local cloud's
// container for the droplet), never through the provider.
type nodeFault struct {
	name   string // the fault, as the table says it
	point  string // terraform's line at which it is made
	victim string // the droplet's name, after the prefix
	inject string // shell run on the node to make it
	// lift is run on the node before the next apply, as the operator would after reading
	// the error ("" when the next apply must heal it by itself).
	lift string
	// says: words the failed apply's error must contain (besides the resource's address):
	// what broke and what the next apply does.
	says []string
	// config changes the stack's configuration ("" keeps fullStackConfig's).
	config func(prefix string) string
}

// Node faults during a full-stack create: sshd stopped on a worker, its Docker engine
// stopped, and the only Consul server stopped (no leader), each at the moment a resource
// on that node starts creating. The apply fails with an error that names the resource,
// says what broke and what the next apply does; the next apply (after the operator
// restarts sshd or the engine, as the error says; with nothing done by hand for Consul)
// converges, and everything is counted from outside as after the interruptions.
// `make test-faults` only; MICROSWARM_FAULTS_NODE picks one by its first word.
func TestAccFaults_nodeFaultsDuringCreate(t *testing.T) {
	requireLongFaults(t)
	faults := []nodeFault{
		{
			name:   "sshd stopped on worker w2 (listener and sessions) when microswarm_consul_agent.a[1] starts creating",
			point:  "microswarm_consul_agent.a[1]: Creating...",
			victim: "w2",
			// Killed sshd processes stay as zombies (PID 1 is dockerd): the listener is what counts.
			inject: "pkill -x sshd; for i in 1 2 3 4 5 6 7 8 9 10; do ss -Hltn 'sport = :22' | grep -q . || exit 0; sleep 0.2; done; exit 1",
			lift:   "/usr/sbin/sshd -E /var/log/sshd.log",
			says:   []string{"does not answer over SSH", "the next apply"},
		},
		{
			// As `systemctl stop docker.socket docker` leaves a droplet: the engine's socket is
			// gone and every connection to it ended (the SSH sessions that carried them too).
			name:   "Docker engine stopped on worker w2 (its socket gone, its connections ended) when microswarm_consul_agent.a[1] starts creating",
			point:  "microswarm_consul_agent.a[1]: Creating...",
			victim: "w2",
			inject: "mv /var/run/docker.sock /var/run/docker.sock.stopped && pkill -f '^sshd: root'; exit 0",
			lift:   "mv /var/run/docker.sock.stopped /var/run/docker.sock",
			says:   []string{"Docker engine", "the next apply"},
		},
		{
			// The stack's only Consul server stopped (`docker stop`: its restart policy leaves
			// it stopped): the cluster has no leader while the agents join. Their create
			// timeout is short so that the apply gives up within a minute.
			name:   "the only Consul server stopped (no leader) when microswarm_consul_agent.a[1] starts creating",
			point:  "microswarm_consul_agent.a[1]: Creating...",
			victim: "m",
			inject: "docker stop $(docker ps -q --filter label=io.microswarm.role=consul-server) >/dev/null",
			says:   []string{"no leader", "the next apply"},
			config: func(prefix string) string {
				return strings.Replace(fullStackConfig(prefix), "  depends_on     = [microswarm_consul_server.s]\n",
					"  timeouts       = { create = \"45s\" }\n  depends_on     = [microswarm_consul_server.s]\n", 1)
			},
		},
	}
	only := os.Getenv("MICROSWARM_FAULTS_NODE")
	for _, f := range faults {
		if only != "" && !strings.HasPrefix(f.name, only) {
			continue
		}
		t.Run(strings.SplitN(f.name, " when ", 2)[0], func(t *testing.T) { nodeFaultAndReapply(t, f) })
	}
}

func nodeFaultAndReapply(t *testing.T, f nodeFault) {
	const n = 3
	prefix := "nf-" + acctest.RandString(6)
	config := fullStackConfig(prefix)
	if f.config != nil {
		config = f.config(prefix)
	}
	ws := testkit.NewWorkspace(t, config)
	cloud := testkit.LocalCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	destroyed := destroyAtCleanup(t, ws)

	run := ws.Start("apply", "-auto-approve")
	if !run.WaitFor(f.point, 10*time.Minute) {
		t.Fatalf("%s: the apply never reached the point:\n%s", f.name, run.Output())
	}
	node := dropletNamed(t, prefix, prefix+"-"+f.victim)
	if out, err := cloud.RunInDroplet(ctx, node, f.inject); err != nil {
		t.Fatalf("%s: making the fault: %v\n%s", f.name, err, out)
	}
	failed := run.WaitWithin(t, 15*time.Minute) != nil
	first := run.Output()
	flat := strings.Join(strings.Fields(strings.ReplaceAll(first, "│", " ")), " ")
	errLine := firstError(first)
	t.Logf("%s: the apply failed=%v: %s", f.name, failed, errLine)
	if !failed {
		t.Fatalf("%s: the apply succeeded; the fault did not bite:\n%s", f.name, first)
	}
	if !strings.Contains(flat, "with microswarm_") {
		t.Fatalf("%s: the error names no resource:\n%s", f.name, first)
	}
	t.Logf("%s: what the apply said: %s", f.name, errorText(flat))
	for _, w := range f.says {
		if !strings.Contains(strings.ToLower(flat), strings.ToLower(w)) {
			t.Fatalf("%s: the error does not say %q:\n%s", f.name, w, first)
		}
	}
	if f.lift != "" {
		if out, err := cloud.RunInDroplet(ctx, node, f.lift); err != nil {
			t.Fatalf("%s: lifting the fault: %v\n%s", f.name, err, out)
		}
	}

	took, after := reapplyStack(t, ctx, ws, prefix, n, f.name)
	nodes := checkStackAndDestroy(t, ctx, ws, prefix, n, f.name)
	*destroyed = true
	lifted := "with nothing done by hand"
	if f.lift != "" {
		lifted = "after `" + f.lift + "` on the node"
	}
	faultRow(t, f.name, fmt.Sprintf("the apply failed: %s; %s, one re-apply (%s) converged: %s, the app blue through every proxy; empty plan; destroy left 0",
		errLine, lifted, took, nodes), after)
}

// destroyAtCleanup destroys what the workspace made when the test ends, unless the test
// destroyed it itself and set the flag.
func destroyAtCleanup(t *testing.T, ws *testkit.Workspace) *bool {
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			if out, err := ws.Terraform(context.Background(), "destroy", "-auto-approve"); err != nil {
				t.Errorf("destroy: %v\n%s", err, out)
			}
		}
	})
	return &destroyed
}

// firstError is terraform's first error line, with the resource it names.
func firstError(out string) string {
	i := strings.Index(out, "Error: ")
	if i < 0 {
		return ""
	}
	line := strings.SplitN(out[i:], "\n", 2)[0]
	if j := strings.Index(out[i:], "with "); j >= 0 {
		line += " (" + strings.SplitN(out[i+j:], "\n", 2)[0] + ")"
	}
	return line
}

// errorText is the flattened output from its first error on.
func errorText(flat string) string {
	if i := strings.Index(flat, "Error: "); i >= 0 {
		return flat[i:]
	}
	return ""
}

// dropletNamed is the ID of the stack's droplet named name.
func dropletNamed(t *testing.T, prefix, name string) int {
	t.Helper()
	for _, d := range dropletsPrefixed(t, prefix) {
		if d.Name == name {
			return d.ID
		}
	}
	t.Fatalf("no droplet %s", name)
	return 0
}
