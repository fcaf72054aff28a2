package provider

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"

	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/localcloud"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// Fault scenarios with terraform as users run it (its own process, the provider a plugin
// it starts), counted through the cloud's API: 0 duplicated (no more droplets than the
// configuration has), 0 orphaned (every droplet in the state, none left after destroy).
// `make test-faults` (MICROSWARM_FAULTS=1) runs them all; the default run a subset.

const envFaults = "MICROSWARM_FAULTS"

func requireAcc(t *testing.T) {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	testkit.PreCheck(t)
}

func requireLongFaults(t *testing.T) {
	t.Helper()
	requireAcc(t)
	if os.Getenv(envFaults) != "1" {
		t.Skipf("a long fault scenario: set %s=1 (make test-faults)", envFaults)
	}
}

// faultNodesConfig is n droplet nodes named PREFIX-i, with the provider's stack_id if set.
func faultNodesConfig(prefix, stackID string, n int) string {
	provider := ""
	if stackID != "" {
		provider = fmt.Sprintf("provider \"microswarm\" {\n  stack_id = %q\n}\n", stackID)
	}
	return provider + fmt.Sprintf(`
resource "microswarm_droplet_node" "n" {
  count  = %d
  name   = "%s-${count.index}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
}
`, n, prefix)
}

// dropletsPrefixed lists the account's droplets whose name starts with prefix-.
func dropletsPrefixed(t *testing.T, prefix string) []godo.Droplet {
	t.Helper()
	api := testkit.Godo(t)
	var out []godo.Droplet
	opt := &godo.ListOptions{Page: 1, PerPage: 200}
	for {
		page, resp, err := api.Droplets.List(context.Background(), opt)
		for tries := 0; err != nil && resp != nil && resp.StatusCode == http.StatusTooManyRequests && tries < 30; tries++ {
			// The local cloud limits requests per token as DigitalOcean does, and the
			// provider under test spends the same budget: wait as the API says.
			wait := 2 * time.Second
			if reset := time.Until(resp.Rate.Reset.Time); reset > 0 && reset < time.Minute {
				wait = reset
			}
			time.Sleep(wait)
			page, resp, err = api.Droplets.List(context.Background(), opt)
		}
		if err != nil {
			t.Fatalf("listing droplets: %v", err)
		}
		for _, d := range page {
			if strings.HasPrefix(d.Name, prefix+"-") {
				out = append(out, d)
			}
		}
		if resp.Links == nil || resp.Links.IsLastPage() {
			return out
		}
		opt.Page++
	}
}

func dropletIDs(ds []godo.Droplet) []string {
	ids := make([]string, 0, len(ds))
	for _, d := range ds {
		ids = append(ids, fmt.Sprint(d.ID))
	}
	slices.Sort(ids)
	return ids
}

// tally is what the cloud holds against what the workspaces' states hold.
type tally struct{ inCloud, inState, duplicated, orphaned int }

func (c tally) String() string {
	return fmt.Sprintf("%d in the cloud, %d in state: %d duplicated, %d orphaned", c.inCloud, c.inState, c.duplicated, c.orphaned)
}

// count compares the droplets named prefix-* with the states' ids (each state holding
// its own): an id in no state is orphaned, one in two states or beyond want is duplicated.
func count(t *testing.T, prefix string, want int, states ...[]string) tally {
	t.Helper()
	cloud := dropletIDs(dropletsPrefixed(t, prefix))
	held := map[string]int{}
	var c tally
	for _, ids := range states {
		for _, id := range ids {
			held[id]++
			c.inState++
		}
	}
	c.inCloud = len(cloud)
	for _, id := range cloud {
		if held[id] == 0 {
			c.orphaned++
		}
		if held[id] > 1 {
			c.duplicated += held[id] - 1
		}
	}
	if c.inCloud > want {
		c.duplicated += c.inCloud - want - c.orphaned
	}
	return c
}

