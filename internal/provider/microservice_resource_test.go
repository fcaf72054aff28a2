package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/microswarm/terraform-provider-microswarm/internal/bluegreen"
	"github.com/microswarm/terraform-provider-microswarm/internal/haproxy"
	"github.com/microswarm/terraform-provider-microswarm/internal/loadgen"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

const microserviceResourceName = "microswarm_microservice.test"

// microserviceConfig is the registrator stack plus a blue/green demo app behind a proxy
// on each of the three nodes.
func microserviceConfig(prefix, body string) string {
	return registratorStackConfig(prefix, fmt.Sprintf("  resync = %d\n", testRegistratorResync)) + `
resource "microswarm_microservice" "test" {
  name     = "accweb"
  host     = microswarm_droplet_node.test[0].docker_host
  host_key = microswarm_droplet_node.test[0].ssh_host_key
  proxy_hosts = [for n in microswarm_droplet_node.test : {
    host     = n.docker_host
    host_key = n.ssh_host_key
  }]
` + body + `
  depends_on = [microswarm_registrator.test]
}
`
}

// colors renders the two color blocks; greenEnv adds env to green. Green's Docker
// HEALTHCHECK is off, so an instance the test makes fail stays failing (swarm would
// replace it) and only Consul's and the proxies' checks see it.
func colors(greenEnv string) string {
	return `
  blue = {
    image           = "microswarm/demo-app:1.0.0"
    replicas        = 2
    env             = { COLOR = "blue", SHUTDOWN_DELAY = "1s" }
    labels          = { SERVICE_TAGS = "acc", team = "web" }
    cpu_limit       = 0.5
    memory_limit_mb = 64
  }
  green = {
    image    = "microswarm/demo-app:2.0.0"
    replicas = 2
    env      = { COLOR = "green", SHUTDOWN_DELAY = "1s"` + greenEnv + ` }
    healthcheck = { test = ["NONE"] }
  }
`
}

