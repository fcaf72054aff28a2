package provider

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

const (
	swarmResource    = "microswarm_swarm_cluster.test"
	testDemoAppImage = "microswarm/demo-app:1.0.0"
)

// swarmEntry is one entry of the nodes map: droplet node index and role.
type swarmEntry struct {
	key  string
	node int
	role string
	// extra is more attributes for the entry.
	extra string
}

// swarmClusterConfig is droplet nodes named after the entries' droplets plus a swarm
// over them; extra goes into the swarm resource's body.
func swarmClusterConfig(prefix string, droplets []string, entries []swarmEntry, extra string) string {
	var b strings.Builder
	b.WriteString(dropletNodesConfig(prefix, droplets, "s-1vcpu-1gb", nil))
	b.WriteString("\nresource \"microswarm_swarm_cluster\" \"test\" {\n  nodes = {\n")
	for _, e := range entries {
		fmt.Fprintf(&b, `    %s = {
      host           = microswarm_droplet_node.test[%d].docker_host
      host_key       = microswarm_droplet_node.test[%d].ssh_host_key
      advertise_addr = microswarm_droplet_node.test[%d].ipv4_address_private
      role           = %q
      %s
    }
`, e.key, e.node, e.node, e.node, e.role, e.extra)
	}
	b.WriteString("  }\n" + extra + "}\n")
	return b.String()
}

func TestAccSwarmCluster_lifecycle(t *testing.T) {
	// The import step reaches hosts no resource pins yet: first-use trust must be allowed.
	t.Setenv(envHostKeyPolicy, "accept-new")
	prefix := "acc-" + acctest.RandString(6)
	sameID := statecheck.CompareValue(compare.ValuesSame())
	fx := &swarmFixture{t: t, pool: testkit.Pool(t)}

	threeNodes := []swarmEntry{{"a", 0, "manager", ""}, {"b", 1, "worker", ""}, {"c", 2, "worker", ""}}
	fourNodes := append(slices.Clone(threeNodes), swarmEntry{"d", 3, "worker", ""})
	threeManagers := []swarmEntry{{"a", 0, "manager", ""}, {"b", 1, "manager", ""}, {"c", 2, "manager", ""}, {"d", 3, "worker", ""}}
	threeManagersNoD := threeManagers[:3]
	const service = "acc-web"
	const settings = `  autolock           = true
  task_history_limit = 10
  cert_expiry        = "720h"
  rotate_join_tokens = "2026-11"
`

	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				// One manager and two workers from three droplet nodes.
				Config: swarmClusterConfig(prefix, []string{"a", "b", "c"}, threeNodes, ""),
				ConfigStateChecks: []statecheck.StateCheck{
					sameID.AddStateValue(swarmResource, tfjsonpath.New("id")),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("id"), knownvalue.StringRegexp(regexp.MustCompile(`^[a-z0-9]{25}$`))),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("data_path_port"), knownvalue.Int64Exact(4789)),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("task_history_limit"), knownvalue.Int64Exact(5)),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("nodes").AtMapKey("a").AtMapKey("manager_reachability"), knownvalue.StringExact("reachable")),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("nodes").AtMapKey("b").AtMapKey("manager_reachability"), knownvalue.Null()),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("nodes").AtMapKey("c").AtMapKey("state"), knownvalue.StringExact("ready")),
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					fx.checkNodeList("a", map[string]string{"a": "manager", "b": "worker", "c": "worker"}),
					fx.recordJoinToken("a"),
				),
			},
			{
				// Import by a manager's host: the swarm-wide attributes come back; the entries
				// come from the configuration (their hosts are guessed on import).
				ResourceName:            swarmResource,
				ImportState:             true,
				ImportStateIdFunc:       func(s *terraform.State) (string, error) { return entryAttr(s, "a", "host") },
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"nodes", "timeouts", "cert_expiry"},
				ImportStateCheck:        checkImportedEntries(3),
			},
			{
				// Renaming an entry moves no node: the entry finds its node by advertise
				// address (as after an import, whose entries are keyed by hostname).
				Config:            swarmClusterConfig(prefix, []string{"a", "b", "c"}, []swarmEntry{{"a", 0, "manager", ""}, {"bee", 1, "worker", ""}, {"c", 2, "worker", ""}}, ""),
				ConfigStateChecks: []statecheck.StateCheck{sameID.AddStateValue(swarmResource, tfjsonpath.New("id"))},
				Check: resource.ComposeAggregateTestCheckFunc(
					fx.checkNodeList("a", map[string]string{"a": "manager", "bee": "worker", "c": "worker"}),
					fx.checkSameNode("bee", "b"),
				),
			},
			{
				// A fourth node joins in place.
				Config: swarmClusterConfig(prefix, []string{"a", "b", "c", "d"}, fourNodes, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(swarmResource, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{sameID.AddStateValue(swarmResource, tfjsonpath.New("id"))},
				Check:             fx.checkNodeList("a", map[string]string{"a": "manager", "b": "worker", "c": "worker", "d": "worker"}),
			},
			{
				// Promote b and c: three managers, one at a time.
				Config: swarmClusterConfig(prefix, []string{"a", "b", "c", "d"}, threeManagers, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(swarmResource, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					sameID.AddStateValue(swarmResource, tfjsonpath.New("id")),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("nodes").AtMapKey("c").AtMapKey("manager_reachability"), knownvalue.StringExact("reachable")),
				},
				Check: fx.checkNodeList("b", map[string]string{"a": "manager", "b": "manager", "c": "manager", "d": "worker"}),
			},
			{
				// Swarm options change in place; a new rotate_join_tokens rotates both tokens.
				Config: swarmClusterConfig(prefix, []string{"a", "b", "c", "d"}, threeManagers, settings),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(swarmResource, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					sameID.AddStateValue(swarmResource, tfjsonpath.New("id")),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("cert_expiry"), knownvalue.StringExact("720h")),
				},
				Check: fx.checkSettings("a", 10, 720*time.Hour, true),
			},
			{
				// Remove d, which runs tasks of a service: they move, d leaves and is gone from node ls.
				PreConfig: func() { fx.startService(service, 8, "d") },
				Config:    swarmClusterConfig(prefix, []string{"a", "b", "c", "d"}, threeManagersNoD, settings),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(swarmResource, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{sameID.AddStateValue(swarmResource, tfjsonpath.New("id"))},
				Check: resource.ComposeAggregateTestCheckFunc(
					fx.checkNodeList("a", map[string]string{"a": "manager", "b": "manager", "c": "manager"}),
					fx.checkTasksMovedOff(service, 8, "d"),
					fx.checkSwarmInactive("d"),
				),
			},
			{
				// A node that leaves outside Terraform shows in the refresh, and the apply re-joins it.
				PreConfig: func() { fx.leaveOutOfBand("c", "a") },
				Config:    swarmClusterConfig(prefix, []string{"a", "b", "c", "d"}, threeManagersNoD, settings),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(swarmResource, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					sameID.AddStateValue(swarmResource, tfjsonpath.New("id")),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("nodes").AtMapKey("c").AtMapKey("state"), knownvalue.StringExact("ready")),
				},
				Check: fx.checkNodeList("a", map[string]string{"a": "manager", "b": "manager", "c": "manager"}),
			},
			{
				// Converged: an empty plan.
				Config:   swarmClusterConfig(prefix, []string{"a", "b", "c", "d"}, threeManagersNoD, settings),
				PlanOnly: true,
			},
			{
				// Destroy the swarm but keep the droplets: every engine is out of swarm mode.
				Config: dropletNodesConfig(prefix, []string{"a", "b", "c", "d"}, "s-1vcpu-1gb", nil),
				Check:  fx.checkSwarmInactive("a", "b", "c", "d"),
			},
		},
	})
}

