package provider

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dockerswarm "github.com/docker/docker/api/types/swarm"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// healStackConfig is the whole stack with the self-healing loop wired as the guide shows:
// a manager droplet that is the vantage point, two workers that each follow their node's
// replace_token, Consul (a server on the manager, agents on the workers), the swarm, the
// registrator and a blue/green app behind a proxy on the manager.
//
// Blue's Docker HEALTHCHECK is slow (about 30 s to unhealthy) and Consul also checks
// /health every second (SERVICE_CHECK_HTTP, run by the registrator's registration): a
// failing instance is critical in Consul well before swarm replaces it.
//
// The app's own tokens follow the guide too: one service-scoped, one scoped to the active
// color's tag, both followed by one terraform_data (what a user would put in
// replace_triggered_by), so a planned update of it is a planned replacement.
func healStackConfig(prefix string) string { return healStackConfigWith(prefix, healApp{}) }

// healApp is what later steps change in the app: replicas per color, a release note in
// blue's env (a rolling update), the active color. Zero values are the first step's.
type healApp struct {
	blue, green int
	release     string
	active      string
}

func healStackConfigWith(prefix string, app healApp) string {
	app.blue, app.green = cmp.Or(app.blue, 3), cmp.Or(app.green, 1)
	app.release, app.active = cmp.Or(app.release, "1"), cmp.Or(app.active, "blue")
	return fmt.Sprintf(`
resource "microswarm_droplet_node" "m" {
  name   = "%[1]s-m"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
}

resource "microswarm_droplet_node" "w" {
  count  = 2
  name   = "%[1]s-w${count.index + 1}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"

  lifecycle {
    replace_triggered_by = [terraform_data.worker_health[count.index]]
  }
}

resource "microswarm_consul_server" "s" {
  host             = microswarm_droplet_node.m.docker_host
  host_key         = microswarm_droplet_node.m.ssh_host_key
  advertise_addr   = microswarm_droplet_node.m.ipv4_address_private
  bootstrap_expect = 1
  retry_join       = [microswarm_droplet_node.m.ipv4_address_private]
}

# Each worker's health, read through the manager's Consul: the token moves once per
# failure of that node, and its terraform_data replaces the worker.
data "microswarm_health" "worker" {
  count    = 2
  host     = microswarm_consul_server.s.host
  host_key = microswarm_consul_server.s.host_key
  node     = "%[1]s-w${count.index + 1}"
}

resource "terraform_data" "worker_health" {
  count = 2
  input = data.microswarm_health.worker[count.index].replace_token
}

resource "microswarm_consul_agent" "a" {
  count          = 2
  host           = microswarm_droplet_node.w[count.index].docker_host
  host_key       = microswarm_droplet_node.w[count.index].ssh_host_key
  advertise_addr = microswarm_droplet_node.w[count.index].ipv4_address_private
  retry_join     = [microswarm_droplet_node.m.ipv4_address_private]
  depends_on     = [microswarm_consul_server.s]
}

resource "microswarm_swarm_cluster" "test" {
  nodes = {
    m = {
      host           = microswarm_droplet_node.m.docker_host
      host_key       = microswarm_droplet_node.m.ssh_host_key
      advertise_addr = microswarm_droplet_node.m.ipv4_address_private
      role           = "manager"
    }
    w1 = {
      host           = microswarm_droplet_node.w[0].docker_host
      host_key       = microswarm_droplet_node.w[0].ssh_host_key
      advertise_addr = microswarm_droplet_node.w[0].ipv4_address_private
      role           = "worker"
    }
    w2 = {
      host           = microswarm_droplet_node.w[1].docker_host
      host_key       = microswarm_droplet_node.w[1].ssh_host_key
      advertise_addr = microswarm_droplet_node.w[1].ipv4_address_private
      role           = "worker"
    }
  }
}

resource "microswarm_registrator" "test" {
  host       = microswarm_droplet_node.m.docker_host
  host_key   = microswarm_droplet_node.m.ssh_host_key
  resync     = %[2]d
  depends_on = [microswarm_swarm_cluster.test, microswarm_consul_server.s, microswarm_consul_agent.a]
}

resource "microswarm_microservice" "test" {
  name     = "accheal"
  host     = microswarm_droplet_node.m.docker_host
  host_key = microswarm_droplet_node.m.ssh_host_key
  proxy_hosts = [{
    host     = microswarm_droplet_node.m.docker_host
    host_key = microswarm_droplet_node.m.ssh_host_key
  }]
  blue = {
    image    = "microswarm/demo-app:1.0.0"
    replicas = %[3]d
    env = {
      COLOR                  = "blue"
      RELEASE                = %[5]q
      SHUTDOWN_DELAY         = "1s"
      SERVICE_CHECK_HTTP     = "/health"
      SERVICE_CHECK_INTERVAL = "1s"
    }
    # 5000ms reads back from the service as 5s: the same duration, so no diff.
    healthcheck = { test = ["CMD", "/demo-app", "-check"], interval = "5000ms", retries = 6 }
  }
  green = {
    image    = "microswarm/demo-app:2.0.0"
    replicas = %[4]d
    env      = { COLOR = "green", SHUTDOWN_DELAY = "1s" }
  }
  active      = %[6]q
  min_healthy = 2
  depends_on  = [microswarm_registrator.test]
}

data "microswarm_health" "blue" {
  host       = microswarm_consul_server.s.host
  host_key   = microswarm_consul_server.s.host_key
  service    = "accheal"
  tag        = "blue"
  depends_on = [microswarm_microservice.test]
}

# The app's tokens, read at plan time (stable dependencies): the whole service, and the
# active color (as tag = var.active would be).
data "microswarm_health" "app" {
  host     = microswarm_consul_server.s.host
  host_key = microswarm_consul_server.s.host_key
  service  = "accheal"
}

data "microswarm_health" "live" {
  host     = microswarm_consul_server.s.host
  host_key = microswarm_consul_server.s.host_key
  service  = "accheal"
  tag      = %[6]q
}

resource "terraform_data" "app_health" {
  input = "${data.microswarm_health.app.replace_token}/${data.microswarm_health.live.replace_token}"
}
`, prefix, testRegistratorResync, app.blue, app.green, app.release, app.active)
}