func TestAccMicroservice_blueGreen(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	fx := &microserviceFixture{registratorFixture: registratorFixture{swarmFixture: swarmFixture{t: t, pool: testkit.Pool(t)}, app: "accweb"}}
	active := func(c string) string { return colors("") + fmt.Sprintf("  active = %q\n", c) }

	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				// v1 as blue takes the traffic, v2 as green stands by.
				Config: microserviceConfig(prefix, active("blue")),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("live_color"), knownvalue.StringExact("blue")),
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("live_version"), knownvalue.StringExact("1.0.0")),
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("endpoints"), knownvalue.ListSizeExact(3)),
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("blue_passing"), knownvalue.Int64Exact(2)),
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("green_passing"), knownvalue.Int64Exact(2)),
				},
				Check: resource.ComposeAggregateTestCheckFunc(fx.record, fx.recordEndpoints, fx.checkAnswers("1.0.0")),
			},
			{
				// Switch to green under load: no failed request, v2 only after the switch began.
				PreConfig:         fx.startLoad("to-green"),
				Config:            microserviceConfig(prefix, active("green")),
				ConfigPlanChecks:  resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(microserviceResourceName, plancheck.ResourceActionUpdate)}},
				ConfigStateChecks: []statecheck.StateCheck{statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("live_version"), knownvalue.StringExact("2.0.0"))},
				Check:             fx.markDone("to-green-done"),
			},
			{
				// And back to blue, still under the same load.
				PreConfig:         fx.mark("to-blue"),
				Config:            microserviceConfig(prefix, active("blue")),
				ConfigStateChecks: []statecheck.StateCheck{statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("live_color"), knownvalue.StringExact("blue"))},
				Check:             fx.checkLoad(),
			},
			{
				// Import by a manager's host and the name: what lives in the swarm comes back;
				// the proxy hosts (and so the live route) come from the configuration.
				Config:       "provider \"microswarm\" {\n  host_key_policy = \"accept-new\"\n}\n" + microserviceConfig(prefix, active("blue")),
				ResourceName: microserviceResourceName,
				ImportState:  true,
				ImportStateIdFunc: func(s *terraform.State) (string, error) {
					host, err := entryAttr(s, "m", "host")
					return host + ",accweb", err
				},
				ImportStateVerify: true,
				ImportStateVerifyIgnore: []string{"proxy_hosts", "endpoints", "live_color", "live_version", "active", "canary_weight",
					"timeouts", "blue_passing", "green_passing", "blue_running", "green_running"},
			},
			{
				// Terraform forgets the microservice (a removed block) and leaves it running...
				Config: registratorStackConfig(prefix, fmt.Sprintf("  resync = %d\n", testRegistratorResync)) + `
removed {
  from = microswarm_microservice.test
  lifecycle {
    destroy = false
  }
}
`,
				Check: fx.checkAnswers("1.0.0"),
			},
			{
				// ...and imports it again with an import block, under load: the apply takes it
				// over, reads the route from the proxies, changes nothing in the swarm, no
				// request fails, and the plan after it is empty. (An import has no host key to
				// pin: the policy vouches for it.)
				PreConfig: fx.startLoadFor("import", 2_000_000, 5*time.Minute),
				Config: "provider \"microswarm\" {\n  host_key_policy = \"accept-new\"\n}\n" + microserviceConfig(prefix, active("blue")) + `
import {
  to = microswarm_microservice.test
  id = "${microswarm_droplet_node.test[0].docker_host},accweb"
}
`,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(microserviceResourceName, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("live_color"), knownvalue.StringExact("blue")),
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("active"), knownvalue.StringExact("blue")),
				},
				Check: resource.ComposeAggregateTestCheckFunc(fx.checkNoFailures(500), fx.checkAnswers("1.0.0")),
			},
			{
				// A switch made out of band and a color scaled out of band show as drift, and
				// the apply puts both back.
				PreConfig: fx.driftOutOfBand("green"),
				Config:    microserviceConfig(prefix, active("blue")),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(microserviceResourceName, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("live_color"), knownvalue.StringExact("blue")),
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("blue_running"), knownvalue.Int64Exact(2)),
				},
				Check: fx.checkAnswers("1.0.0"),
			},
			{
				// One proxy of three routes to green, as a switch killed mid-flip (SIGKILL of
				// the provider) leaves them: the refresh reads live_color "mixed", the plan
				// updates with no configuration change, and the apply converges every proxy
				// to blue; the plan after it is empty.
				PreConfig: func() { fx.setActiveOn("green", "w2") },
				Config:    microserviceConfig(prefix, active("blue")),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(microserviceResourceName, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("live_color"), knownvalue.StringExact("blue")),
				},
				Check: fx.checkAnswers("1.0.0"),
			},
			{
				// A switch to a color whose instances fail their checks is refused; traffic stays.
				PreConfig:   fx.failColor("2.0.0"),
				Config:      microserviceConfig(prefix, active("green")),
				ExpectError: regexp.MustCompile(`Switch Refused: Target Not Healthy`),
			},
			{
				// The refused switch left blue live; fresh green tasks replace the failed ones.
				PreConfig: fx.restartColor("2.0.0"),
				Config:    microserviceConfig(prefix, active("blue")),
				Check:     resource.ComposeAggregateTestCheckFunc(fx.checkAnswers("1.0.0"), fx.awaitPassing(4)),
			},
			{
				// A canary share of 20 % goes to green.
				Config: microserviceConfig(prefix, active("blue")+"  canary_weight = 20\n"),
				Check:  fx.checkCanaryShare("green", 0.20, 0.05),
			},
			{
				// The canary share back to 0.
				Config: microserviceConfig(prefix, active("blue")),
				Check:  fx.checkAnswers("1.0.0"),
			},
			{
				// One proxy of three fails every set during a switch, under load: every proxy
				// is sent back to blue, the apply fails saying so, and no request fails.
				PreConfig: func() {
					fx.startLoadFor("faults", 2_000_000, 8*time.Minute)()
					setProxyFault(t, "w1", func(bluegreen.Route, int) error { return errors.New("injected: admin socket closed") })
				},
				Config:      microserviceConfig(prefix, active("green")),
				ExpectError: regexp.MustCompile(`Switch Failed`),
			},
			{
				// Blue answers through every proxy; with the fault gone the same configuration
				// applies again and converges on green, and the plan after it is empty.
				PreConfig: func() {
					setProxyFault(t, "", nil)
					if err := fx.checkAnswers("1.0.0")(nil); err != nil {
						t.Fatalf("after the failed switch: %v", err)
					}
				},
				Config: microserviceConfig(prefix, active("green")),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(microserviceResourceName, tfjsonpath.New("live_color"), knownvalue.StringExact("green")),
				},
				Check: fx.checkAnswers("2.0.0"),
			},
			{
				// Back to blue before the rollback test.
				Config: microserviceConfig(prefix, active("blue")),
				Check:  fx.checkAnswers("1.0.0"),
			},
			{
				// A green release that degrades after taking traffic is rolled back, though one
				// proxy fails its first restore (it is retried), and the apply fails saying so.
				PreConfig: func() {
					// Route changes on w1: 1 is the switch to green, 2 the first restore.
					setProxyFault(t, "w1", func(r bluegreen.Route, call int) error {
						if r.Active == bluegreen.Blue && call == 2 {
							return errors.New("injected: EOF")
						}
						return nil
					})
				},
				Config:      microserviceConfig(prefix, colors(`, FAIL_AFTER = "15s"`)+"  active = \"green\"\n  auto_rollback = \"40s\"\n"),
				ExpectError: regexp.MustCompile(`Switch Rolled Back`),
			},
			{
				// Traffic is back on blue on every proxy, which the configuration now says too,
				// and no request failed through the failed switch and the rollback.
				PreConfig: func() { setProxyFault(t, "", nil) },
				Config:    microserviceConfig(prefix, colors(`, FAIL_AFTER = "15s"`)+"  active = \"blue\"\n  auto_rollback = \"40s\"\n"),
				Check:     resource.ComposeAggregateTestCheckFunc(fx.checkAnswers("1.0.0"), fx.checkNoFailures(20000)),
			},
			{
				// A proxy configuration change (health_path: every proxy's checks and the
				// colors' Consul checks) under load: the proxies reload in place (the same
				// containers before and after), the colors roll, and no request fails.
				PreConfig: func() {
					fx.recordProxies()
					fx.startLoadFor("config", 2_000_000, 5*time.Minute)()
				},
				Config: microserviceConfig(prefix, colors("")+"  active = \"blue\"\n  health_path = \"/\"\n"),
				Check:  resource.ComposeAggregateTestCheckFunc(fx.checkNoFailures(10000), fx.checkSameProxies(), fx.checkAnswers("1.0.0")),
			},
			{
				// A listen port change rolls the proxies start-first: on every node the new
				// port answers before the old one stops, so one of them always answers.
				PreConfig: fx.startPortLoads(8081),
				Config:    microserviceConfig(prefix, colors("")+"  active = \"blue\"\n  health_path = \"/\"\n  listen_port = 8081\n"),
				Check:     resource.ComposeAggregateTestCheckFunc(fx.checkPortHandover(), fx.recordEndpoints, fx.checkAnswers("1.0.0")),
			},
			{
				// A proxy image change (the same image under another tag, made on every node)
				// replaces each node's proxy; meanwhile a stand-in takes the node's new
				// connections, so none is refused, and it is gone after the apply. Not yet
				// exactly zero: 2 and 6 of about 50,000 requests were reset (read: connection
				// reset by peer), one at a time, each as a proxy container stopped on that node
				// (stop-first alone refused 1 %); the bound keeps that from growing back. What
				// is known of them (2026-12-03): the new proxy answered 200 and logged the
				// client gone (CD); the node's FORWARD chain saw a mid-connection packet as a
				// new connection, so the flow's conntrack entry had vanished, and the packet
				// was NATed by the rules of that moment to a container without the connection.
				PreConfig: func() {
					fx.tagOnNodes("haproxy:2.6", "haproxy:2.6-acc")
					fx.recordProxies()
					fx.startLoadFor("image", 2_000_000, 5*time.Minute)()
				},
				Config: microserviceConfig(prefix, colors("")+"  active = \"blue\"\n  health_path = \"/\"\n  listen_port = 8081\n"+
					"  proxy_image = \"haproxy:2.6-acc\"\n"),
				Check: resource.ComposeAggregateTestCheckFunc(fx.checkNewProxies(), fx.checkFewFailures(10000, 2000), fx.checkNoStandIn(), fx.checkAnswers("1.0.0")),
			},
		},
	})
}

