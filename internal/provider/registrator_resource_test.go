package provider

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/registrator"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
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

// registratorFixture drives a test app on the swarm and watches Consul, through the
// nodes' SSH connections as the provider reaches them.
type registratorFixture struct {
	swarmFixture
	app string
	// hostnames are the nodes' hostnames (Consul node names) by entry key.
	hostnames map[string]string
}

func (fx *registratorFixture) record(s *terraform.State) error {
	if err := fx.swarmFixture.record(s); err != nil {
		return err
	}
	fx.hostnames = map[string]string{}
	for key := range fx.targets {
		info, err := fx.info(key)
		if err != nil {
			return err
		}
		fx.hostnames[key] = info.Name
	}
	return nil
}

// consul is the Consul HTTP API of the agent on an entry's node.
func (fx *registratorFixture) consul(key string) (*consulapi.Client, error) {
	ctx, cancel := fx.ctx()
	defer cancel()
	h, err := fx.pool.Open(ctx, fx.targets[key])
	if err != nil {
		return nil, err
	}
	return h.Consul(conn.ConsulConfig{})
}

// instances is the catalog's view of the app: service ID -> entry (from the server).
func (fx *registratorFixture) instances() (map[string]*consulapi.ServiceEntry, error) {
	api, err := fx.consul("m")
	if err != nil {
		return nil, err
	}
	entries, _, err := api.Health().Service(fx.app, "", false, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]*consulapi.ServiceEntry{}
	for _, e := range entries {
		out[e.Service.ID] = e
	}
	return out, nil
}

func passing(e *consulapi.ServiceEntry) bool {
	return e.Checks.AggregatedStatus() == consulapi.HealthPassing
}

// awaitInstances waits until the catalog holds want instances of the app, all passing.
func (fx *registratorFixture) awaitInstances(within time.Duration, want int) (map[string]*consulapi.ServiceEntry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last map[string]*consulapi.ServiceEntry
	err := wait.Until(ctx, wait.Options{What: fmt.Sprintf("%d passing instances of %s in Consul", want, fx.app), Interval: 100 * time.Millisecond, MaxInterval: 500 * time.Millisecond},
		func(context.Context) (bool, string, error) {
			got, err := fx.instances()
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			last = got
			ok := 0
			for _, e := range got {
				if passing(e) {
					ok++
				}
			}
			return len(got) == want && ok == want, fmt.Sprintf("%d instances, %d passing", len(got), ok), nil
		})
	return last, err
}

// startApp runs the demo app as a 3-replica dnsrr service on an attachable overlay, one
// task per node, with a fast HEALTHCHECK and registrator labels on its containers.
func (fx *registratorFixture) startApp() error {
	docker, err := fx.docker("m")
	if err != nil {
		return err
	}
	ctx, cancel := fx.ctx()
	defer cancel()
	if _, err := docker.NetworkCreate(ctx, fx.app, network.CreateOptions{Driver: "overlay", Attachable: true}); err != nil {
		return fmt.Errorf("overlay network: %w", err)
	}
	replicas := uint64(3)
	spec := dockerswarm.ServiceSpec{
		Annotations: dockerswarm.Annotations{Name: fx.app, Labels: map[string]string{registrator.LabelColor: "blue"}},
		TaskTemplate: dockerswarm.TaskSpec{
			ContainerSpec: &dockerswarm.ContainerSpec{
				Image:  testDemoAppImage,
				Labels: map[string]string{"SERVICE_NAME": fx.app, registrator.LabelVersion: "1.0.0"},
				Healthcheck: &container.HealthConfig{
					Test: []string{"CMD", "/demo-app", "-check"}, Interval: testHealthInterval, Timeout: time.Second, Retries: 1,
				},
			},
			Networks:  []dockerswarm.NetworkAttachmentConfig{{Target: fx.app}},
			Placement: &dockerswarm.Placement{MaxReplicas: 1},
		},
		Mode:         dockerswarm.ServiceMode{Replicated: &dockerswarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &dockerswarm.EndpointSpec{Mode: dockerswarm.ResolutionModeDNSRR},
	}
	if _, err := docker.ServiceCreate(ctx, spec, dockerswarm.ServiceCreateOptions{QueryRegistry: false}); err != nil {
		return fmt.Errorf("creating service %s: %w", fx.app, err)
	}
	return nil
}

// askFromOverlay runs the demo app's client in a container on the app's overlay, on the
// manager, and returns what the URL answered.
func (fx *registratorFixture) askFromOverlay(url string) (string, error) {
	docker, err := fx.docker("m")
	if err != nil {
		return "", err
	}
	ctx, cancel := fx.ctx()
	defer cancel()
	created, err := docker.ContainerCreate(ctx, &container.Config{Image: testDemoAppImage, Cmd: []string{"-get", url}},
		&container.HostConfig{NetworkMode: container.NetworkMode(fx.app)}, nil, nil, "")
	if err != nil {
		return "", err
	}
	defer func() {
		_ = docker.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
	}()
	waitC, errC := docker.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return "", err
	}
	var code int64
	select {
	case res := <-waitC:
		code = res.StatusCode
	case err := <-errC:
		return "", err
	}
	logs, err := docker.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", err
	}
	defer logs.Close()
	var out strings.Builder
	_, _ = stdcopy.StdCopy(&out, &out, logs)
	if code != 0 {
		return "", fmt.Errorf("GET %s from the overlay: exit %d: %s", url, code, out.String())
	}
	return out.String(), nil
}