func TestAccSwarmCluster_partialFailure(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	fx := &swarmFixture{t: t, pool: testkit.Pool(t)}
	entries := []swarmEntry{{"a", 0, "manager", ""}, {"b", 1, "worker", ""}, {"c", 2, "worker", ""}}
	const options = `  default_addr_pool = ["10.20.0.0/16"]
  subnet_size       = 26
  data_path_port    = 4790
  timeouts          = { create = "5m", update = "5m" }
`
	// The droplet that goes off stays off (when_off = ignore): what is under test is how
	// the swarm copes with a node it cannot reach, not the droplet's own healing.
	ignoreOff := func(cfg string) string {
		return strings.Replace(cfg, `region = "nyc3"`, "region = \"nyc3\"\n  when_off = \"ignore\"", 1)
	}
	partialFailureDroplets := ignoreOff(dropletNodesConfig(prefix, []string{"a", "b", "c"}, "s-1vcpu-1gb", nil))
	config := ignoreOff(swarmClusterConfig(prefix, []string{"a", "b", "c"}, entries, options))
	var firstSwarmID string
	drainC := slices.Clone(entries)
	drainC[2].extra = `availability   = "drain"`

	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				Config: partialFailureDroplets,
				Check:  fx.rememberDroplets([]string{"a", "b", "c"}),
			},
			{
				// c is powered off: a and b make a swarm, c's join fails with a clear error.
				PreConfig:   func() { fx.powerOff("c") },
				Config:      config,
				ExpectError: regexp.MustCompile(`(?s)Swarm Node Unreachable.*join\s+c\s.*Done\s+before\s+the\s+failure:\s+initialise\s+the\s+swarm\s+on\s+a\s.*join\s+b\s.*adopts\s+the\s+swarm`),
			},
			{
				// c is back: the second apply adopts the swarm the first left and joins c.
				PreConfig: func() {
					fx.powerOn("c")
					firstSwarmID = fx.swarmIDOn("a")
					fx.checkStillJoined("b", firstSwarmID)
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(swarmResource, plancheck.ResourceActionCreate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("default_addr_pool"), knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("10.20.0.0/16")})),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("subnet_size"), knownvalue.Int64Exact(26)),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("data_path_port"), knownvalue.Int64Exact(4790)),
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					func(s *terraform.State) error {
						got := s.RootModule().Resources[swarmResource].Primary.ID
						if got != firstSwarmID {
							return fmt.Errorf("the second apply made swarm %s, want the first apply's %s", got, firstSwarmID)
						}
						return nil
					},
					fx.checkNodeList("a", map[string]string{"a": "manager", "b": "worker", "c": "worker"}),
				),
			},
			{
				Config:   config,
				PlanOnly: true,
			},
			{
				// An update that needs a node that is down fails clearly and records how far it got...
				PreConfig: func() {
					fx.powerOff("c")
					fx.waitNodeDown("a", "c")
				},
				Config:      ignoreOff(swarmClusterConfig(prefix, []string{"a", "b", "c"}, drainC, options)),
				ExpectError: regexp.MustCompile(`(?s)Swarm Node Unreachable.*recover\s+c\s`),
			},
			{
				// ...and once the node is back, the next apply finishes the change.
				PreConfig: func() { fx.powerOn("c") },
				Config:    ignoreOff(swarmClusterConfig(prefix, []string{"a", "b", "c"}, drainC, options)),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(swarmResource, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("nodes").AtMapKey("c").AtMapKey("availability"), knownvalue.StringExact("drain")),
					statecheck.ExpectKnownValue(swarmResource, tfjsonpath.New("nodes").AtMapKey("c").AtMapKey("state"), knownvalue.StringExact("ready")),
				},
				Check: fx.checkNodeList("a", map[string]string{"a": "manager", "b": "worker", "c": "worker"}),
			},
		},
	})
}