// faultRow logs one line of the fault table (docs/guides/faults.md).
func faultRow(t *testing.T, fault, observed string, c tally) {
	t.Logf("FAULT-TABLE | %s | %s | %s | %s", fault, observed, c, time.Now().UTC().Format("2006-01-02"))
}

// killPoint is a moment of a create at which terraform is killed.
type killPoint struct {
	name string
	wait func(t *testing.T, run *testkit.Command, prefix string, n int) bool
}

var (
	// The first create request went out: a droplet exists, terraform has saved nothing.
	killAfterPost = killPoint{"after the first create request", func(t *testing.T, run *testkit.Command, prefix string, n int) bool {
		return poll(run, func() bool { return len(dropletsPrefixed(t, prefix)) >= 1 })
	}}
	// Every droplet is active: the creates wait for SSH, rotate host keys.
	killWhenActive = killPoint{"when every droplet is active", func(t *testing.T, run *testkit.Command, prefix string, n int) bool {
		return poll(run, func() bool {
			ds := dropletsPrefixed(t, prefix)
			return len(ds) == n && !slices.ContainsFunc(ds, func(d godo.Droplet) bool { return d.Status != "active" })
		})
	}}
	// A create returned to terraform, which may not have saved it yet.
	killAfterCreated = killPoint{"after the first create returned", func(t *testing.T, run *testkit.Command, prefix string, n int) bool {
		return run.WaitFor("Creation complete", 5*time.Minute)
	}}
	// Still planning or just starting the creates.
	killEarly = killPoint{"1s into the apply", func(t *testing.T, run *testkit.Command, prefix string, n int) bool {
		time.Sleep(time.Second)
		return true
	}}
)

func poll(run *testkit.Command, done func() bool) bool {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if done() {
			return true
		}
		// Each check lists the droplets: once a second keeps the test's own requests
		// well inside the API's rate limit, which the provider under test shares.
		if run.WaitFor("Apply complete", time.Second) {
			return false
		}
	}
	return false
}

// interruptAndReapply applies n nodes, interrupts terraform at a point, and checks that
// one more apply converges with every droplet in state and no other, and that destroy
// leaves none.
func interruptAndReapply(t *testing.T, point killPoint, sig syscall.Signal, group bool) {
	interruptNAndReapply(t, 2, point, sig, group)
}

// interruptNAndReapply is interruptAndReapply with n nodes.
func interruptNAndReapply(t *testing.T, n int, point killPoint, sig syscall.Signal, group bool) {
	prefix := "kill-" + acctest.RandString(6)
	ws := testkit.NewWorkspace(t, faultNodesConfig(prefix, "ws-"+prefix, n))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	what := fmt.Sprintf("%s of terraform%s %s", unix(sig), map[bool]string{true: "'s process group", false: " alone"}[group], point.name)
	if n != 2 {
		what = fmt.Sprintf("%d nodes: %s", n, what)
	}

	run := ws.Start("apply", "-auto-approve")
	if !point.wait(t, run, prefix, n) {
		t.Fatalf("the apply finished before the point %q:\n%s", point.name, run.Output())
	}
	run.Signal(sig, group)
	_ = run.WaitWithin(t, 5*time.Minute)
	before := count(t, prefix, n, ws.StateIDs("microswarm_droplet_node"))
	t.Logf("%s: after the interruption %s", what, before)

	start := time.Now()
	out, err := ws.Terraform(ctx, "apply", "-auto-approve")
	if err != nil {
		t.Fatalf("%s: the next apply failed: %v", what, err)
	}
	took := time.Since(start).Round(time.Second)
	plan, err := ws.Terraform(ctx, "plan", "-detailed-exitcode")
	if err != nil {
		t.Fatalf("%s: the plan after the re-apply is not empty (or failed): %v\n%s", what, err, plan)
	}
	after := count(t, prefix, n, ws.StateIDs("microswarm_droplet_node"))
	if after.inCloud != n || after.inState != n || after.duplicated != 0 || after.orphaned != 0 {
		t.Fatalf("%s: after one re-apply %s; want %d, all in state\n%s", what, after, n, out)
	}
	for _, d := range dropletsPrefixed(t, prefix) {
		if slices.ContainsFunc(d.Tags, func(tag string) bool { return strings.HasPrefix(tag, droplet.PendingTagPrefix) }) {
			t.Fatalf("%s: droplet %d still pending after a refresh read it", what, d.ID)
		}
	}
	if _, err := ws.Terraform(ctx, "destroy", "-auto-approve"); err != nil {
		t.Fatalf("%s: destroy: %v", what, err)
	}
	left := count(t, prefix, n)
	if left.inCloud != 0 {
		t.Fatalf("%s: %d droplets left after destroy", what, left.inCloud)
	}
	adopted := strings.Count(out, "Adopted a Droplet")
	faultRow(t, what, fmt.Sprintf("after the interruption %d droplets (%d in state); one re-apply (%s) converged, %d adopted; empty plan; destroy left 0",
		before.inCloud, before.inState, took, adopted), after)
}

