package provider

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// consulHealthConfig adds, to consulOnNodesConfig's cluster, the datacenter's health read
// through node 0 (whose Consul server survives) and a terraform_data that follows its
// token, as a self-healing configuration would. It references the droplet nodes, which do
// not change, not the Consul servers: Terraform reads a data source during the apply, its
// token unknown at plan time, when a resource it references has changes, and with count
// that is any instance (here the two restarted servers).
const consulHealthConfig = `
data "microswarm_health" "dc" {
  host     = microswarm_droplet_node.test[0].docker_host
  host_key = microswarm_droplet_node.test[0].ssh_host_key
}

resource "terraform_data" "dc_token" {
  input = data.microswarm_health.dc.replace_token
}
`

// quorumLossSteps run on TestAccConsul_cluster's cluster (3 servers on nodes 0-2, config
// cfg): the health data source joins it while all is well; then 2 of the 3 servers stop.
// Consul has no leader, yet the plan succeeds: the data source reports what the survivor
// says (critical, the two nodes failing) and keeps its token, so nothing that follows it is
// replaced, while the same apply restarts both servers (their own drift). The plan after it
// is empty.
func quorumLossSteps(t *testing.T, cfg string, recorded *consulStateRecorder) []resource.TestStep {
	const dc, token = "data.microswarm_health.dc", "terraform_data.dc_token"
	server := func(i int) string { return fmt.Sprintf("microswarm_consul_server.s[%d]", i) }
	return []resource.TestStep{
		{
			Config: cfg + consulHealthConfig,
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(dc, tfjsonpath.New("status"), knownvalue.StringExact("passing")),
				statecheck.ExpectKnownValue(token, tfjsonpath.New("input"), knownvalue.StringExact("0")),
			},
			Check: recorded.Record(),
		},
		{
			PreConfig: func() {
				for _, node := range []string{"microswarm_droplet_node.test[1]", "microswarm_droplet_node.test[2]"} {
					stopConsulContainerOutOfBand(t, recorded, node, "consul-server")
				}
				awaitMembersFailed(t, recorded, 2)
			},
			Config: cfg + consulHealthConfig,
			ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
				plancheck.ExpectResourceAction(server(1), plancheck.ResourceActionUpdate),
				plancheck.ExpectResourceAction(server(2), plancheck.ResourceActionUpdate),
				plancheck.ExpectResourceAction(server(0), plancheck.ResourceActionNoop),
				plancheck.ExpectKnownValue(token, tfjsonpath.New("input"), knownvalue.StringExact("0")),
				plancheck.ExpectResourceAction(token, plancheck.ResourceActionNoop),
			}},
			// (The data source in state is what this step's plan read, without a leader.)
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(dc, tfjsonpath.New("status"), knownvalue.StringExact("critical")),
				statecheck.ExpectKnownValue(dc, tfjsonpath.New("replace_token"), knownvalue.StringExact("0")),
				statecheck.ExpectKnownValue(token, tfjsonpath.New("input"), knownvalue.StringExact("0")),
			},
			Check: resource.ComposeAggregateTestCheckFunc(checkFailingNodes(dc, 2), checkConsulCluster(t, 3, 5)),
		},
		{
			Config:   cfg + consulHealthConfig,
			PlanOnly: true,
		},
	}
}

// awaitMembersFailed waits until server 0's agent sees want members failed: the plan then
// reads what a scheduled run would.
func awaitMembersFailed(t *testing.T, recorded *consulStateRecorder, want int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, _ := recorded.Docker(ctx, t, "microswarm_droplet_node.test[0]")
	api, err := h.Consul(conn.ConsulConfig{Token: testConsulToken})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait.Until(ctx, wait.Options{What: fmt.Sprintf("%d failed members", want), Interval: 250 * time.Millisecond}, func(ctx context.Context) (bool, string, error) {
		members, err := consul.Members(ctx, api)
		if err != nil {
			return false, "", wait.Retryable(err)
		}
		failed := 0
		for _, m := range members {
			if m.Status == 4 {
				failed++
			}
		}
		return failed == want, fmt.Sprintf("%d failed", failed), nil
	}); err != nil {
		t.Fatal(err)
	}
}

// checkFailingNodes: the data source names want failing nodes.
func checkFailingNodes(name string, want int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[name]
		if !ok {
			return fmt.Errorf("%s not in state", name)
		}
		nodes := 0
		for i := 0; ; i++ {
			f, ok := rs.Primary.Attributes[fmt.Sprintf("failing.%d", i)]
			if !ok {
				break
			}
			if strings.HasPrefix(f, "node:") {
				nodes++
			}
		}
		if nodes != want {
			return fmt.Errorf("%s names %d failing nodes, want %d: %v", name, nodes, want, rs.Primary.Attributes)
		}
		return nil
	}
}