// setProxyFault makes route changes on the proxy whose node name ends in node fail as
// fail says (call counts that proxy's route changes from 1); nil clears it.
func setProxyFault(t *testing.T, node string, fail func(r bluegreen.Route, call int) error) {
	if fail == nil {
		proxyFault = nil
		return
	}
	var mu sync.Mutex
	calls := 0
	proxyFault = func(name string, r bluegreen.Route) error {
		if !strings.HasSuffix(name, node) {
			return nil
		}
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		err := fail(r, n)
		if err != nil {
			t.Logf("proxy fault on %s, route change %d to %s: %v", name, n, r.Active, err)
		}
		return err
	}
	t.Cleanup(func() { proxyFault = nil })
}

// checkNoFailures ends the load: not one request failed, and at least min were sent.
func (fx *microserviceFixture) checkNoFailures(minRequests int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		rep := fx.load.Stop()
		fx.t.Logf("load through the faults: %s", rep)
		if rep.Failed != 0 {
			return fmt.Errorf("%d of %d requests failed: %v %v", rep.Failed, rep.Requests, rep.Errors, rep.Examples)
		}
		if rep.Requests < minRequests {
			return fmt.Errorf("only %d requests, want at least %d", rep.Requests, minRequests)
		}
		return nil
	}
}

