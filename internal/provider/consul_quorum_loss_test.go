package provider

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// quorumStackConfig is the demo's layout (examples/local) without the app: 3 nodes, a
// Consul server on each, a swarm of 1 manager (node 0) and 2 workers.
func quorumStackConfig(prefix, gossipKey, aclToken string) string {
	acl := ""
	if aclToken != "" {
		acl = fmt.Sprintf("  acl                  = { default_policy = \"deny\" }\n  acl_token_wo         = %q\n  acl_token_wo_version = 1\n", aclToken)
	}
	return dropletNodesConfig(prefix, []string{"n0", "n1", "n2"}, "s-1vcpu-1gb", nil) + fmt.Sprintf(`
resource "microswarm_consul_server" "s" {
  count            = 3
  host             = microswarm_droplet_node.test[count.index].docker_host
  host_key         = microswarm_droplet_node.test[count.index].ssh_host_key
  advertise_addr   = microswarm_droplet_node.test[count.index].ipv4_address_private
  bootstrap_expect = 3
  retry_join       = microswarm_droplet_node.test[*].ipv4_address_private
  encrypt          = %[1]q
  image            = %[2]q
%[3]s}

resource "microswarm_swarm_cluster" "test" {
  nodes = { for i, n in microswarm_droplet_node.test : "n${i}" => {
    host           = n.docker_host
    host_key       = n.ssh_host_key
    advertise_addr = n.ipv4_address_private
    role           = i == 0 ? "manager" : "worker"
  } }
}
`, gossipKey, testConsulImage, acl)
}

// TestAccConsul_quorumLost: 2 of 3 nodes powered off at once, and their replacements get
// new addresses. Consul has 1 server of 3 left, so no leader: nothing can join it and
// autopilot cannot remove the dead. One apply heals it all: the droplets are replaced
// (when_off), the survivor, whose lost servers are then gone for good (no droplet holds
// their addresses), runs Consul's outage recovery (peers.json) and leads, the new servers
// join it as voters, and the swarm's manager drops the dead workers and joins the new ones.
// The plan after it is empty.
func TestAccConsul_quorumLost(t *testing.T) { testQuorumLost(t, true, "") }

// TestAccConsul_quorumLostWithACLs: the same with ACLs on (default deny) and the provider
// given consul_management_token (here through its environment variable). The refresh has
// no acl_token_wo, so it must read the leaderless survivor with the provider's token;
// anonymous, it would learn nothing and plan no recovery (make test-faults).
func TestAccConsul_quorumLostWithACLs(t *testing.T) {
	requireLongFaults(t)
	token := newACLToken(t)
	t.Setenv(envConsulManagementToken, token)
	testConsulToken = token
	t.Cleanup(func() { testConsulToken = "" })
	testQuorumLost(t, true, token)
}

// TestAccConsul_quorumLostSameAddresses: the same, with the replacements at the dead
// servers' addresses (the local cloud hands out the lowest free address): the new servers
// answer there with new node IDs, which proves the old ones gone. Slower and more
// variable than the new-address case (Consul often heals itself first), so it runs with
// the long fault scenarios (make test-faults); CI runs the new-address case.
func TestAccConsul_quorumLostSameAddresses(t *testing.T) {
	requireLongFaults(t)
	testQuorumLost(t, false, "")
}