// TestAccHealth_selfHealing is the loop: a worker powered off is replaced by the next
// apply, and only what follows it changes; the cluster ends whole; the plan after the heal
// is empty. Then one instance turns unhealthy: the data source names it critical, swarm
// replaces it, the data source is back to passing, and the proxy failed no request.
func TestAccHealth_selfHealing(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	fx := &healFixture{microserviceFixture: microserviceFixture{registratorFixture: registratorFixture{
		swarmFixture: swarmFixture{t: t, pool: testkit.Pool(t)}, app: "accheal"}}}
	cfg := healStackConfig(prefix)
	worker := func(i int) string { return fmt.Sprintf("microswarm_droplet_node.w[%d]", i) }
	token := func(i int) string { return fmt.Sprintf("terraform_data.worker_health[%d]", i) }
	const blue = "data.microswarm_health.blue"

	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				Config: cfg,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(blue, tfjsonpath.New("status"), knownvalue.StringExact("passing")),
					statecheck.ExpectKnownValue(blue, tfjsonpath.New("passing"), knownvalue.Int64Exact(3)),
					statecheck.ExpectKnownValue(blue, tfjsonpath.New("instances"), knownvalue.ListSizeExact(3)),
				},
				Check: resource.ComposeAggregateTestCheckFunc(fx.record, fx.recordEndpoints, fx.recordWorkers, fx.recordTokens, fx.checkAnswers("1.0.0")),
			},
			{
				// Nothing failed: the plan is empty, whatever the first read of a node that
				// did not exist yet recorded.
				Config:   cfg,
				PlanOnly: true,
			},
			{
				// Worker 1 goes off. The plan replaces it and what follows its docker_host
				// (its Consul agent, its swarm membership), nothing else.
				PreConfig: fx.powerOffWorker(0),
				Config:    cfg,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(worker(0), plancheck.ResourceActionDestroyBeforeCreate),
					plancheck.ExpectResourceAction("microswarm_consul_agent.a[0]", plancheck.ResourceActionDestroyBeforeCreate),
					plancheck.ExpectResourceAction(swarmResource, plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(token(0), plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(worker(1), plancheck.ResourceActionNoop),
					plancheck.ExpectResourceAction("microswarm_droplet_node.m", plancheck.ResourceActionNoop),
					plancheck.ExpectResourceAction("microswarm_consul_server.s", plancheck.ResourceActionNoop),
					plancheck.ExpectResourceAction("microswarm_consul_agent.a[1]", plancheck.ResourceActionNoop),
					plancheck.ExpectResourceAction(token(1), plancheck.ResourceActionNoop),
					plancheck.ExpectResourceAction(registratorResourceName, plancheck.ResourceActionNoop),
					plancheck.ExpectResourceAction(microserviceResourceName, plancheck.ResourceActionNoop),
				}},
				// (The data sources in state are what this step's plan read: the failure.)
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(worker(0), tfjsonpath.New("status"), knownvalue.StringExact("active")),
					statecheck.ExpectKnownValue("data.microswarm_health.worker[0]", tfjsonpath.New("status"), knownvalue.StringExact("critical")),
				},
				Check: resource.ComposeAggregateTestCheckFunc(fx.record, fx.checkWorkerReplaced(0), fx.checkTokenMovedOnce(0), fx.recordAppTokens,
					fx.checkClusterWhole(3), fx.checkAnswers("1.0.0")),
			},
			{
				// The heal moved nothing back: the plan after it is empty.
				Config:   cfg,
				PlanOnly: true,
			},
			{
				// One blue instance fails its health check: Consul, and so the data source,
				// name it critical while the proxy keeps answering from the other two.
				PreConfig: fx.failOneInstance("1.0.0"),
				Config:    cfg,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(blue, tfjsonpath.New("status"), knownvalue.StringExact("critical")),
					statecheck.ExpectKnownValue(blue, tfjsonpath.New("critical"), knownvalue.Int64Exact(1)),
					statecheck.ExpectKnownValue(blue, tfjsonpath.New("passing"), knownvalue.Int64Exact(2)),
					statecheck.ExpectKnownValue(blue, tfjsonpath.New("failing"), knownvalue.ListSizeExact(1)),
				},
				// The app's tokens (service and active color) move once for it.
				Check: resource.ComposeAggregateTestCheckFunc(fx.checkFailingNamed(blue), fx.checkAppTokens(1)),
			},
			{
				// Swarm replaced it (its Docker HEALTHCHECK failed too): all three pass again,
				// the token stays where the failure moved it, and no request failed.
				// The plan after the heal is empty: nothing follows a token that moved back.
				PreConfig:        fx.awaitReplaced(),
				Config:           cfg,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(blue, tfjsonpath.New("status"), knownvalue.StringExact("passing")),
					statecheck.ExpectKnownValue(blue, tfjsonpath.New("passing"), knownvalue.Int64Exact(3)),
					statecheck.ExpectKnownValue(blue, tfjsonpath.New("failing"), knownvalue.ListSizeExact(0)),
				},
				Check: resource.ComposeAggregateTestCheckFunc(fx.checkTokenKept(blue), fx.checkNoFailedRequest(), fx.checkAppTokens(0)),
			},
			// Routine deploys under the app's tokens: a scale-up (new tasks start critical), a
			// rolling update, a switch (the tagged read follows the new color): no token
			// moves, nothing that follows them is replaced.
			appDeployStep(prefix, healApp{blue: 4, green: 2}, fx),
			appDeployStep(prefix, healApp{blue: 4, green: 2, release: "2"}, fx),
			appDeployStep(prefix, healApp{blue: 4, green: 2, release: "2", active: "green"}, fx),
			{
				// Read right after the switch and the tasks it started: still nothing.
				Config:   healStackConfigWith(prefix, healApp{blue: 4, green: 2, release: "2", active: "green"}),
				PlanOnly: true,
			},
		},
	})
}

