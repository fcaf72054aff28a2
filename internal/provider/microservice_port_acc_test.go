package provider

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	dockerswarm "github.com/docker/docker/api/types/swarm"
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

// proxyTaskHistory is every task the proxy's service has had, oldest first: its node, its
// desired and current state with the time of that state, its published port and error.
// A port handover that failed says with it what swarm did meanwhile.
func (fx *microserviceFixture) proxyTaskHistory() string {
	docker, err := fx.docker("m")
	if err != nil {
		return "task history: " + err.Error()
	}
	ctx, cancel := fx.ctx()
	defer cancel()
	tasks, err := docker.TaskList(ctx, dockerswarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", fx.app+"-proxy"))})
	if err != nil {
		return "task history: " + err.Error()
	}
	slices.SortFunc(tasks, func(a, b dockerswarm.Task) int { return a.CreatedAt.Compare(b.CreatedAt) })
	names := map[string]string{}
	for key, id := range fx.nodeIDs {
		names[id] = key
	}
	var b strings.Builder
	for _, t := range tasks {
		port := 0
		if ps := t.Status.PortStatus.Ports; len(ps) > 0 {
			port = int(ps[0].PublishedPort)
		}
		fmt.Fprintf(&b, "\n  task %.8s on %s: created %s, desired %s, %s at %s, port %d, version %d %s", t.ID, names[t.NodeID],
			t.CreatedAt.Format(time.StampMilli), t.DesiredState, t.Status.State, t.Status.Timestamp.Format(time.StampMilli), port, t.Version.Index, t.Status.Err)
	}
	hosts := []string{}
	for key, t := range fx.targets {
		hosts = append(hosts, key+"="+t.Host)
	}
	slices.Sort(hosts)
	return "proxy tasks (" + strings.Join(hosts, ", ") + "):" + b.String()
}
