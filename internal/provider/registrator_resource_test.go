package provider

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/microswarm/terraform-provider-microswarm/internal/registrator"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

const (
	registratorResourceName = "microswarm_registrator.test"
	// testRegistratorResync is short so that the agent-restart check is tight.
	testRegistratorResync = 5
	// The app's HEALTHCHECK interval in these tests.
	testHealthInterval = 2 * time.Second
)

// registratorStackConfig is three droplet nodes with a swarm (one manager, two workers),
// a Consul server on the manager and an agent on each worker, and, when registratorBody
// is not empty, a registrator with that body.
func registratorStackConfig(prefix, registratorBody string) string {
	entries := []swarmEntry{{"m", 0, "manager", ""}, {"w1", 1, "worker", ""}, {"w2", 2, "worker", ""}}
	cfg := swarmClusterConfig(prefix, []string{"m", "w1", "w2"}, entries, "") + `
resource "microswarm_consul_server" "s" {
  host             = microswarm_droplet_node.test[0].docker_host
  host_key         = microswarm_droplet_node.test[0].ssh_host_key
  advertise_addr   = microswarm_droplet_node.test[0].ipv4_address_private
  bootstrap_expect = 1
  retry_join       = [microswarm_droplet_node.test[0].ipv4_address_private]
}

resource "microswarm_consul_agent" "a" {
  count          = 2
  host           = microswarm_droplet_node.test[count.index + 1].docker_host
  host_key       = microswarm_droplet_node.test[count.index + 1].ssh_host_key
  advertise_addr = microswarm_droplet_node.test[count.index + 1].ipv4_address_private
  retry_join     = [microswarm_droplet_node.test[0].ipv4_address_private]
  depends_on     = [microswarm_consul_server.s]
}
`
	if registratorBody == "" {
		return cfg
	}
	return cfg + `
resource "microswarm_registrator" "test" {
  host     = microswarm_droplet_node.test[0].docker_host
  host_key = microswarm_droplet_node.test[0].ssh_host_key
` + registratorBody + `
  depends_on = [microswarm_swarm_cluster.test, microswarm_consul_server.s, microswarm_consul_agent.a]
}
`
}

func TestAccRegistrator_basic(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	fx := &registratorFixture{swarmFixture: swarmFixture{t: t, pool: testkit.Pool(t)}, app: "acc-web"}
	sameID := statecheck.CompareValue(compare.ValuesSame())
	body := fmt.Sprintf("  resync = %d\n", testRegistratorResync)
	withTags := body + "  tags   = [\"acc\"]\n  consul_token = \"acc-registrator-token\"\n"

	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				// A registrator on each of the three nodes, then what users of the catalog see.
				Config: registratorStackConfig(prefix, body),
				ConfigStateChecks: []statecheck.StateCheck{
					sameID.AddStateValue(registratorResourceName, tfjsonpath.New("id")),
					statecheck.ExpectKnownValue(registratorResourceName, tfjsonpath.New("id"), knownvalue.StringRegexp(regexp.MustCompile(`^[a-z0-9]{25}$`))),
					statecheck.ExpectKnownValue(registratorResourceName, tfjsonpath.New("image"), knownvalue.StringExact(registrator.DefaultImage)),
					statecheck.ExpectKnownValue(registratorResourceName, tfjsonpath.New("desired_tasks"), knownvalue.Int64Exact(3)),
					statecheck.ExpectKnownValue(registratorResourceName, tfjsonpath.New("running_tasks"), knownvalue.Int64Exact(3)),
					statecheck.ExpectKnownValue(registratorResourceName, tfjsonpath.New("nodes"), knownvalue.MapSizeExact(3)),
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					fx.record,
					fx.checkTasksRegisteredWithOverlayAddresses(3),
					fx.checkUnhealthyTurnsCritical(),
					fx.checkAgentRestart("w1"),
					fx.checkScaleAndKill(),
				),
			},
			{
				// Import by a manager's host and the service name; the host key is not in
				// the import ID, so this import accepts it on first contact.
				Config:       "provider \"microswarm\" {\n  host_key_policy = \"accept-new\"\n}\n" + registratorStackConfig(prefix, body),
				ResourceName: registratorResourceName,
				ImportState:  true,
				ImportStateIdFunc: func(s *terraform.State) (string, error) {
					host, err := entryAttr(s, "m", "host")
					return host + ",registrator", err
				},
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts", "desired_tasks", "running_tasks", "nodes"},
			},
			{
				// Deleted out of band: the plan creates it again.
				PreConfig: fx.removeServiceOutOfBand,
				Config:    registratorStackConfig(prefix, body),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(registratorResourceName, plancheck.ResourceActionCreate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(registratorResourceName, tfjsonpath.New("running_tasks"), knownvalue.Int64Exact(3)),
				},
			},
			{
				// Tags and a token change in place; every registration carries the tags after
				// the roll, and the token is a swarm secret, not part of the spec.
				Config: registratorStackConfig(prefix, withTags),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(registratorResourceName, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(registratorResourceName, tfjsonpath.New("running_tasks"), knownvalue.Int64Exact(3)),
				},
				Check: resource.ComposeAggregateTestCheckFunc(fx.checkInstancesTagged("acc"), fx.checkTokenIsASecret("acc-registrator-token")),
			},
			{
				// Destroyed: the service goes, what it registered stays (as documented).
				Config: registratorStackConfig(prefix, ""),
				Check:  fx.checkRegistratorGone(),
			},
		},
	})
}