type microserviceFixture struct {
	registratorFixture
	endpoints []string
	load      *loadgen.Run
	// proxies are the proxy containers by node, oldLoad and newLoad a port change's loads.
	proxies          map[string]string
	oldLoad, newLoad *loadgen.Run
}

// proxyContainers lists the running proxy container of every node.
func (fx *microserviceFixture) proxyContainers() map[string]string {
	ctx, cancel := fx.ctx()
	defer cancel()
	out := map[string]string{}
	for key := range fx.targets {
		docker, err := fx.docker(key)
		if err != nil {
			fx.t.Fatal(err)
		}
		list, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name=accweb-proxy"))})
		if err != nil {
			fx.t.Fatal(err)
		}
		for _, c := range list {
			out[key] = c.ID
		}
	}
	return out
}

func (fx *microserviceFixture) recordProxies() { fx.proxies = fx.proxyContainers() }

// checkSameProxies: every node still runs the proxy container it ran before the step.
func (fx *microserviceFixture) checkSameProxies() resource.TestCheckFunc {
	return func(*terraform.State) error {
		now := fx.proxyContainers()
		if len(now) != len(fx.targets) || !maps.Equal(now, fx.proxies) {
			return fmt.Errorf("proxy containers were %v, now %v: the change restarted them", fx.proxies, now)
		}
		return nil
	}
}

// checkNewProxies: every node runs a proxy container it did not run before the step.
func (fx *microserviceFixture) checkNewProxies() resource.TestCheckFunc {
	return func(*terraform.State) error {
		// The last node's old proxy may still be finishing its requests (soft stop).
		var err error
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
			err = nil
			now := fx.proxyContainers()
			for key, id := range fx.proxies {
				if now[key] == "" || now[key] == id {
					err = fmt.Errorf("node %s: proxy container %q, before %q: the image change did not replace it", key, now[key], id)
				}
			}
			if err == nil || time.Now().After(deadline) {
				return err
			}
		}
	}
}

// checkFewFailures ends the load: at least min requests were sent, no request was
// refused, and at most one in perRequests failed otherwise.
func (fx *microserviceFixture) checkFewFailures(minRequests, perRequests int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		rep := fx.load.Stop()
		fx.t.Logf("load through the change: %s", rep)
		for e := range rep.Errors {
			if strings.Contains(e, "refused") {
				return fmt.Errorf("a connection was refused: %v %v", rep.Errors, rep.Examples)
			}
		}
		if rep.Failed > 0 {
			fx.logProxyLogs()
		}
		if rep.Failed*perRequests > rep.Requests {
			return fmt.Errorf("%d of %d requests failed, more than one in %d: %v %v", rep.Failed, rep.Requests, perRequests, rep.Errors, rep.Examples)
		}
		if rep.Requests < minRequests {
			return fmt.Errorf("only %d requests, want at least %d", rep.Requests, minRequests)
		}
		return nil
	}
}

// logProxyLogs logs what every proxy container on every node, running or stopped,
// logged (HAProxy logs its abnormal sessions only, with their termination state).
func (fx *microserviceFixture) logProxyLogs() {
	ctx, cancel := fx.ctx()
	defer cancel()
	for key := range fx.targets {
		docker, err := fx.docker(key)
		if err != nil {
			fx.t.Logf("node %s: %v", key, err)
			continue
		}
		// A name filter matches a part of the name: the proxy's and the stand-in's tasks.
		list, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", "accweb-proxy"))})
		if err != nil {
			fx.t.Logf("node %s: %v", key, err)
			continue
		}
		for _, c := range list {
			logs, err := docker.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Tail: "30"})
			if err != nil {
				fx.t.Logf("node %s, container %s: %v", key, c.Names, err)
				continue
			}
			var out bytes.Buffer
			_, _ = stdcopy.StdCopy(&out, &out, logs)
			_ = logs.Close()
			fx.t.Logf("node %s, %s (%s):\n%s", key, c.Names, c.State, out.String())
		}
	}
}

// checkNoStandIn: no node runs the proxy's stand-in any more.
func (fx *microserviceFixture) checkNoStandIn() resource.TestCheckFunc {
	return func(*terraform.State) error {
		ctx, cancel := fx.ctx()
		defer cancel()
		for key := range fx.targets {
			docker, err := fx.docker(key)
			if err != nil {
				return err
			}
			list, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name=accweb-proxy-standin"))})
			if err != nil {
				return err
			}
			if len(list) > 0 {
				return fmt.Errorf("node %s still runs the stand-in %s", key, list[0].ID)
			}
		}
		return nil
	}
}