// checkTasksRegisteredWithOverlayAddresses: a 3-replica service on an overlay shows as
// 3 passing instances, at overlay addresses that answer from the same overlay, tagged
// with the color (a service label, seen by the registrator on the manager) or at least
// the version (a container label, seen everywhere).
func (fx *registratorFixture) checkTasksRegisteredWithOverlayAddresses(want int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		if err := fx.startApp(); err != nil {
			return err
		}
		got, err := fx.awaitInstances(90*time.Second, want)
		if err != nil {
			return err
		}
		for id, e := range got {
			if !strings.HasPrefix(e.Service.Address, "10.") || e.Service.Port != 8080 {
				return fmt.Errorf("%s registered at %s:%d, not at an overlay address and the container port", id, e.Service.Address, e.Service.Port)
			}
			if !slices.Contains(e.Service.Tags, "version=1.0.0") {
				return fmt.Errorf("%s has tags %q, without version=1.0.0", id, e.Service.Tags)
			}
			if !strings.HasPrefix(id, e.Node.Node+":"+fx.app+".") {
				return fmt.Errorf("service ID %s does not follow <hostname>:<container>:<port> on node %s", id, e.Node.Node)
			}
			answer, err := fx.askFromOverlay(fmt.Sprintf("http://%s:%d/", e.Service.Address, e.Service.Port))
			if err != nil {
				return err
			}
			if !strings.Contains(answer, `"version":"1.0.0"`) {
				return fmt.Errorf("%s answered %q", id, answer)
			}
		}
		return nil
	}
}

// taskContainer finds the node and container of a registered instance.
func (fx *registratorFixture) taskContainer(e *consulapi.ServiceEntry) (*client.Client, string, error) {
	key := ""
	for k, h := range fx.hostnames {
		if h == e.Node.Node {
			key = k
		}
	}
	if key == "" {
		return nil, "", fmt.Errorf("no node named %s", e.Node.Node)
	}
	docker, err := fx.docker(key)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := fx.ctx()
	defer cancel()
	list, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.swarm.task.id="+e.Service.Meta["swarm_task_id"]))})
	if err != nil || len(list) != 1 {
		return nil, "", fmt.Errorf("container of task %s on %s: %v (%d found)", e.Service.Meta["swarm_task_id"], key, err, len(list))
	}
	return docker, list[0].ID, nil
}

// checkUnhealthyTurnsCritical: an instance whose HEALTHCHECK fails is critical in Consul
// within two check intervals; swarm then replaces it and the replacement registers.
func (fx *registratorFixture) checkUnhealthyTurnsCritical() resource.TestCheckFunc {
	return func(*terraform.State) error {
		got, err := fx.instances()
		if err != nil {
			return err
		}
		var victim *consulapi.ServiceEntry
		for _, id := range slices.Sorted(maps.Keys(got)) {
			victim = got[id]
			break
		}
		docker, containerID, err := fx.taskContainer(victim)
		if err != nil {
			return err
		}
		ctx, cancel := fx.ctx()
		defer cancel()
		exec, err := docker.ContainerExecCreate(ctx, containerID, container.ExecOptions{Cmd: []string{"/demo-app", "-post", "http://127.0.0.1:8080/fail"}})
		if err != nil {
			return err
		}
		failedAt := time.Now()
		if err := docker.ContainerExecStart(ctx, exec.ID, container.ExecStartOptions{}); err != nil {
			return err
		}
		deadline, cancelWait := context.WithTimeout(ctx, 2*testHealthInterval)
		defer cancelWait()
		err = wait.Until(deadline, wait.Options{What: victim.Service.ID + " critical in Consul", Interval: 50 * time.Millisecond, Factor: 1},
			func(context.Context) (bool, string, error) {
				now, err := fx.instances()
				if err != nil {
					return false, "", wait.Retryable(err)
				}
				e, ok := now[victim.Service.ID]
				if !ok {
					// Deregistered already: swarm saw it unhealthy and is replacing it.
					return true, "", nil
				}
				return e.Checks.AggregatedStatus() == consulapi.HealthCritical, e.Checks.AggregatedStatus(), nil
			})
		if err != nil {
			return err
		}
		fx.t.Logf("instance critical in Consul %s after its health endpoint started failing (interval %s)", time.Since(failedAt).Round(time.Millisecond), testHealthInterval)
		// Swarm replaces the unhealthy task; the replacement registers and passes.
		after, err := fx.awaitInstances(90*time.Second, 3)
		if err != nil {
			return err
		}
		if _, still := after[victim.Service.ID]; still {
			return fmt.Errorf("the unhealthy instance %s is still registered after its replacement came up", victim.Service.ID)
		}
		return nil
	}
}

