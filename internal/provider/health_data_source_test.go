package provider

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
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

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