type healFixture struct {
	microserviceFixture
	workerIDs   []string
	workerNames []string
	failedID    string
	blueToken   string
	tokens      []int
	appTokens   map[string]int
	powerOffAt  time.Time
}

// appDeployStep applies a routine change of the app: the microservice updates in place,
// and the terraform_data that follows its tokens does not change.
func appDeployStep(prefix string, app healApp, fx *healFixture) resource.TestStep {
	return resource.TestStep{
		Config: healStackConfigWith(prefix, app),
		ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
			plancheck.ExpectResourceAction(microserviceResourceName, plancheck.ResourceActionUpdate),
			plancheck.ExpectResourceAction("terraform_data.app_health", plancheck.ResourceActionNoop),
		}},
		Check: fx.checkAppTokens(0),
	}
}

// recordAppTokens remembers the app's tokens as terraform_data.app_health holds them.
func (fx *healFixture) recordAppTokens(s *terraform.State) error {
	got, err := appTokensOf(s)
	fx.appTokens = got
	return err
}

// checkAppTokens: both app tokens moved by exactly moved since they were recorded.
func (fx *healFixture) checkAppTokens(moved int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		got, err := appTokensOf(s)
		if err != nil {
			return err
		}
		for k, before := range fx.appTokens {
			if got[k] != before+moved {
				return fmt.Errorf("the %s token went %d -> %d, want %d", k, before, got[k], before+moved)
			}
		}
		fx.appTokens = got
		return nil
	}
}