// checkAgentRestart restarts the Consul agent on a node: its registrations must be in
// the agent again within the resync interval of the agent answering, and the catalog
// (what clients see, through the server) must lack them no longer than that plus the
// agent's own restart.
func (fx *registratorFixture) checkAgentRestart(key string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		docker, err := fx.docker(key)
		if err != nil {
			return err
		}
		api, err := fx.consul(key)
		if err != nil {
			return err
		}
		before, err := api.Agent().Services()
		if err != nil {
			return err
		}
		var ours []string
		for id, s := range before {
			if s.Service == fx.app {
				ours = append(ours, id)
			}
		}
		if len(ours) == 0 {
			return fmt.Errorf("no %s registration on %s before the restart", fx.app, key)
		}
		catalogGap := fx.watchCatalogGap(ours)
		ctx, cancel := fx.ctx()
		defer cancel()
		timeout := 10
		restartAt := time.Now()
		if err := docker.ContainerRestart(ctx, "consul-agent", container.StopOptions{Timeout: &timeout}); err != nil {
			return err
		}
		var upAt time.Time
		err = wait.Until(ctx, wait.Options{What: "the restarted agent to hold " + strings.Join(ours, ", "), Interval: 50 * time.Millisecond, Factor: 1},
			func(context.Context) (bool, string, error) {
				have, err := api.Agent().Services()
				if err != nil {
					return false, "", wait.Retryable(err)
				}
				if upAt.IsZero() {
					upAt = time.Now()
				}
				for _, id := range ours {
					if have[id] == nil {
						return false, id + " missing", nil
					}
				}
				return true, "", nil
			})
		if err != nil {
			return err
		}
		gap := time.Since(upAt)
		if _, err := fx.awaitInstances(60*time.Second, 3); err != nil {
			return err
		}
		missing := catalogGap()
		fx.t.Logf("agent restart: back in the agent %s after it answered (%s after the restart began); missing from the catalog for %s (resync %ds)",
			gap.Round(time.Millisecond), time.Since(restartAt).Round(time.Millisecond), missing.Round(time.Millisecond), testRegistratorResync)
		if gap > testRegistratorResync*time.Second {
			return fmt.Errorf("registrations missing from the agent for %s after it came back, longer than the resync interval", gap)
		}
		return nil
	}
}

// watchCatalogGap polls the catalog until the returned function is called, and then
// says the longest time any of ids was missing from it.
func (fx *registratorFixture) watchCatalogGap(ids []string) func() time.Duration {
	stop := make(chan struct{})
	result := make(chan time.Duration, 1)
	go func() {
		var longest time.Duration
		var since time.Time
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				result <- longest
				return
			case <-tick.C:
			}
			now, err := fx.instances()
			if err != nil {
				continue
			}
			complete := true
			for _, id := range ids {
				complete = complete && now[id] != nil
			}
			switch {
			case !complete && since.IsZero():
				since = time.Now()
			case complete && !since.IsZero():
				longest = max(longest, time.Since(since))
				since = time.Time{}
			}
		}
	}()
	return func() time.Duration { close(stop); return <-result }
}