func unix(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}

// The representative kill: terraform and its provider die together right after the
// first create request; the next apply adopts, with no duplicate and no orphan.
func TestAccFaults_killGroupAfterCreateRequest(t *testing.T) {
	requireAcc(t)
	interruptAndReapply(t, killAfterPost, syscall.SIGKILL, true)
}

// Every other point and signal (make test-faults).
func TestAccFaults_interruptedCreates(t *testing.T) {
	requireLongFaults(t)
	for _, tc := range []struct {
		point killPoint
		sig   syscall.Signal
		group bool
	}{
		{killEarly, syscall.SIGKILL, true},
		{killAfterPost, syscall.SIGKILL, false},
		{killWhenActive, syscall.SIGKILL, false},
		{killWhenActive, syscall.SIGKILL, true},
		{killAfterCreated, syscall.SIGKILL, false},
		{killAfterCreated, syscall.SIGKILL, true},
		{killAfterPost, syscall.SIGINT, false},
		{killWhenActive, syscall.SIGINT, false},
	} {
		t.Run(fmt.Sprintf("%s %s group=%v", unix(tc.sig), tc.point.name, tc.group), func(t *testing.T) {
			interruptAndReapply(t, tc.point, tc.sig, tc.group)
		})
	}
}

// The same at 12 nodes: terraform's process group killed when every droplet is active
// (the creates waiting for SSH and rotating host keys, 12 at once); one re-apply adopts
// all 12 with no duplicate and no orphan (make test-faults).
func TestAccFaults_killGroupAt12Nodes(t *testing.T) {
	requireLongFaults(t)
	interruptNAndReapply(t, 12, killWhenActive, syscall.SIGKILL, true)
}