// tagOnNodes tags image as tag in every node's engine.
func (fx *microserviceFixture) tagOnNodes(image, tag string) {
	ctx, cancel := fx.ctx()
	defer cancel()
	for key := range fx.targets {
		docker, err := fx.docker(key)
		if err == nil {
			err = docker.ImageTag(ctx, image, tag)
		}
		if err != nil {
			fx.t.Fatalf("tagging %s as %s on %s: %v", image, tag, key, err)
		}
	}
}

// startPortLoads loads the current endpoints and the same nodes on port newPort at once.
func (fx *microserviceFixture) startPortLoads(newPort int) func() {
	return func() {
		var next []string
		for _, ep := range fx.endpoints {
			u, err := url.Parse(ep)
			if err != nil {
				fx.t.Fatal(err)
			}
			next = append(next, "http://"+net.JoinHostPort(u.Hostname(), strconv.Itoa(newPort)))
		}
		start := func(targets []string) *loadgen.Run {
			run, err := loadgen.Start(context.Background(), loadgen.Options{Targets: targets, Concurrency: 8, MaxRequests: 2_000_000,
				MaxDuration: 5 * time.Minute, DisableKeepAlive: true})
			if err != nil {
				fx.t.Fatal(err)
			}
			fx.t.Cleanup(func() { run.Stop() })
			return run
		}
		fx.oldLoad, fx.newLoad = start(fx.endpoints), start(next)
		time.Sleep(2 * time.Second)
	}
}

// checkPortHandover: on every node the new port answered before the old one last did,
// the old port failed nothing before that, and the new one nothing after. A port has
// answered when a request through it has ended well: a request that started earlier can
// still end well (its SYN met the new task's network before it was up and was sent again
// a second later) while the requests right after it are refused, as the proxy inside is
// not listening yet; that is before the port answered, not after.
func (fx *microserviceFixture) checkPortHandover() resource.TestCheckFunc {
	return func(*terraform.State) error {
		time.Sleep(2 * time.Second)
		oldRep, newRep := fx.oldLoad.Stop(), fx.newLoad.Stop()
		host := func(target string) string { u, _ := url.Parse(target); return u.Hostname() }
		firstNew, lastOld := map[string]time.Time{}, map[string]time.Time{}
		for _, r := range newRep.Results {
			if h := host(r.Target); r.OK() && (firstNew[h].IsZero() || r.End.Before(firstNew[h])) {
				firstNew[h] = r.End
			}
			if r.OK() && r.End.Sub(r.Start) > 500*time.Millisecond {
				fx.t.Logf("%s took %s on the new port (%s to %s)", r.Target, r.End.Sub(r.Start).Round(time.Millisecond),
					r.Start.Format(time.StampMilli), r.End.Format(time.StampMilli))
			}
		}
		for _, r := range oldRep.Results {
			if h := host(r.Target); r.OK() && r.End.After(lastOld[h]) {
				lastOld[h] = r.End
			}
		}
		for _, r := range oldRep.Results {
			if h := host(r.Target); !r.OK() && (firstNew[h].IsZero() || r.Start.Before(firstNew[h])) {
				return fmt.Errorf("%s failed on the old port before the new one answered: %s", r.Target, r.Err)
			}
		}
		var late []loadgen.Result
		for _, r := range newRep.Results {
			if h := host(r.Target); !r.OK() && !firstNew[h].IsZero() && r.Start.After(firstNew[h]) {
				late = append(late, r)
			}
		}
		if len(late) > 0 {
			r := late[0]
			fx.logProxyLogs()
			return fmt.Errorf("%s failed on the new port at %s (%d failures until %s), after it first answered at %s: %s; %s", r.Target,
				r.Start.Format(time.StampMilli), len(late), late[len(late)-1].Start.Format(time.StampMilli), firstNew[host(r.Target)].Format(time.StampMilli),
				r.Err, fx.proxyTaskHistory())
		}
		for h, first := range firstNew {
			if !first.Before(lastOld[h]) {
				return fmt.Errorf("node %s: the new port first answered at %s, after the old one last did at %s", h, first.Format(time.StampMilli), lastOld[h].Format(time.StampMilli))
			}
			fx.t.Logf("node %s: both ports answered for %s", h, lastOld[h].Sub(first).Round(time.Millisecond))
		}
		if len(firstNew) != len(fx.endpoints) {
			return fmt.Errorf("the new port answered on %d of %d nodes", len(firstNew), len(fx.endpoints))
		}
		return nil
	}
}