func TestSwarmClusterInputIsValidatedAtPlanTime(t *testing.T) {
	entry := func(key, host, addr, role string, extra ...string) string {
		return fmt.Sprintf("    %s = { host = %q, advertise_addr = %q, role = %q %s }\n", key, host, addr, role, strings.Join(extra, " "))
	}
	ok := entry("m1", "ssh://root@192.0.2.1", "10.10.0.1", "manager")
	cases := map[string]struct {
		nodes, extra, wantErr string
	}{
		"host has a scheme":            {nodes: entry("m1", "192.0.2.1", "10.10.0.1", "manager"), wantErr: `Invalid Host`},
		"advertise_addr is an address": {nodes: entry("m1", "ssh://root@192.0.2.1", "not an address!", "manager"), wantErr: `Invalid Advertise Address`},
		"advertise_addr port is valid": {nodes: entry("m1", "ssh://root@192.0.2.1", "10.10.0.1:99999", "manager"), wantErr: `Invalid Advertise Address`},
		"role is an enum":              {nodes: entry("m1", "ssh://root@192.0.2.1", "10.10.0.1", "boss"), wantErr: `value must be one of`},
		"availability is an enum":      {nodes: entry("m1", "ssh://root@192.0.2.1", "10.10.0.1", "manager", `, availability = "sometimes"`), wantErr: `value must be one of`},
		"host keys are ssh keys":       {nodes: entry("m1", "ssh://root@192.0.2.1", "10.10.0.1", "manager", `, host_key = "nope"`), wantErr: `Invalid SSH Public Key`},
		"a manager is required":        {nodes: entry("w1", "ssh://root@192.0.2.1", "10.10.0.1", "worker"), wantErr: `No Swarm Manager`},
		"hosts are unique":             {nodes: ok + entry("w1", "ssh://root@192.0.2.1:22", "10.10.0.2", "worker"), wantErr: `Duplicate Swarm Node Host`},
		"advertise addrs are unique":   {nodes: ok + entry("w1", "ssh://root@192.0.2.2", "10.10.0.1", "worker"), wantErr: `Duplicate Advertise Address`},
		"keys are names":               {nodes: ok + entry(`"bad key"`, "ssh://root@192.0.2.2", "10.10.0.2", "worker"), wantErr: `must be 1-63 letters`},
		"pools are networks":           {nodes: ok, extra: `default_addr_pool = ["10.20.0.0"]`, wantErr: `Invalid Address Pool`},
		"data path port is in range":   {nodes: ok, extra: `data_path_port = 80`, wantErr: `between 1024 and 49151`},
		"cert expiry is at least 1h":   {nodes: ok, extra: `cert_expiry = "30m"`, wantErr: `shorter than 1h`},
		"cert expiry is a duration":    {nodes: ok, extra: `cert_expiry = "90 days"`, wantErr: `(?i)duration`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			resource.UnitTest(t, resource.TestCase{
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				Steps: []resource.TestStep{{
					Config:      "resource \"microswarm_swarm_cluster\" \"s\" {\n  nodes = {\n" + tc.nodes + "  }\n  " + tc.extra + "\n}\n",
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(tc.wantErr),
				}},
			})
		})
	}
}