func appTokensOf(s *terraform.State) (map[string]int, error) {
	rs, ok := s.RootModule().Resources["terraform_data.app_health"]
	if !ok {
		return nil, fmt.Errorf("terraform_data.app_health not in state")
	}
	input := rs.Primary.Attributes["input"]
	service, live, _ := strings.Cut(input, "/")
	out := map[string]int{}
	for k, v := range map[string]string{"service": service, "live": live} {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("app token %s in %q: %w", k, input, err)
		}
		out[k] = n
	}
	return out, nil
}

// recordTokens remembers the tokens the workers' terraform_data follow.
func (fx *healFixture) recordTokens(s *terraform.State) error {
	fx.tokens = nil
	for i := range 2 {
		rs, ok := s.RootModule().Resources[fmt.Sprintf("terraform_data.worker_health.%d", i)]
		if !ok {
			return fmt.Errorf("terraform_data.worker_health[%d] not in state", i)
		}
		n, err := strconv.Atoi(rs.Primary.Attributes["input"])
		if err != nil {
			return fmt.Errorf("worker %d token %q: %w", i, rs.Primary.Attributes["input"], err)
		}
		fx.tokens = append(fx.tokens, n)
	}
	return nil
}

// checkTokenMovedOnce: the failed worker's token moved by one, the other's not at all.
func (fx *healFixture) checkTokenMovedOnce(failed int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		before := fx.tokens
		if err := fx.recordTokens(s); err != nil {
			return err
		}
		for i := range before {
			want := before[i]
			if i == failed {
				want++
			}
			if fx.tokens[i] != want {
				return fmt.Errorf("worker %d token %d -> %d, want %d", i, before[i], fx.tokens[i], want)
			}
		}
		return nil
	}
}

func (fx *healFixture) recordWorkers(s *terraform.State) error {
	fx.workerIDs, fx.workerNames = nil, nil
	for i := range 2 {
		rs, ok := s.RootModule().Resources[fmt.Sprintf("microswarm_droplet_node.w.%d", i)]
		if !ok {
			return fmt.Errorf("worker %d not in state", i)
		}
		fx.workerIDs = append(fx.workerIDs, rs.Primary.ID)
		fx.workerNames = append(fx.workerNames, rs.Primary.Attributes["name"])
	}
	return nil
}

