package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"

	"github.com/microswarm/terraform-provider-microswarm/internal/loadgen"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// An interrupted switch, with terraform as users run it: `active = "green"` applied and
// terraform interrupted inside the auto_rollback watch (Ctrl-C, a SIGKILL of terraform
// alone, a SIGKILL of its whole process group, the provider with it). Afterwards every
// proxy routes to one color, the next apply converges to the configuration and the plan
// after it is empty; under load, no request fails throughout. Counted from outside: the
// colors that answer through every proxy node.
func TestAccFaults_interruptedSwitch(t *testing.T) {
	requireAcc(t)
	type interruption struct {
		sig   syscall.Signal
		group bool
	}
	cases := []interruption{{syscall.SIGKILL, false}}
	if os.Getenv(envFaults) == "1" {
		cases = append(cases, interruption{syscall.SIGINT, false}, interruption{syscall.SIGKILL, true})
	}
	prefix := "sw-" + acctest.RandString(6)
	config := microserviceConfig(prefix, colors("")+"  active = var.active\n  auto_rollback = \"20s\"\n") + `
variable "active" {
  type    = string
  default = "blue"
}

output "endpoints" {
  value = microswarm_microservice.test.endpoints
}
`
	ws := testkit.NewWorkspace(t, config)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if out, err := ws.Terraform(context.Background(), "destroy", "-auto-approve"); err != nil {
			t.Errorf("destroy: %v\n%s", err, out)
		}
	})
	if out, err := ws.Terraform(ctx, "apply", "-auto-approve"); err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	out, err := ws.Terraform(ctx, "output", "-json", "endpoints")
	if err != nil {
		t.Fatal(err)
	}
	var endpoints []string
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &endpoints); err != nil || len(endpoints) != 3 {
		t.Fatalf("endpoints %q: %v", out, err)
	}
	load, err := loadgen.Start(context.Background(), loadgen.Options{
		Targets: endpoints, Concurrency: 8, MaxRequests: 10_000_000, MaxDuration: 25 * time.Minute, DisableKeepAlive: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer load.Stop()

	for _, c := range cases {
		what := fmt.Sprintf("%s of terraform%s inside the switch's watch", unix(c.sig), map[bool]string{true: "'s process group", false: " alone"}[c.group])
		run := ws.Start("apply", "-auto-approve", "-var", "active=green")
		if !run.WaitFor("microswarm_microservice.test: Modifying", 5*time.Minute) {
			t.Fatalf("%s: the apply did not start the switch:\n%s", what, run.Output())
		}
		// The flip is done when every proxy answers green; the watch has begun.
		if color, ok := agreedColor(endpoints, "green", time.Minute); !ok {
			t.Fatalf("%s: the proxies did not all switch to green (%q):\n%s", what, color, run.Output())
		}
		time.Sleep(2 * time.Second)
		run.Signal(c.sig, c.group)
		_ = run.WaitWithin(t, 5*time.Minute)
		// Whatever the provider still does (a rollback after a cut-short watch takes up
		// to 30 s), the proxies end up agreeing on one color.
		left, ok := "", false
		for deadline := time.Now().Add(45 * time.Second); !ok && time.Now().Before(deadline); {
			time.Sleep(3 * time.Second)
			before, agreed := agreedColor(endpoints, "", 10*time.Second)
			time.Sleep(3 * time.Second)
			left, ok = agreedColor(endpoints, before, time.Second)
			ok = ok && agreed
		}
		if !ok {
			t.Fatalf("%s: the proxies do not agree on one color: %s", what, left)
		}
		plan, err := ws.Terraform(ctx, "plan", "-var", "active=green", "-detailed-exitcode")
		t.Logf("%s: the proxies route to %s; the next plan (%v): %s", what, left, err, planSummary(plan))
		if out, err := ws.Terraform(ctx, "apply", "-auto-approve", "-var", "active=green"); err != nil {
			t.Fatalf("%s: the next apply failed: %v\n%s", what, err, out)
		}
		if color, ok := agreedColor(endpoints, "green", 10*time.Second); !ok {
			t.Fatalf("%s: after the next apply the proxies route to %q, want green", what, color)
		}
		if out, err := ws.Terraform(ctx, "plan", "-var", "active=green", "-detailed-exitcode"); err != nil {
			t.Fatalf("%s: the plan after the next apply is not empty: %v\n%s", what, err, out)
		}
		// Back to blue for the next case.
		if out, err := ws.Terraform(ctx, "apply", "-auto-approve", "-var", "active=blue"); err != nil {
			t.Fatalf("%s: switching back to blue: %v\n%s", what, err, out)
		}
		requests, failed := 0, []string{}
		for _, r := range load.Results(0) {
			requests++
			if !r.OK() {
				failed = append(failed, fmt.Sprintf("%s %s: %s", r.Start.Format("15:04:05.000"), r.Target, r.Err))
			}
		}
		faultRow(t, what, fmt.Sprintf("the proxies agreed on %s; one apply converged to green, empty plan; %d requests so far, %d failed", left, requests, len(failed)),
			count(t, prefix, 3, ws.StateIDs("microswarm_droplet_node")))
		if len(failed) != 0 {
			t.Fatalf("%s: %d of %d requests failed: %v", what, len(failed), requests, failed[:min(len(failed), 5)])
		}
	}
	rep := load.Stop()
	t.Logf("load through the interrupted switches: %s", rep)
	if rep.Failed != 0 {
		t.Fatalf("%d of %d requests failed: %v %v", rep.Failed, rep.Requests, rep.Errors, rep.Examples)
	}
}

// agreedColor waits until every endpoint answers one color (want, if set), 10 times in
// a row each, and returns it; else what it saw last.
func agreedColor(endpoints []string, want string, timeout time.Duration) (string, bool) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	answer := func(url string) string {
		resp, err := client.Get(url)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var body struct {
			Color string `json:"color"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
			return ""
		}
		return body.Color
	}
	last := ""
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		seen := map[string]bool{}
		for _, ep := range endpoints {
			for range 10 {
				seen[answer(ep)] = true
			}
		}
		if len(seen) == 1 && !seen[""] {
			for c := range seen {
				if want == "" || c == want {
					return c, true
				}
			}
		}
		last = fmt.Sprint(seen)
	}
	return last, false
}

// planSummary is the plan's "Plan: ..." or "No changes." line.
func planSummary(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Plan:") || strings.HasPrefix(line, "No changes.") {
			return line
		}
	}
	return "(no summary)"
}
