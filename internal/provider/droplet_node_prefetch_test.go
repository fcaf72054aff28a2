package provider

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

func prefetchConfig(prefix, images string) string {
	return fmt.Sprintf(`
resource "microswarm_droplet_node" "test" {
  name            = "%s-prefetch"
  region          = "nyc3"
  size            = "s-1vcpu-1gb"
  prefetch_images = %s
}
`, prefix, images)
}

// TestAccDropletNode_prefetchImages: a new node pulls prefetch_images by itself, with
// nothing run on it (its engine holds the image soon after the create, which does not wait
// for it); a changed list is an update in place that replaces nothing; a list that is no
// image reference is refused at plan time, naming the attribute.
func TestAccDropletNode_prefetchImages(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	const node = "microswarm_droplet_node.test"
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				Config:      prefetchConfig(prefix, `["hashicorp/consul:1.20.5", "not a reference"]`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Invalid Image Reference.*prefetch_images\[1\]: "not a reference"`),
			},
			{
				Config: prefetchConfig(prefix, fmt.Sprintf("[%q]", testConsulImage)),
				Check:  checkNodeHasImage(t, node, testConsulImage, time.Minute),
			},
			{
				Config: prefetchConfig(prefix, fmt.Sprintf("[%q, %q]", testConsulImage, "haproxy:2.6")),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(node, plancheck.ResourceActionUpdate),
				}},
			},
		},
	})
}

// checkNodeHasImage waits until the node's engine lists ref, read over the pinned SSH
// connection; it pulls nothing itself.
func checkNodeHasImage(t *testing.T, name, ref string, within time.Duration) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[stateKey(name)]
		if !ok {
			return fmt.Errorf("%s not in state", name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		target := conn.Target{Host: rs.Primary.Attributes["docker_host"], HostKey: rs.Primary.Attributes["ssh_host_key"]}
		h, err := testkit.Pool(t).Open(ctx, target)
		if err != nil {
			return err
		}
		docker, err := h.Docker()
		if err != nil {
			return err
		}
		for {
			_, err := docker.ImageInspect(ctx, ref)
			if err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: the node's engine has no %s %s after its create: %v", name, ref, within, err)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}