func passing(e *consulapi.ServiceEntry) bool {
	return e.Checks.AggregatedStatus() == consulapi.HealthPassing
}

func TestRegistratorInputIsValidatedAtPlanTime(t *testing.T) {
	cases := map[string]struct{ body, wantErr string }{
		"host has a scheme":              {body: `host = "192.0.2.1"`, wantErr: `Invalid Host`},
		"host key is an ssh key":         {body: `host_key = "nope"`, wantErr: `Invalid SSH Public Key`},
		"name is a service name":         {body: `name = "-bad name"`, wantErr: `must be 1-63 letters`},
		"image is a reference":           {body: `image = "Not An Image!"`, wantErr: `Invalid Image Reference`},
		"backend is a consul URI":        {body: `backend = "etcd://127.0.0.1:2379"`, wantErr: `must be consul://HOST:PORT`},
		"backend has a port":             {body: `backend = "consul://127.0.0.1"`, wantErr: `must be consul://HOST:PORT`},
		"resync is not negative":         {body: `resync = -1`, wantErr: `between 0 and 86400`},
		"deregister is an enum":          {body: `deregister = "never"`, wantErr: `value must be one of`},
		"retry attempts at least -1":     {body: `retry_attempts = -2`, wantErr: `at least -1`},
		"retry interval in range":        {body: `retry_interval = 0`, wantErr: `between 10 and 600000`},
		"tags have no commas":            {body: `tags = ["a,b"]`, wantErr: `without commas`},
		"tags are not empty":             {body: `tags = []`, wantErr: `at least 1`},
		"extra args repeat no attribute": {body: `extra_args = ["-resync=5"]`, wantErr: `Flag Has Its Own Attribute`},
		"constraints are constraints":    {body: `constraints = ["node.role"]`, wantErr: `must be a swarm constraint`},
		"the token is not empty":         {body: `consul_token = ""`, wantErr: `at least 1`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			body := tc.body
			if !strings.HasPrefix(body, "host ") {
				body = "host = \"ssh://root@192.0.2.1\"\n  " + body
			}
			resource.UnitTest(t, resource.TestCase{
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				Steps: []resource.TestStep{{
					Config:      "resource \"microswarm_registrator\" \"r\" {\n  " + body + "\n}\n",
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(tc.wantErr),
				}},
			})
		})
	}
}