// powerOffWorker powers a worker off through the cloud's API, as a failure would, and
// waits until Consul sees it failed: the next plan reads what a scheduled run sees.
func (fx *healFixture) powerOffWorker(i int) func() {
	return func() {
		t := fx.t
		ctx, cancel := fx.ctx()
		defer cancel()
		id, err := strconv.Atoi(fx.workerIDs[i])
		if err != nil {
			t.Fatal(err)
		}
		fx.powerOffAt = time.Now()
		if _, _, err := testkit.Godo(t).DropletActions.PowerOff(ctx, id); err != nil {
			t.Fatalf("powering off %s: %v", fx.workerNames[i], err)
		}
		if _, err := testkit.Cloud(t).WaitStatus(ctx, id, "off"); err != nil {
			t.Fatal(err)
		}
		api, err := fx.consul("m")
		if err != nil {
			t.Fatal(err)
		}
		err = wait.Until(ctx, wait.Options{What: fx.workerNames[i] + " failed in Consul", Interval: 250 * time.Millisecond}, func(context.Context) (bool, string, error) {
			members, err := api.Agent().Members(false)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			for _, m := range members {
				if m.Name == fx.workerNames[i] {
					return m.Status == 4, fmt.Sprintf("member status %d", m.Status), nil
				}
			}
			return false, "not a member", nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Not waiting for swarm to see the node down as well: a scheduled run comes when it
		// comes, and the replacement may get the old addresses back.
	}
}

// checkWorkerReplaced: a new droplet carries the worker's name.
func (fx *healFixture) checkWorkerReplaced(i int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[fmt.Sprintf("microswarm_droplet_node.w.%d", i)]
		if !ok {
			return fmt.Errorf("worker %d not in state", i)
		}
		if rs.Primary.ID == fx.workerIDs[i] {
			return fmt.Errorf("worker %d is still droplet %s", i, rs.Primary.ID)
		}
		fx.t.Logf("%s: droplet %s replaced by %s; power-off to healed apply: %s", fx.workerNames[i], fx.workerIDs[i], rs.Primary.ID,
			time.Since(fx.powerOffAt).Round(time.Second))
		if _, err := testkit.Cloud(fx.t).Get(context.Background(), mustAtoi(fx.workerIDs[i])); err == nil {
			return fmt.Errorf("the off droplet %s still exists", fx.workerIDs[i])
		}
		return fx.recordWorkers(s)
	}
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// checkClusterWhole: the swarm lists exactly its nodes, all ready; Consul has every node
// alive and no failed or left member; every node is in the catalog once.
func (fx *healFixture) checkClusterWhole(nodes int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		ctx, cancel := fx.ctx()
		defer cancel()
		docker, err := fx.docker("m")
		if err != nil {
			return err
		}
		list, err := docker.NodeList(ctx, dockerswarm.NodeListOptions{})
		if err != nil {
			return err
		}
		var ready []string
		for _, n := range list {
			if n.Status.State != dockerswarm.NodeStateReady {
				return fmt.Errorf("swarm node %s (%s) is %s: a dead node was left in the node list", n.ID, n.Description.Hostname, n.Status.State)
			}
			ready = append(ready, n.Description.Hostname)
		}
		if len(ready) != nodes {
			return fmt.Errorf("swarm nodes %v, want %d", ready, nodes)
		}
		api, err := fx.consul("m")
		if err != nil {
			return err
		}
		members, err := api.Agent().Members(false)
		if err != nil {
			return err
		}
		var alive []string
		for _, m := range members {
			if m.Status != 1 {
				return fmt.Errorf("consul member %s (%s) has status %d: a dead member was left", m.Name, m.Addr, m.Status)
			}
			alive = append(alive, m.Name)
		}
		if len(alive) != nodes {
			return fmt.Errorf("consul members %v, want %d", alive, nodes)
		}
		catalog, _, err := api.Catalog().Nodes(nil)
		if err != nil {
			return err
		}
		if len(catalog) != nodes {
			return fmt.Errorf("consul catalog has %d nodes, want %d", len(catalog), nodes)
		}
		// Each worker's own checks (not the instances on it, checked below) pass once
		// gossip has settled after the heal.
		for _, name := range fx.workerNames {
			var st string
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
				checks, _, err := api.Health().Node(name, nil)
				if err != nil {
					return err
				}
				var own consulapi.HealthChecks
				for _, c := range checks {
					if c.ServiceID == "" {
						own = append(own, c)
					}
				}
				if st = own.AggregatedStatus(); st == consulapi.HealthPassing || time.Now().After(deadline) {
					break
				}
			}
			if st != consulapi.HealthPassing {
				return fmt.Errorf("node %s is %s in Consul", name, st)
			}
		}
		// Every replica of the active color passes.
		_, err = fx.awaitInstancesTagged("blue", 3, time.Minute)
		return err
	}
}

