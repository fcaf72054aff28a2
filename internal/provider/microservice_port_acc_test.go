package provider

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// TestAccMicroservice_listenPortRounds changes the listen port back and forth under load,
// MICROSWARM_PORT_ROUNDS times (default 10): in every round, on every node, the new port
// answers before the old one last does and fails nothing after it first answered. The
// blue/green test does one such change; this one looks for what is rare.
func TestAccMicroservice_listenPortRounds(t *testing.T) {
	requireLongFaults(t)
	rounds := 10
	if n, err := strconv.Atoi(os.Getenv("MICROSWARM_PORT_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	prefix := "acc-" + acctest.RandString(6)
	fx := &microserviceFixture{registratorFixture: registratorFixture{swarmFixture: swarmFixture{t: t, pool: testkit.Pool(t)}, app: "accweb"}}
	config := func(port int, healthPath string) string {
		return microserviceConfig(prefix, colors("")+fmt.Sprintf("  active = \"blue\"\n  listen_port = %d\n  health_path = %q\n", port, healthPath))
	}
	steps := []resource.TestStep{{
		Config: config(8080, "/health"),
		Check:  resource.ComposeAggregateTestCheckFunc(fx.record, fx.recordEndpoints, fx.checkAnswers("1.0.0")),
	}}
	// Each round first reloads the proxies in place (a health_path change, as in the
	// blue/green test just before its port change), then changes the port.
	for i := range rounds {
		port, healthPath := 8081-i%2, []string{"/", "/health"}[i%2]
		steps = append(steps, resource.TestStep{
			Config: config(port-1+2*(i%2), healthPath),
			Check:  fx.checkAnswers("1.0.0"),
		}, resource.TestStep{
			PreConfig: fx.startPortLoads(port),
			Config:    config(port, healthPath),
			Check:     resource.ComposeAggregateTestCheckFunc(fx.checkPortHandover(), fx.recordEndpoints, fx.checkAnswers("1.0.0")),
		})
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps:                    steps,
	})
}