func testQuorumLost(t *testing.T, newAddresses bool, aclToken string) {
	prefix := "acc-" + acctest.RandString(6)
	cfg := quorumStackConfig(prefix, newConsulGossipKey(t), aclToken)
	node := func(i int) string { return fmt.Sprintf("microswarm_droplet_node.test[%d]", i) }
	server := func(i int) string { return fmt.Sprintf("microswarm_consul_server.s[%d]", i) }
	recorded := &consulStateRecorder{}
	var offAt time.Time
	var spacers []int

	// With newAddresses, two spacer droplets take the lowest free addresses before the
	// nodes are made and give them back when the nodes go off: the local cloud hands out
	// the lowest free address, so the replacements land on the spacers' addresses, not on
	// the dead nodes'.
	makeSpacers := func() {
		if !newAddresses {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for i := range 2 {
			d, _, err := testkit.Godo(t).Droplets.Create(ctx, &godo.DropletCreateRequest{
				Name: fmt.Sprintf("%s-spacer%d", prefix, i), Region: "nyc3", Size: "s-1vcpu-1gb",
				Image: godo.DropletCreateImage{Slug: DefaultDropletImage},
			})
			if err != nil {
				t.Fatalf("creating a spacer droplet: %v", err)
			}
			spacers = append(spacers, d.ID)
			if _, err := testkit.Cloud(t).WaitStatus(ctx, d.ID, "active"); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() {
			for _, id := range spacers {
				_ = testkit.Cloud(t).Delete(context.Background(), id)
			}
		})
	}
	powerOff := func() {
		recorded.mu.Lock()
		s := recorded.state
		recorded.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var ids []int
		for _, i := range []int{1, 2} {
			id, err := strconv.Atoi(s.RootModule().Resources[stateKey(node(i))].Primary.ID)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		offAt = time.Now()
		for _, id := range ids {
			if _, _, err := testkit.Godo(t).DropletActions.PowerOff(ctx, id); err != nil {
				t.Fatalf("powering off droplet %d: %v", id, err)
			}
		}
		for _, id := range ids {
			if _, err := testkit.Cloud(t).WaitStatus(ctx, id, "off"); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range spacers {
			if err := testkit.Cloud(t).Delete(ctx, id); err != nil {
				t.Fatalf("deleting spacer droplet %d: %v", id, err)
			}
		}
		// The survivor's gossip has noticed: the plan reads what a scheduled run would.
		awaitMembersFailed(t, recorded, 2)
	}
	var oldAddrs []string
	rememberAddrs := func(s *terraform.State) error {
		oldAddrs = nil
		for _, i := range []int{1, 2} {
			oldAddrs = append(oldAddrs, s.RootModule().Resources[stateKey(node(i))].Primary.Attributes["ipv4_address_private"])
		}
		return nil
	}
	// The replacements' addresses are new (or the same) as the variant wants, and the
	// survivor's log says whether it recovered with peers.json.
	checkHow := func(s *terraform.State) error {
		// (Created at once, the two replacements may swap the old addresses.)
		var now []string
		reused := 0
		for _, i := range []int{1, 2} {
			addr := s.RootModule().Resources[stateKey(node(i))].Primary.Attributes["ipv4_address_private"]
			now = append(now, addr)
			if slices.Contains(oldAddrs, addr) {
				reused++
			}
		}
		if (newAddresses && reused != 0) || (!newAddresses && reused != 2) {
			return fmt.Errorf("the replacements went from %v to %v; this variant wants new addresses: %t", oldAddrs, now, newAddresses)
		}
		if !newAddresses {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		target, err := consulNodeTarget(s, node(0))
		if err != nil {
			return err
		}
		_, docker, err := consulOpenNode(ctx, t, target)
		if err != nil {
			return err
		}
		c, err := consul.Find(ctx, docker, "consul-server")
		if err != nil {
			return err
		}
		if logs := consul.LogTail(ctx, docker, c.ID, 2000); !strings.Contains(logs, "peers.json") {
			return fmt.Errorf("the survivor's log does not mention peers.json: it did not recover through it")
		}
		return nil
	}
	healed := func(*terraform.State) error {
		t.Logf("2 of 3 nodes off to healed (new addresses: %t; quorum of 3 voters, swarm of 3 ready nodes): %s",
			newAddresses, time.Since(offAt).Round(100*time.Millisecond))
		return nil
	}

	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				PreConfig: makeSpacers,
				Config:    cfg,
				Check:     resource.ComposeAggregateTestCheckFunc(recorded.Record(), rememberAddrs, checkConsulCluster(t, 3, 3), checkSwarmReady(t, 3)),
			},
			{
				// With ACLs on, the refresh must read the leaderless survivor at all (with the
				// provider's token: it has no acl_token_wo), or the plan cannot see the loss.
				// Anonymous, the read is refused and leader keeps its last value.
				SkipFunc: func() (bool, error) { return aclToken == "", nil },
				PreConfig: func() {
					powerOff()
					time.Sleep(10 * time.Second) // the survivor's leadership lapses
				},
				RefreshState:       true,
				ExpectNonEmptyPlan: true,
				Check:              resource.TestCheckNoResourceAttr(stateKey(server(0)), "leader"),
			},
			{
				PreConfig: func() {
					if aclToken == "" {
						powerOff()
					}
				},
				Config: cfg,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(node(0), plancheck.ResourceActionNoop),
					plancheck.ExpectResourceAction(node(1), plancheck.ResourceActionDestroyBeforeCreate),
					plancheck.ExpectResourceAction(node(2), plancheck.ResourceActionDestroyBeforeCreate),
					plancheck.ExpectResourceAction(server(0), plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(server(1), plancheck.ResourceActionDestroyBeforeCreate),
					plancheck.ExpectResourceAction(server(2), plancheck.ResourceActionDestroyBeforeCreate),
					plancheck.ExpectResourceAction(swarmResource, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(recorded.Record(), checkConsulCluster(t, 3, 3), checkSwarmReady(t, 3), healed, checkHow),
			},
			{
				Config:           cfg,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
			},
		},
	})
}

// checkSwarmReady: the swarm, asked through node 0 (its manager), has want nodes, all
// ready, and no dead node left in its list.
func checkSwarmReady(t *testing.T, want int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		target, err := consulNodeTarget(s, "microswarm_droplet_node.test[0]")
		if err != nil {
			return err
		}
		_, docker, err := consulOpenNode(ctx, t, target)
		if err != nil {
			return err
		}
		return wait.Until(ctx, wait.Options{What: fmt.Sprintf("%d ready swarm nodes", want)}, func(ctx context.Context) (bool, string, error) {
			list, err := docker.NodeList(ctx, dockerswarm.NodeListOptions{})
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			ready := 0
			for _, n := range list {
				if n.Status.State == dockerswarm.NodeStateReady {
					ready++
				}
			}
			return ready == want && len(list) == want, fmt.Sprintf("%d of %d nodes ready", ready, len(list)), nil
		})
	}
}