func entryAttr(s *terraform.State, key, attr string) (string, error) {
	rs, ok := s.RootModule().Resources[swarmResource]
	if !ok {
		return "", fmt.Errorf("%s not in state", swarmResource)
	}
	v, ok := rs.Primary.Attributes["nodes."+key+"."+attr]
	if !ok {
		return "", fmt.Errorf("nodes.%s.%s not in state", key, attr)
	}
	return v, nil
}

func checkImportedEntries(want int) resource.ImportStateCheckFunc {
	return func(states []*terraform.InstanceState) error {
		if len(states) != 1 {
			return fmt.Errorf("imported %d instances, want 1", len(states))
		}
		attrs := states[0].Attributes
		if got := attrs["nodes.%"]; got != strconv.Itoa(want) {
			return fmt.Errorf("imported %s node entries, want %d", got, want)
		}
		managers := 0
		for k, v := range attrs {
			if strings.HasSuffix(k, ".role") && v == "manager" {
				managers++
			}
			if strings.HasSuffix(k, ".state") && v != "ready" {
				return fmt.Errorf("imported %s = %s, want ready", k, v)
			}
		}
		if managers != 1 {
			return fmt.Errorf("imported %d managers, want 1", managers)
		}
		return nil
	}
}

// runningTasks returns the node ID of every running task of a service.
func runningTasks(ctx context.Context, docker *client.Client, service string) ([]string, error) {
	tasks, err := docker.TaskList(ctx, dockerswarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", service), filters.Arg("desired-state", "running"))})
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, t := range tasks {
		if t.Status.State == dockerswarm.TaskStateRunning {
			nodes = append(nodes, t.NodeID)
		}
	}
	return nodes, nil
}

func TestSwarmClusterNeedsAnSSHKeyAtPlanTime(t *testing.T) {
	t.Setenv(envSSHKey, "")
	t.Setenv(envSSHKeyFile, "")
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{{
			Config: `resource "microswarm_swarm_cluster" "s" {
  nodes = {
    m1 = { host = "ssh://root@192.0.2.1", advertise_addr = "10.10.0.1", role = "manager" }
  }
}
`,
			PlanOnly:    true,
			ExpectError: regexp.MustCompile(`Missing SSH Private Key`),
		}},
	})
}

// Entries that pin no host_key go through host_key_policy; under accept-new the key each
// node presented is recorded, so the next run pins it instead of accepting any key again.
func TestAccSwarmCluster_recordsAcceptedHostKeys(t *testing.T) {
	t.Setenv(envHostKeyPolicy, "accept-new")
	prefix := "acc-" + acctest.RandString(6)
	config := dropletNodesConfig(prefix, []string{"a", "b"}, "s-1vcpu-1gb", nil) + `
resource "microswarm_swarm_cluster" "test" {
  nodes = {
    a = {
      host           = microswarm_droplet_node.test[0].docker_host
      advertise_addr = microswarm_droplet_node.test[0].ipv4_address_private
      role           = "manager"
    }
    b = {
      host           = microswarm_droplet_node.test[1].docker_host
      advertise_addr = microswarm_droplet_node.test[1].ipv4_address_private
      role           = "worker"
    }
  }
}
`
	recorded := func(entry string, node int) resource.TestCheckFunc {
		return resource.TestCheckResourceAttrPair(swarmResource, "nodes."+entry+".host_key",
			fmt.Sprintf("microswarm_droplet_node.test.%d", node), "ssh_host_key")
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{Config: config, Check: resource.ComposeAggregateTestCheckFunc(recorded("a", 0), recorded("b", 1))},
			{Config: config, PlanOnly: true},
		},
	})
}