func (fx *microserviceFixture) recordEndpoints(s *terraform.State) error {
	rs, ok := s.RootModule().Resources[microserviceResourceName]
	if !ok {
		return fmt.Errorf("%s not in state", microserviceResourceName)
	}
	fx.endpoints = nil
	for i := 0; ; i++ {
		v, ok := rs.Primary.Attributes[fmt.Sprintf("endpoints.%d", i)]
		if !ok {
			break
		}
		fx.endpoints = append(fx.endpoints, v)
	}
	if len(fx.endpoints) == 0 {
		return fmt.Errorf("no endpoints in state")
	}
	return nil
}

// checkAnswers asks every endpoint a few times: each answer is version.
func (fx *microserviceFixture) checkAnswers(version string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		c := http.Client{Timeout: 3 * time.Second}
		for _, ep := range fx.endpoints {
			for range 5 {
				resp, err := c.Get(ep + "/")
				if err != nil {
					return err
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(body), `"version":"`+version+`"`) {
					return fmt.Errorf("%s answered %d %s, want version %s", ep, resp.StatusCode, body, version)
				}
			}
		}
		return nil
	}
}

// startLoad starts the bounded load through every endpoint and marks the first switch.
func (fx *microserviceFixture) startLoad(mark string) func() {
	return fx.startLoadFor(mark, 200000, 4*time.Minute)
}

// startLoadFor is startLoad bounded by maxRequests and maxDuration.
func (fx *microserviceFixture) startLoadFor(mark string, maxRequests int, maxDuration time.Duration) func() {
	return func() {
		run, err := loadgen.Start(context.Background(), loadgen.Options{
			Targets: fx.endpoints, Concurrency: 16, MaxRequests: maxRequests, MaxDuration: maxDuration,
			// A new connection per request: no silent resend can hide a dropped one.
			DisableKeepAlive: true,
		})
		if err != nil {
			fx.t.Fatal(err)
		}
		fx.load = run
		fx.t.Logf("load %q started at %s", mark, time.Now().Format("15:04:05.000"))
		fx.t.Cleanup(func() { run.Stop() })
		// Some load before the switch, so "not before" has something to say.
		time.Sleep(3 * time.Second)
		run.Mark(mark)
	}
}

func (fx *microserviceFixture) mark(name string) func() {
	return func() { fx.load.Mark(name) }
}

func (fx *microserviceFixture) markDone(name string) resource.TestCheckFunc {
	return func(*terraform.State) error { fx.load.Mark(name); return nil }
}

// checkLoad ends the load: no request failed, v2 answered only after the switch to green
// began and v1 only after the switch back began, and enough requests were sent.
func (fx *microserviceFixture) checkLoad() resource.TestCheckFunc {
	return func(*terraform.State) error {
		time.Sleep(3 * time.Second)
		// On a slow machine the switches take fewer requests: the load goes on (after
		// them, on blue) until it has sent the 20000 that make "0 failed" mean something.
		deadline := time.Now().Add(30 * time.Second)
		for len(fx.load.Results(19999)) == 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		rep := fx.load.Stop()
		fx.t.Logf("load through the switches: %s", rep)
		if rep.Failed != 0 {
			return fmt.Errorf("%d of %d requests failed: %v %v", rep.Failed, rep.Requests, rep.Errors, rep.Examples)
		}
		if rep.RatePerSecond < 200 || rep.Requests < 20000 {
			return fmt.Errorf("%d requests at %.0f/s, want at least 20000 at 200/s or more", rep.Requests, rep.RatePerSecond)
		}
		if err := rep.ChangedOnlyAfter("to-green", "1.0.0", "2.0.0"); err != nil {
			return err
		}
		toGreen, toBlue := rep.Marks["to-green"], rep.Marks["to-blue"]
		greenDone := rep.Marks["to-green-done"]
		for _, r := range rep.Results {
			switch {
			case !r.OK():
			case r.End.Before(toGreen) && r.Version != "1.0.0":
				return fmt.Errorf("%s answered before the switch to green began", r.Version)
			case r.Start.After(greenDone) && r.End.Before(toBlue) && r.Version != "2.0.0":
				return fmt.Errorf("%s answered between the switches", r.Version)
			}
		}
		if first, ok := rep.FirstAfter("to-green", "2.0.0"); ok {
			fx.t.Logf("first v2 answer %s after the switch step began (terraform plan and refresh included)", first)
		}
		return nil
	}
}

// nodeContainer is a container and the engine of the node it runs on.
type nodeContainer struct {
	docker *client.Client
	id     string
}

// containersOf lists the containers of a version of the app on every node.
func (fx *microserviceFixture) containersOf(ctx context.Context, version string) []nodeContainer {
	fx.t.Helper()
	var out []nodeContainer
	for key := range fx.targets {
		docker, err := fx.docker(key)
		if err != nil {
			fx.t.Fatal(err)
		}
		list, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "microswarm.version="+version))})
		if err != nil {
			fx.t.Fatal(err)
		}
		for _, c := range list {
			out = append(out, nodeContainer{docker: docker, id: c.ID})
		}
	}
	return out
}