// checkScaleAndKill: scaling to 1 leaves exactly 1 registration; killing that task's
// container deregisters it, and its replacement registers.
func (fx *registratorFixture) checkScaleAndKill() resource.TestCheckFunc {
	return func(*terraform.State) error {
		docker, err := fx.docker("m")
		if err != nil {
			return err
		}
		ctx, cancel := fx.ctx()
		defer cancel()
		svc, _, err := docker.ServiceInspectWithRaw(ctx, fx.app, dockerswarm.ServiceInspectOptions{})
		if err != nil {
			return err
		}
		one := uint64(1)
		svc.Spec.Mode.Replicated.Replicas = &one
		if _, err := docker.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, dockerswarm.ServiceUpdateOptions{}); err != nil {
			return err
		}
		got, err := fx.awaitInstances(60*time.Second, 1)
		if err != nil {
			return err
		}
		var survivor *consulapi.ServiceEntry
		for _, e := range got {
			survivor = e
		}
		node, containerID, err := fx.taskContainer(survivor)
		if err != nil {
			return err
		}
		if err := node.ContainerKill(ctx, containerID, "SIGKILL"); err != nil {
			return err
		}
		return wait.Until(ctx, wait.Options{What: "the killed task deregistered and its replacement registered", Interval: 100 * time.Millisecond, Factor: 1},
			func(context.Context) (bool, string, error) {
				now, err := fx.instances()
				if err != nil {
					return false, "", wait.Retryable(err)
				}
				_, old := now[survivor.Service.ID]
				ok := len(now) == 1 && !old
				for _, e := range now {
					ok = ok && passing(e)
				}
				return ok, fmt.Sprintf("%d instances, killed one registered: %t", len(now), old), nil
			})
	}
}

func (fx *registratorFixture) removeServiceOutOfBand() {
	docker, err := fx.docker("m")
	if err != nil {
		fx.t.Fatal(err)
	}
	ctx, cancel := fx.ctx()
	defer cancel()
	if err := docker.ServiceRemove(ctx, "registrator"); err != nil {
		fx.t.Fatal(err)
	}
}

func (fx *registratorFixture) checkInstancesTagged(tag string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		ctx, cancel := fx.ctx()
		defer cancel()
		return wait.Until(ctx, wait.Options{What: "every instance tagged " + tag},
			func(context.Context) (bool, string, error) {
				now, err := fx.instances()
				if err != nil {
					return false, "", wait.Retryable(err)
				}
				for id, e := range now {
					if !slices.Contains(e.Service.Tags, tag) {
						return false, id + " has " + strings.Join(e.Service.Tags, ","), nil
					}
				}
				return len(now) > 0, "", nil
			})
	}
}

// checkTokenIsASecret: the token is in a swarm secret the tasks read as a file, and
// nowhere in the service's spec.
func (fx *registratorFixture) checkTokenIsASecret(token string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		docker, err := fx.docker("m")
		if err != nil {
			return err
		}
		ctx, cancel := fx.ctx()
		defer cancel()
		_, raw, err := docker.ServiceInspectWithRaw(ctx, "registrator", dockerswarm.ServiceInspectOptions{})
		if err != nil {
			return err
		}
		if strings.Contains(string(raw), token) {
			return errors.New("the Consul token shows in the registrator service's spec")
		}
		if !strings.Contains(string(raw), "CONSUL_HTTP_TOKEN_FILE="+registrator.TokenFile) {
			return fmt.Errorf("the tasks are not pointed at the token file: %s", raw)
		}
		secrets, err := docker.SecretList(ctx, dockerswarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("name", "registrator-consul-token-"))})
		if err != nil || len(secrets) != 1 {
			return fmt.Errorf("want one token secret, got %d (%v)", len(secrets), err)
		}
		return nil
	}
}

func (fx *registratorFixture) checkRegistratorGone() resource.TestCheckFunc {
	return func(*terraform.State) error {
		docker, err := fx.docker("m")
		if err != nil {
			return err
		}
		ctx, cancel := fx.ctx()
		defer cancel()
		if _, _, err := docker.ServiceInspectWithRaw(ctx, "registrator", dockerswarm.ServiceInspectOptions{}); err == nil {
			return errors.New("the registrator service is still there")
		}
		secrets, err := docker.SecretList(ctx, dockerswarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("name", "registrator-consul-token-"))})
		if err != nil || len(secrets) != 0 {
			return fmt.Errorf("token secrets left behind: %d (%v)", len(secrets), err)
		}
		for key := range fx.targets {
			node, err := fx.docker(key)
			if err != nil {
				return err
			}
			left, err := node.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
				filters.Arg("label", "com.docker.swarm.service.name=registrator"))})
			if err != nil || len(left) != 0 {
				return fmt.Errorf("registrator containers still running on %s: %d (%v)", key, len(left), err)
			}
		}
		now, err := fx.instances()
		if err != nil {
			return err
		}
		if len(now) != 1 {
			return fmt.Errorf("%d registrations of %s after the registrator went, want the 1 it made", len(now), fx.app)
		}
		return nil
	}
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