// awaitInstancesTagged waits until want instances with tag pass in Consul.
func (fx *healFixture) awaitInstancesTagged(tag string, want int, within time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var ids []string
	err := wait.Until(ctx, wait.Options{What: fmt.Sprintf("%d passing %s instances", want, tag), Interval: 250 * time.Millisecond}, func(context.Context) (bool, string, error) {
		got, err := fx.instances()
		if err != nil {
			return false, "", wait.Retryable(err)
		}
		ids = ids[:0]
		total := 0
		for id, e := range got {
			if !slices.Contains(e.Service.Tags, tag) {
				continue
			}
			total++
			if passing(e) {
				ids = append(ids, id)
			}
		}
		return total == want && len(ids) == want, fmt.Sprintf("%d of %d passing", len(ids), total), nil
	})
	return ids, err
}

// failOneInstance starts load through the proxy, then tells one instance of version to
// fail its health check, and waits until Consul says it is critical.
func (fx *healFixture) failOneInstance(version string) func() {
	return func() {
		t := fx.t
		fx.startLoad("fail")()
		ctx, cancel := fx.ctx()
		defer cancel()
		containers := fx.containersOf(ctx, version)
		if len(containers) == 0 {
			t.Fatalf("no container of version %s on any node", version)
		}
		fx.tellFail(ctx, containers[0])
		err := wait.Until(ctx, wait.Options{What: "the failed instance critical in Consul", Interval: 200 * time.Millisecond}, func(context.Context) (bool, string, error) {
			now, err := fx.instances()
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			var failing []string
			for id, e := range now {
				if !passing(e) {
					failing = append(failing, id)
				}
			}
			if len(failing) > 1 {
				return false, "", fmt.Errorf("more than the one failed instance is critical: %v", failing)
			}
			if len(failing) == 1 {
				fx.failedID = failing[0]
			}
			return len(failing) == 1, "all passing", nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkFailingNamed: the data source names the failed instance and moved its token.
func (fx *healFixture) checkFailingNamed(name string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[name]
		if !ok {
			return fmt.Errorf("%s not in state", name)
		}
		failing := rs.Primary.Attributes["failing.0"]
		if !strings.HasSuffix(failing, "/"+fx.failedID) {
			return fmt.Errorf("failing %q does not name the failed instance %s", failing, fx.failedID)
		}
		for i := 0; ; i++ {
			id, ok := rs.Primary.Attributes[fmt.Sprintf("instances.%d.id", i)]
			if !ok {
				return fmt.Errorf("instance %s not listed", fx.failedID)
			}
			if id == fx.failedID {
				if st := rs.Primary.Attributes[fmt.Sprintf("instances.%d.status", i)]; st != "critical" {
					return fmt.Errorf("instance %s is %s, want critical", id, st)
				}
				break
			}
		}
		fx.blueToken = rs.Primary.Attributes["replace_token"]
		if fx.blueToken == "0" || fx.blueToken == "" {
			return fmt.Errorf("replace_token %q did not move on the failure", fx.blueToken)
		}
		return nil
	}
}

// awaitReplaced waits until swarm has replaced the failed instance and three pass again.
func (fx *healFixture) awaitReplaced() func() {
	return func() {
		ids, err := fx.awaitInstancesTagged("blue", 3, 3*time.Minute)
		if err != nil {
			fx.t.Fatal(err)
		}
		if slices.Contains(ids, fx.failedID) {
			fx.t.Fatalf("the failed instance %s passes again without being replaced", fx.failedID)
		}
	}
}

func (fx *healFixture) checkTokenKept(name string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[name]
		if !ok {
			return fmt.Errorf("%s not in state", name)
		}
		if got := rs.Primary.Attributes["replace_token"]; got != fx.blueToken {
			return fmt.Errorf("replace_token moved on recovery: %s -> %s", fx.blueToken, got)
		}
		return nil
	}
}

func (fx *healFixture) checkNoFailedRequest() resource.TestCheckFunc {
	return func(*terraform.State) error {
		rep := fx.load.Stop()
		fx.t.Logf("load through the instance failure and its replacement: %s", rep)
		if rep.Failed != 0 {
			return fmt.Errorf("%d of %d requests failed: %v %v", rep.Failed, rep.Requests, rep.Errors, rep.Examples)
		}
		if rep.Requests < 1000 {
			return fmt.Errorf("only %d requests", rep.Requests)
		}
		return nil
	}
}