// tellFail makes the demo app in a container fail its health check from now on.
func (fx *microserviceFixture) tellFail(ctx context.Context, c nodeContainer) {
	fx.t.Helper()
	exec, err := c.docker.ContainerExecCreate(ctx, c.id, container.ExecOptions{Cmd: []string{"/demo-app", "-post", "http://127.0.0.1:8080/fail"}})
	if err == nil {
		err = c.docker.ContainerExecStart(ctx, exec.ID, container.ExecStartOptions{})
	}
	if err != nil {
		fx.t.Fatal(err)
	}
}

// failColor makes every instance of a version fail its health check.
func (fx *microserviceFixture) failColor(version string) func() {
	return func() {
		ctx, cancel := fx.ctx()
		for _, c := range fx.containersOf(ctx, version) {
			fx.tellFail(ctx, c)
		}
		cancel()
		// Until Consul sees them critical (the gate reads Consul and the proxies).
		ctx, cancel = fx.ctx()
		defer cancel()
		err := wait.Until(ctx, wait.Options{What: "green critical in Consul", Interval: 200 * time.Millisecond}, func(context.Context) (bool, string, error) {
			now, err := fx.instances()
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			for _, e := range now {
				if slices.Contains(e.Service.Tags, "version="+version) && passing(e) {
					return false, e.Service.ID + " still passing", nil
				}
			}
			return true, "", nil
		})
		if err != nil {
			fx.t.Fatal(err)
		}
	}
}

// driftOutOfBand switches every proxy to color through its admin socket, as an operator
// at a shell could, and scales blue down to one task.
func (fx *microserviceFixture) driftOutOfBand(color string) func() {
	return func() {
		fx.setActiveOn(color, "m", "w1", "w2")
		if err := fx.checkAnswers("2.0.0")(nil); err != nil {
			fx.t.Fatal(err)
		}
		ctx, cancel := fx.ctx()
		defer cancel()
		docker, err := fx.docker("m")
		if err != nil {
			fx.t.Fatal(err)
		}
		svc, _, err := docker.ServiceInspectWithRaw(ctx, "accweb-blue", dockerswarm.ServiceInspectOptions{})
		if err != nil {
			fx.t.Fatal(err)
		}
		one := uint64(1)
		svc.Spec.Mode.Replicated.Replicas = &one
		if _, err := docker.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, dockerswarm.ServiceUpdateOptions{}); err != nil {
			fx.t.Fatal(err)
		}
	}
}

// setActiveOn switches the proxies of the nodes named to color through their admin
// sockets, as an operator at a shell could, or as a switch killed mid-flip leaves them.
func (fx *microserviceFixture) setActiveOn(color string, keys ...string) {
	ctx, cancel := fx.ctx()
	defer cancel()
	for _, key := range keys {
		h, err := fx.pool.Open(ctx, fx.targets[key])
		if err != nil {
			fx.t.Fatal(err)
		}
		client := &haproxy.Client{Dial: func(ctx context.Context) (net.Conn, error) {
			return h.DialContext(ctx, "unix", "/var/lib/microswarm/proxy/accweb/admin.sock")
		}}
		if err := client.SetActive(ctx, "/var/lib/haproxy-bg/bluegreen.map", haproxy.Color(color)); err != nil {
			fx.t.Fatal(err)
		}
	}
}

// restartColor kills every container of a version; swarm starts fresh ones.
func (fx *microserviceFixture) restartColor(version string) func() {
	return func() {
		ctx, cancel := fx.ctx()
		defer cancel()
		for _, c := range fx.containersOf(ctx, version) {
			if err := c.docker.ContainerKill(ctx, c.id, "SIGKILL"); err != nil {
				fx.t.Fatal(err)
			}
		}
	}
}

// awaitPassing waits until n instances of the app pass in Consul.
func (fx *microserviceFixture) awaitPassing(n int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		_, err := fx.awaitInstances(2*time.Minute, n)
		return err
	}
}