// Three workspaces of one configuration (same names, same SSH key, no stack_id) applied
// at the same time against one cloud: each ends with droplets of its own, and
// destroying one leaves the others whole.
func TestAccFaults_concurrentWorkspaces(t *testing.T) {
	requireAcc(t)
	const n, workspaces = 2, 3
	prefix := "conc-" + acctest.RandString(6)
	config := faultNodesConfig(prefix, "", n)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	wss := make([]*testkit.Workspace, workspaces)
	for i := range wss {
		wss[i] = testkit.NewWorkspace(t, config)
	}
	var wg sync.WaitGroup
	errs := make([]error, workspaces)
	for i, ws := range wss {
		wg.Go(func() { _, errs[i] = ws.Terraform(ctx, "apply", "-auto-approve") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("workspace %d: %v", i, err)
		}
	}
	states := make([][]string, workspaces)
	for i, ws := range wss {
		states[i] = ws.StateIDs("microswarm_droplet_node")
	}
	c := count(t, prefix, n*workspaces, states...)
	if c.inCloud != n*workspaces || c.inState != n*workspaces || c.duplicated != 0 || c.orphaned != 0 {
		t.Fatalf("after %d concurrent applies: %s (states %v)", workspaces, c, states)
	}
	if _, err := wss[0].Terraform(ctx, "destroy", "-auto-approve"); err != nil {
		t.Fatal(err)
	}
	for i, ws := range wss[1:] {
		if _, err := ws.Terraform(ctx, "plan", "-detailed-exitcode"); err != nil {
			t.Fatalf("workspace %d after workspace 0's destroy: %v", i+1, err)
		}
	}
	rest := count(t, prefix, n*(workspaces-1), states[1:]...)
	if rest.inCloud != n*(workspaces-1) || rest.orphaned != 0 {
		t.Fatalf("after destroying workspace 0: %s", rest)
	}
	for _, ws := range wss[1:] {
		if _, err := ws.Terraform(ctx, "destroy", "-auto-approve"); err != nil {
			t.Fatal(err)
		}
	}
	if left := count(t, prefix, 0); left.inCloud != 0 {
		t.Fatalf("%d droplets left after every destroy", left.inCloud)
	}
	faultRow(t, fmt.Sprintf("%d workspaces, one configuration, no stack_id, applied concurrently", workspaces),
		"each state holds its own droplets; destroying one left the others whole (empty plans); destroys left 0", c)
}

// The API with DigitalOcean's manners (rate limits and their headers, droplets `new`
// for a while, list-by-tag lag) and faults on top: a create whose answer is lost, 503s
// and 429s on a share of requests. The apply still converges with no duplicate.
func TestAccFaults_realMannersAndFailingAPI(t *testing.T) {
	requireAcc(t)
	cloud := testkit.LocalCloud(t)
	cloud.SetManners(localcloud.RealManners())
	cloud.SetFaults(
		localcloud.Fault{Kind: localcloud.FaultDrop, Match: "POST /v2/droplets", After: true, Count: 1},
		localcloud.Fault{Kind: localcloud.FaultUnavailable, Match: "GET /v2/droplets", Fraction: 0.2},
		localcloud.Fault{Kind: localcloud.FaultRateLimit, Fraction: 0.1, RetryAfter: 2},
		localcloud.Fault{Kind: localcloud.FaultServerError, Match: "POST /v2/tags", Fraction: 0.2},
	)
	t.Cleanup(func() { cloud.SetFaults(); cloud.SetManners(localcloud.Manners{}) })
	const n = 2
	prefix := "manners-" + acctest.RandString(6)
	ws := testkit.NewWorkspace(t, faultNodesConfig(prefix, "ws-"+prefix, n))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := ws.Terraform(ctx, "apply", "-auto-approve"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start).Round(time.Second)
	fired := cloud.FaultsFired()
	// The faults are for the provider; the test's own count of what the cloud holds reads
	// the API without them.
	cloud.SetFaults()
	c := count(t, prefix, n, ws.StateIDs("microswarm_droplet_node"))
	if c.inCloud != n || c.duplicated != 0 || c.orphaned != 0 {
		t.Fatalf("under real manners and faults %v: %s", fired, c)
	}
	if fired[localcloud.FaultDrop] != 1 {
		t.Fatalf("the lost create answer never happened: faults fired %v", fired)
	}
	if _, err := ws.Terraform(ctx, "destroy", "-auto-approve"); err != nil {
		t.Fatal(err)
	}
	if left := count(t, prefix, 0); left.inCloud != 0 {
		t.Fatalf("%d droplets left after destroy", left.inCloud)
	}
	faultRow(t, "real manners + a lost create answer, 503 on 20% of droplet reads, 429 (Retry-After 2) on 10% of requests, 500 on 20% of tag writes",
		fmt.Sprintf("apply converged in %s; faults fired %v; destroy left 0", took, fired), c)
}
