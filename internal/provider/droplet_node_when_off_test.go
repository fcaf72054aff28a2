package provider

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// TestAccDropletNode_whenOff: a droplet found off is powered on in place with
// when_off = "power_on" (same droplet, same pinned key, Docker answering), and left off
// with "ignore". The default, "replace", is TestAccHealth_selfHealing's.
func TestAccDropletNode_whenOff(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	const node = "microswarm_droplet_node.off"
	config := func(whenOff string) string {
		return fmt.Sprintf(`
resource "microswarm_droplet_node" "off" {
  name     = "%s-off"
  region   = "nyc3"
  size     = "s-1vcpu-1gb"
  when_off = %q
}
`, prefix, whenOff)
	}
	var id int
	var target conn.Target
	remember := func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[node]
		if !ok {
			return fmt.Errorf("%s not in state", node)
		}
		var err error
		id, err = strconv.Atoi(rs.Primary.ID)
		target = conn.Target{Host: rs.Primary.Attributes["docker_host"], HostKey: rs.Primary.Attributes["ssh_host_key"]}
		return err
	}
	powerOff := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, _, err := testkit.Godo(t).DropletActions.PowerOff(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := testkit.Cloud(t).WaitStatus(ctx, id, "off"); err != nil {
			t.Fatal(err)
		}
	}
	sameDroplet := func(s *terraform.State) error {
		rs := s.RootModule().Resources[node]
		if rs.Primary.ID != strconv.Itoa(id) {
			return fmt.Errorf("droplet %d was replaced by %s; power_on keeps it", id, rs.Primary.ID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := droplet.WaitReady(ctx, testkit.Pool(t), target) // with the pinned key
		return err
	}

	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				Config:            config("power_on"),
				ConfigStateChecks: []statecheck.StateCheck{statecheck.ExpectKnownValue(node, tfjsonpath.New("when_off"), knownvalue.StringExact("power_on"))},
				Check:             remember,
			},
			{
				PreConfig: powerOff,
				Config:    config("power_on"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(node, plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue(node, tfjsonpath.New("status"), knownvalue.StringExact("active")),
				}},
				ConfigStateChecks: []statecheck.StateCheck{statecheck.ExpectKnownValue(node, tfjsonpath.New("status"), knownvalue.StringExact("active"))},
				Check:             sameDroplet,
			},
			{
				// ignore: off stays off, and the plan is empty.
				Config: config("ignore"),
			},
			{
				PreConfig: powerOff,
				Config:    config("ignore"),
				PlanOnly:  true,
			},
		},
	})
}