// checkCanaryShare sends 2000 requests and checks color's share.
func (fx *microserviceFixture) checkCanaryShare(color string, want, tolerance float64) resource.TestCheckFunc {
	return func(*terraform.State) error {
		run, err := loadgen.Start(context.Background(), loadgen.Options{Targets: fx.endpoints, Concurrency: 4, MaxRequests: 2000, MaxDuration: time.Minute, DisableKeepAlive: true})
		if err != nil {
			return err
		}
		rep := run.Wait()
		share := rep.Share(color)
		fx.t.Logf("canary: %.1f%% of %d answers from %s (%d failed)", 100*share, rep.Requests, color, rep.Failed)
		if rep.Failed != 0 || share < want-tolerance || share > want+tolerance {
			return fmt.Errorf("%s answered %.1f%% of %d requests (%d failed), want %.0f%% ± %.0f", color, 100*share, rep.Requests, rep.Failed, 100*want, 100*tolerance)
		}
		return nil
	}
}

func TestMicroserviceInputIsValidatedAtPlanTime(t *testing.T) {
	const base = `
  name        = "web"
  host        = "ssh://root@192.0.2.1"
  proxy_hosts = [{ host = "ssh://root@192.0.2.1" }]
`
	blue := `  blue = { image = "microswarm/demo-app:1.0.0", replicas = 2 }` + "\n"
	green := `  green = { image = "microswarm/demo-app:2.0.0" }` + "\n"
	cases := map[string]struct{ body, wantErr string }{
		"active is blue or green":          {body: blue + `  active = "red"`, wantErr: `value must be one of`},
		"the active color is deployed":     {body: blue + `  active = "green"`, wantErr: `Active Color Not Deployed`},
		"the active color has a task":      {body: `  blue = { image = "a:1", replicas = 0 }` + "\n" + `  active = "blue"`, wantErr: `Active Color Has No Task`},
		"min_healthy fits the replicas":    {body: blue + `  active = "blue"` + "\n  min_healthy = 3", wantErr: `Minimum Healthy Above Replicas`},
		"canary weight is a percentage":    {body: blue + green + `  active = "blue"` + "\n  canary_weight = 120", wantErr: `between 0 and 100`},
		"a canary needs the other color":   {body: blue + `  active = "blue"` + "\n  canary_weight = 20", wantErr: `Canary Without a Second Color`},
		"ports are in range":               {body: blue + `  active = "blue"` + "\n  port = 70000", wantErr: `between 1 and 65535`},
		"listen port is in range":          {body: blue + `  active = "blue"` + "\n  listen_port = 0", wantErr: `between 1 and 65535`},
		"health path starts with /":        {body: blue + `  active = "blue"` + "\n  health_path = \"health\"", wantErr: `must be a path starting with /`},
		"auto_rollback is a duration":      {body: blue + `  active = "blue"` + "\n  auto_rollback = \"a minute\"", wantErr: `(?i)duration`},
		"images are references":            {body: `  blue = { image = "Not An Image" }` + "\n" + `  active = "blue"`, wantErr: `Invalid Image Reference`},
		"names are lowercase":              {body: blue + `  active = "blue"` + "\n  name = \"Web App\"", wantErr: `must be 1-40 lowercase`},
		"endpoint mode is an enum":         {body: blue + `  active = "blue"` + "\n  endpoint_mode = \"mesh\"", wantErr: `value must be one of`},
		"proxy hosts are hosts":            {body: blue + `  active = "blue"` + "\n  proxy_hosts = [{ host = \"192.0.2.1\" }]", wantErr: `Invalid Host`},
		"constraints are constraints":      {body: `  blue = { image = "a:1", constraints = ["worker"] }` + "\n" + `  active = "blue"`, wantErr: `must be a swarm constraint`},
		"the provider's own labels":        {body: `  blue = { image = "a:1", labels = { SERVICE_8080_CHECK_HTTP = "/x" } }` + "\n" + `  active = "blue"`, wantErr: `Label Owned by the Provider`},
		"replicas fit the proxies' slots":  {body: `  blue = { image = "a:1", replicas = 101 }` + "\n" + `  active = "blue"`, wantErr: `between 0 and 100`},
		"healthcheck needs a test command": {body: `  blue = { image = "a:1", healthcheck = { test = [] } }` + "\n" + `  active = "blue"`, wantErr: `at least 1`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			body := base + tc.body + "\n"
			if strings.Contains(tc.body, "name =") || strings.Contains(tc.body, "proxy_hosts =") {
				body = strings.Replace(body, `  name        = "web"`+"\n", "", strings.Count(tc.body, "name =")) // the case sets its own
				if strings.Contains(tc.body, "proxy_hosts =") {
					body = strings.Replace(body, `  proxy_hosts = [{ host = "ssh://root@192.0.2.1" }]`+"\n", "", 1)
				}
			}
			resource.UnitTest(t, resource.TestCase{
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				Steps: []resource.TestStep{{
					Config:      "resource \"microswarm_microservice\" \"m\" {" + body + "}\n",
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(tc.wantErr),
				}},
			})
		})
	}
}
