package provider

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
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
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// The rolling-restart step moves the servers to this tag: the same image as
// testConsulImage, tagged in the local cloud's registry (which holds only 1.20.5), so
// each server pulls it through the provider's own pull path, nothing put on the nodes.
const testConsulRetaggedImage = "hashicorp/consul:1.20.5-acc-rolling"

var consulUUIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func newConsulGossipKey(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(key)
}

// consulClusterConfig puts 3 servers on nodes 0-2 and agentCount agents on nodes 3-4.
func consulClusterConfig(prefix, gossipKey, serverImage string, agentCount int) string {
	return dropletNodesConfig(prefix, []string{"s0", "s1", "s2", "a0", "a1"}, "s-1vcpu-1gb", nil) +
		consulOnNodesConfig(gossipKey, serverImage, agentCount)
}

func consulOnNodesConfig(gossipKey, serverImage string, agentCount int) string {
	return fmt.Sprintf(`
locals {
  server_ips = [for n in slice(microswarm_droplet_node.test, 0, 3) : n.ipv4_address_private]
}

resource "microswarm_consul_server" "s" {
  count            = 3
  host             = microswarm_droplet_node.test[count.index].docker_host
  host_key         = microswarm_droplet_node.test[count.index].ssh_host_key
  advertise_addr   = microswarm_droplet_node.test[count.index].ipv4_address_private
  bootstrap_expect = 3
  raft_multiplier  = 1
  retry_join       = local.server_ips
  encrypt          = %[1]q
  image            = %[2]q
}

resource "microswarm_consul_agent" "a" {
  count          = %[3]d
  host           = microswarm_droplet_node.test[3 + count.index].docker_host
  host_key       = microswarm_droplet_node.test[3 + count.index].ssh_host_key
  advertise_addr = microswarm_droplet_node.test[3 + count.index].ipv4_address_private
  retry_join     = local.server_ips
  encrypt        = %[1]q

  # Agents leave before the servers go, so their leave reaches a cluster with a leader.
  depends_on = [microswarm_consul_server.s]
}
`, gossipKey, serverImage, agentCount)
}

func TestAccConsul_cluster(t *testing.T) {
	// The import step reaches hosts no resource pins yet: first-use trust must be allowed.
	t.Setenv(envHostKeyPolicy, "accept-new")
	prefix := "acc-" + acctest.RandString(6)
	key := newConsulGossipKey(t)
	server := func(i int) string { return fmt.Sprintf("microswarm_consul_server.s[%d]", i) }
	agent := func(i int) string { return fmt.Sprintf("microswarm_consul_agent.a[%d]", i) }
	sameNodeID := statecheck.CompareValue(compare.ValuesSame())
	monitor := &consulQuorumMonitor{}
	t.Cleanup(monitor.Stop)
	recorded := &consulStateRecorder{}
	serverNodes := []string{"microswarm_droplet_node.test[0]", "microswarm_droplet_node.test[1]", "microswarm_droplet_node.test[2]"}

	var created []statecheck.StateCheck
	for i := range 3 {
		created = append(created,
			statecheck.ExpectKnownValue(server(i), tfjsonpath.New("http_addr"), knownvalue.StringExact("127.0.0.1:8500")),
			statecheck.ExpectKnownValue(server(i), tfjsonpath.New("node_id"), knownvalue.StringRegexp(consulUUIDPattern)),
			statecheck.ExpectKnownValue(server(i), tfjsonpath.New("leader"), knownvalue.StringRegexp(regexp.MustCompile(`^[0-9.]+:8300$`))),
			statecheck.ExpectKnownValue(server(i), tfjsonpath.New("running"), knownvalue.Bool(true)),
			statecheck.ExpectKnownValue(server(i), tfjsonpath.New("image"), knownvalue.StringExact(testConsulImage)),
		)
	}
	for i := range 2 {
		created = append(created,
			statecheck.ExpectKnownValue(agent(i), tfjsonpath.New("member_status"), knownvalue.StringExact("alive")),
			statecheck.ExpectKnownValue(agent(i), tfjsonpath.New("node_id"), knownvalue.StringRegexp(consulUUIDPattern)),
		)
	}

	// 2 of the 3 servers stopped: the plan still reads health, and heals (health_quorum_test.go).
	quorumLoss := quorumLossSteps(t, consulClusterConfig(prefix, key, testConsulImage, 2), recorded)

	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				// 3 servers (a quorum) and 2 agents on 5 nodes.
				Config:            consulClusterConfig(prefix, key, testConsulImage, 2),
				ConfigStateChecks: append(created, sameNodeID.AddStateValue(server(1), tfjsonpath.New("node_id"))),
				Check:             resource.ComposeAggregateTestCheckFunc(recorded.Record(), checkConsulCluster(t, 3, 5)),
			},
			{
				// Import by host and container name; the gossip key cannot be read back.
				ResourceName:            server(0),
				ImportState:             true,
				ImportStateIdFunc:       consulImportID(server(0)),
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"encrypt", "timeouts"},
			},
			{
				// A server container stopped outside Terraform: the plan starts it again in
				// place, and the apply restores the quorum of 3 voters.
				PreConfig: func() { stopConsulContainerOutOfBand(t, recorded, "microswarm_droplet_node.test[1]", "consul-server") },
				Config:    consulClusterConfig(prefix, key, testConsulImage, 2),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(server(1), plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue(server(1), tfjsonpath.New("running"), knownvalue.Bool(true)),
					plancheck.ExpectResourceAction(server(0), plancheck.ResourceActionNoop),
					plancheck.ExpectResourceAction(agent(0), plancheck.ResourceActionNoop),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					sameNodeID.AddStateValue(server(1), tfjsonpath.New("node_id")),
					statecheck.ExpectKnownValue(server(1), tfjsonpath.New("running"), knownvalue.Bool(true)),
				},
				Check: checkConsulCluster(t, 3, 5),
			},
			quorumLoss[0], quorumLoss[1], quorumLoss[2],
			{
				// A new image on every server: a rolling restart, one server at a time, while
				// the leader is polled through an agent.
				PreConfig: func() {
					repo, from, _ := strings.Cut(testConsulImage, ":")
					_, to, _ := strings.Cut(testConsulRetaggedImage, ":")
					testkit.TagImage(t, repo, from, to)
					monitor.Start(t, recorded, "microswarm_droplet_node.test[3]", serverNodes)
				},
				Config: consulClusterConfig(prefix, key, testConsulRetaggedImage, 2),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(server(0), plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(server(1), plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(server(2), plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(agent(0), plancheck.ResourceActionNoop),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					sameNodeID.AddStateValue(server(1), tfjsonpath.New("node_id")),
					statecheck.ExpectKnownValue(server(0), tfjsonpath.New("image"), knownvalue.StringExact(testConsulRetaggedImage)),
					statecheck.ExpectKnownValue(server(2), tfjsonpath.New("image"), knownvalue.StringExact(testConsulRetaggedImage)),
				},
				Check: resource.ComposeAggregateTestCheckFunc(monitor.Check(t), checkConsulCluster(t, 3, 5)),
			},
			{
				// Removing an agent: it leaves gracefully, so the catalog forgets its node.
				Config: consulClusterConfig(prefix, key, testConsulRetaggedImage, 1),
				Check:  checkConsulNodeLeft(t, prefix+"-a1"),
			},
			{
				// Consul removed, nodes kept: no container or volume of ours is left behind.
				Config: dropletNodesConfig(prefix, []string{"s0", "s1", "s2", "a0", "a1"}, "s-1vcpu-1gb", nil),
				Check:  checkNoConsulLeftOnNodes(t, 5),
			},
		},
	})
}

// nodeTarget reads a droplet node's docker_host and host key from the state.
func consulNodeTarget(s *terraform.State, node string) (conn.Target, error) {
	rs, ok := s.RootModule().Resources[stateKey(node)]
	if !ok {
		return conn.Target{}, fmt.Errorf("%s not in state", node)
	}
	return conn.Target{Host: rs.Primary.Attributes["docker_host"], HostKey: rs.Primary.Attributes["ssh_host_key"]}, nil
}

// testConsulToken is the token the tests' own Consul clients send (a test with ACLs on sets
// it; empty is anonymous).
var testConsulToken string

func consulOpenNode(ctx context.Context, t *testing.T, target conn.Target) (*conn.Host, *client.Client, error) {
	h, err := testkit.Pool(t).Open(ctx, target)
	if err != nil {
		return nil, nil, err
	}
	docker, err := h.Docker()
	return h, docker, err
}

// consulAPIViaFirstNode reaches the cluster's HTTP API through node 0, over SSH.
func consulAPIViaFirstNode(ctx context.Context, t *testing.T, s *terraform.State) (*consulapi.Client, error) {
	target, err := consulNodeTarget(s, "microswarm_droplet_node.test[0]")
	if err != nil {
		return nil, err
	}
	h, _, err := consulOpenNode(ctx, t, target)
	if err != nil {
		return nil, err
	}
	return h.Consul(conn.ConsulConfig{Token: testConsulToken})
}

// checkConsulCluster asks the cluster, through server 0's node, for its voters and alive members.
func checkConsulCluster(t *testing.T, wantVoters, wantAlive int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		api, err := consulAPIViaFirstNode(ctx, t, s)
		if err != nil {
			return err
		}
		// Right after an apply a member may still be settling: allow a short wait.
		return wait.Until(ctx, wait.Options{What: fmt.Sprintf("%d voters and %d alive members", wantVoters, wantAlive)}, func(ctx context.Context) (bool, string, error) {
			raft, err := api.Operator().RaftGetConfiguration((&consulapi.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			voters := 0
			for _, srv := range raft.Servers {
				if srv.Voter {
					voters++
				}
			}
			members, err := consul.Members(ctx, api)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			alive := 0
			for _, m := range members {
				if m.Status == 1 {
					alive++
				}
			}
			// The catalog's node of each member's name is that member's (its ID), not a
			// dead agent's of the same name whose services it would go on reporting.
			stale, err := consul.CatalogMismatches(ctx, api, members)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			state := fmt.Sprintf("%d voters, %d alive members of %d", voters, alive, len(members))
			if len(stale) > 0 {
				state += "; the catalog does not hold these alive members as themselves: " + strings.Join(stale, ", ")
			}
			return voters == wantVoters && alive == wantAlive && len(stale) == 0, state, nil
		})
	}
}

func consulImportID(name string) resource.ImportStateIdFunc {
	return func(s *terraform.State) (string, error) {
		rs, ok := s.RootModule().Resources[stateKey(name)]
		if !ok {
			return "", fmt.Errorf("%s not in state", name)
		}
		return rs.Primary.Attributes["host"] + "," + rs.Primary.Attributes["container_name"], nil
	}
}

// consulStateRecorder keeps the state a step's checks saw, for the next step's
// PreConfig, which gets none: it needs the nodes' docker_host and pinned host key.
type consulStateRecorder struct {
	mu    sync.Mutex
	state *terraform.State
}

func (r *consulStateRecorder) Record() resource.TestCheckFunc {
	return func(s *terraform.State) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.state = s
		return nil
	}
}

// Docker reaches a node of the recorded state.
func (r *consulStateRecorder) Docker(ctx context.Context, t *testing.T, node string) (*conn.Host, *client.Client) {
	t.Helper()
	r.mu.Lock()
	s := r.state
	r.mu.Unlock()
	if s == nil {
		t.Fatal("no state recorded yet")
	}
	target, err := consulNodeTarget(s, node)
	if err != nil {
		t.Fatal(err)
	}
	h, docker, err := consulOpenNode(ctx, t, target)
	if err != nil {
		t.Fatalf("reaching %s: %v", node, err)
	}
	return h, docker
}

func stopConsulContainerOutOfBand(t *testing.T, nodes *consulStateRecorder, node, containerName string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, docker := nodes.Docker(ctx, t, node)
	timeout := 10
	if err := docker.ContainerStop(ctx, containerName, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatalf("stopping %s on %s: %v", containerName, node, err)
	}
}

// checkConsulNodeLeft proves a removed agent's node left gracefully: gone from the
// catalog, and not "failed" among the members.
func checkConsulNodeLeft(t *testing.T, nodeName string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		api, err := consulAPIViaFirstNode(ctx, t, s)
		if err != nil {
			return err
		}
		members, err := consul.Members(ctx, api)
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.Name == nodeName && m.Status != 3 {
				return fmt.Errorf("member %s is %s, want left", nodeName, consul.MemberStatusName(m.Status))
			}
		}
		return wait.Until(ctx, wait.Options{What: nodeName + " to leave the catalog"}, func(ctx context.Context) (bool, string, error) {
			node, _, err := api.Catalog().Node(nodeName, (&consulapi.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			return node == nil || node.Node == nil, "still in the catalog", nil
		})
	}
}

// checkNoConsulLeftOnNodes lists, on every node, containers labelled as ours and our volumes.
func checkNoConsulLeftOnNodes(t *testing.T, nodes int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := range nodes {
			node := fmt.Sprintf("microswarm_droplet_node.test[%d]", i)
			target, err := consulNodeTarget(s, node)
			if err != nil {
				return err
			}
			_, docker, err := consulOpenNode(ctx, t, target)
			if err != nil {
				return err
			}
			if err := checkNoConsulOnEngine(ctx, docker, ""); err != nil {
				return fmt.Errorf("%s: %w", node, err)
			}
		}
		return nil
	}
}

// checkNoConsulOnEngine fails if the engine still has a container of ours (named
// containerName, or any when it is empty) or a consul data volume.
func checkNoConsulOnEngine(ctx context.Context, docker *client.Client, containerName string) error {
	args := filters.NewArgs(filters.Arg("label", consul.LabelManagedBy+"="+consul.ManagedByValue))
	if containerName != "" {
		args.Add("name", "^/"+containerName+"$")
	}
	left, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return err
	}
	for _, c := range left {
		return fmt.Errorf("container %v (%s) is left", c.Names, c.State)
	}
	volumes, err := docker.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", consul.LabelManagedBy+"="+consul.ManagedByValue))})
	if err != nil {
		return err
	}
	for _, v := range volumes.Volumes {
		if containerName == "" || v.Name == containerName+"-data" {
			return fmt.Errorf("volume %s is left", v.Name)
		}
	}
	return nil
}

// consulQuorumMonitor watches a rolling restart from outside: through an agent (whose
// node is not restarted) it polls the leader, a consistent read (it needs a leader) and
// the agent's gossip view of the servers; from the server nodes' engines it follows the
// servers' containers dying and starting.
type consulQuorumMonitor struct {
	mu      sync.Mutex
	stop    chan struct{}
	wg      sync.WaitGroup
	started time.Time

	samples, failedReads          int
	leaderless, longestLeaderless time.Duration
	leaderlessSince               time.Time
	maxGossipDown                 int

	containerEvents, eventErrors int
	maxContainersDown            int
	timeline                     []string
}

func (m *consulQuorumMonitor) Start(t *testing.T, recorded *consulStateRecorder, agentNode string, serverNodes []string) {
	t.Helper()
	ctx := context.Background()
	agentHost, _ := recorded.Docker(ctx, t, agentNode)
	api, err := agentHost.Consul(conn.ConsulConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var dockers []*client.Client
	for _, n := range serverNodes {
		_, docker := recorded.Docker(ctx, t, n)
		dockers = append(dockers, docker)
	}
	m.stop, m.started = make(chan struct{}), time.Now()
	m.wg.Add(2)
	go m.watchConsul(api)
	go m.watchContainers(dockers)
}

func (m *consulQuorumMonitor) note(format string, args ...any) {
	m.timeline = append(m.timeline, fmt.Sprintf("+%5.1fs ", time.Since(m.started).Seconds())+fmt.Sprintf(format, args...))
}

func (m *consulQuorumMonitor) watchConsul(api *consulapi.Client) {
	defer m.wg.Done()
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	lastLeader, lastGossip := "", 0
	for {
		select {
		case <-m.stop:
			return
		case <-ticker.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		leader, leaderErr := api.Status().LeaderWithQueryOptions((&consulapi.QueryOptions{}).WithContext(ctx))
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
		_, _, readErr := api.KV().Get("microswarm/acc-probe", (&consulapi.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
		gossipDown := 0
		if members, err := consul.Members(ctx, api); err == nil {
			for _, mem := range members {
				if mem.Tags["role"] == "consul" && mem.Status != 1 {
					gossipDown++
				}
			}
		}
		cancel()
		now := time.Now()

		m.mu.Lock()
		m.samples++
		if readErr != nil {
			m.failedReads++
		}
		noLeader := leaderErr != nil || leader == "" || readErr != nil
		switch {
		case noLeader && m.leaderlessSince.IsZero():
			m.leaderlessSince = now
			m.note("no leader (leader %q, read error: %v)", leader, readErr)
		case !noLeader && !m.leaderlessSince.IsZero():
			gap := now.Sub(m.leaderlessSince)
			m.leaderless += gap
			m.longestLeaderless = max(m.longestLeaderless, gap)
			m.leaderlessSince = time.Time{}
			m.note("leader %s after %s without one", leader, gap.Round(100*time.Millisecond))
		case leader != lastLeader && leader != "":
			m.note("leader %s", leader)
		}
		if gossipDown != lastGossip {
			m.note("the agent's gossip sees %d servers not alive", gossipDown)
		}
		if leader != "" {
			lastLeader = leader
		}
		lastGossip = gossipDown
		m.maxGossipDown = max(m.maxGossipDown, gossipDown)
		m.mu.Unlock()
	}
}

// watchContainers follows the server containers' die and start events on each node's
// engine: exact times, where polling could miss a restart shorter than its interval.
func (m *consulQuorumMonitor) watchContainers(dockers []*client.Client) {
	defer m.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type change struct {
		server int
		msg    events.Message
	}
	changes := make(chan change)
	for i, d := range dockers {
		msgs, errs := d.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("container", "consul-server"),
			filters.Arg("event", string(events.ActionDie)),
			filters.Arg("event", string(events.ActionStart)),
		)})
		go func() {
			for {
				select {
				case msg := <-msgs:
					select {
					case changes <- change{i, msg}:
					case <-ctx.Done():
						return
					}
				case err := <-errs:
					if ctx.Err() == nil {
						m.mu.Lock()
						m.note("server %d: the event stream broke: %v", i, err)
						m.eventErrors++
						m.mu.Unlock()
					}
					return
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	down := make([]bool, len(dockers))
	for {
		select {
		case <-m.stop:
			return
		case c := <-changes:
			m.mu.Lock()
			m.containerEvents++
			down[c.server] = c.msg.Action == events.ActionDie
			n := 0
			for _, d := range down {
				if d {
					n++
				}
			}
			m.maxContainersDown = max(m.maxContainersDown, n)
			at := time.Unix(0, c.msg.TimeNano).Sub(m.started).Seconds()
			m.timeline = append(m.timeline, fmt.Sprintf("+%5.1fs server %d container %s (%s); %d down", at, c.server, c.msg.Action, c.msg.Actor.Attributes["image"], n))
			m.mu.Unlock()
		}
	}
}

// Stop ends the watches; safe to call twice, or without Start.
func (m *consulQuorumMonitor) Stop() {
	m.mu.Lock()
	stop := m.stop
	m.stop = nil
	m.mu.Unlock()
	if stop != nil {
		close(stop)
		m.wg.Wait()
	}
}

// consulMaxLeaderlessWindow bounds how long the cluster may go without a leader while the
// leader itself restarts: a raft election (timeouts scaled by raft_multiplier 5) plus
// slack for 2 busy cores.
const consulMaxLeaderlessWindow = 30 * time.Second

func (m *consulQuorumMonitor) Check(t *testing.T) resource.TestCheckFunc {
	return func(*terraform.State) error {
		m.Stop()
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.leaderlessSince.IsZero() {
			gap := time.Since(m.leaderlessSince)
			m.leaderless += gap
			m.longestLeaderless = max(m.longestLeaderless, gap)
		}
		t.Logf("rolling restart, watched for %s: through an agent every 250ms, %d samples, %d failed consistent reads, no leader for %s in total "+
			"and %s at the longest, the agent's gossip saw at most %d servers not alive at once; through the engines' events, %d container "+
			"die/start events (%d broken streams), at most %d server containers down at once",
			time.Since(m.started).Round(time.Second), m.samples, m.failedReads, m.leaderless.Round(100*time.Millisecond),
			m.longestLeaderless.Round(100*time.Millisecond), m.maxGossipDown, m.containerEvents, m.eventErrors, m.maxContainersDown)
		t.Logf("timeline:\n%s", strings.Join(m.timeline, "\n"))
		var errs []error
		if m.samples < 10 {
			errs = append(errs, fmt.Errorf("only %d consul samples: the monitor did not run", m.samples))
		}
		// Each of the 3 servers stops once and starts once.
		if m.containerEvents < 6 || m.eventErrors > 0 {
			errs = append(errs, fmt.Errorf("saw %d container events (want 6) with %d broken streams: the restarts were not all observed", m.containerEvents, m.eventErrors))
		}
		if m.maxContainersDown > 1 {
			errs = append(errs, fmt.Errorf("%d server containers were down at once", m.maxContainersDown))
		}
		if m.longestLeaderless > consulMaxLeaderlessWindow {
			errs = append(errs, fmt.Errorf("the cluster had no leader for %s at once (limit %s)", m.longestLeaderless, consulMaxLeaderlessWindow))
		}
		return errors.Join(errs...)
	}
}

func TestAccConsulServer_localEngine(t *testing.T) {
	ctx := context.Background()
	docker, err := client.NewClientWithOpts(client.WithHost("unix:///var/run/docker.sock"), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer docker.Close()
	if _, err := docker.ImageInspect(ctx, testConsulImage); err != nil {
		testkit.SkipOrFailInCI(t, "the local engine has no %s (run tools/images/build.sh consul): %v", testConsulImage, err)
	}
	name := "acc-consul-" + acctest.RandString(6)
	pems := consultest.NewTLS(t)
	tlsMaterial := consul.TLS{CAPEM: pems.CAPEM, CertPEM: pems.CertPEM, KeyPEM: pems.KeyPEM}
	key := newConsulGossipKey(t)
	// The container shares the host's network: free ports, so nothing else on this
	// machine (another test's agent) is in the way.
	httpPort, serverPort, serfPort := consultest.FreePort(t), consultest.FreePort(t), consultest.FreePort(t)
	config := fmt.Sprintf(`
resource "microswarm_consul_server" "local" {
  host             = "unix:///var/run/docker.sock"
  container_name   = %[1]q
  advertise_addr   = "127.0.0.1"
  bootstrap_expect = 1
  encrypt          = %[2]q
  ui               = true
  ports = {
    http     = %[3]d
    dns      = -1
    server   = %[4]d
    serf_lan = %[5]d
    serf_wan = -1
    grpc_tls = -1
  }
  tls = {
    ca_pem   = %[6]q
    cert_pem = %[7]q
    key_pem  = %[8]q
  }
}
`, name, key, httpPort, serverPort, serfPort, tlsMaterial.CAPEM, tlsMaterial.CertPEM, tlsMaterial.KeyPEM)
	const res = "microswarm_consul_server.local"
	httpAddr := fmt.Sprintf("https://127.0.0.1:%d", httpPort)
	sameNodeID := statecheck.CompareValue(compare.ValuesSame())
	// A tag of its own for the image-change step, removed afterwards (only the tag: the
	// image stays).
	retagged := "hashicorp/consul:1.20.5-" + name
	if err := docker.ImageTag(ctx, testConsulImage, retagged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = docker.ImageRemove(context.Background(), retagged, image.RemoveOptions{}) })

	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy: func(*terraform.State) error {
			return checkNoConsulOnEngine(context.Background(), docker, name)
		},
		Steps: []resource.TestStep{
			{
				Config: config,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("id"), knownvalue.StringExact("unix:///var/run/docker.sock,"+name)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("http_addr"), knownvalue.StringExact(httpAddr)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("leader"), knownvalue.StringExact(fmt.Sprintf("127.0.0.1:%d", serverPort))),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("node_id"), knownvalue.StringRegexp(consulUUIDPattern)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("host_key"), knownvalue.Null()),
					sameNodeID.AddStateValue(res, tfjsonpath.New("node_id")),
				},
				Check: checkLocalConsulOverTLS(t, docker, name, httpPort, tlsMaterial),
			},
			{
				// The TLS material and the gossip key are not read back, so neither is what
				// needs them to reach the API.
				ResourceName:            res,
				ImportState:             true,
				ImportStateId:           "unix:///var/run/docker.sock," + name,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"encrypt", "tls", "timeouts", "leader", "node_id"},
			},
			{
				// The container removed outside Terraform: the plan creates it again, on the
				// data volume that is still there, so the node ID is the same.
				PreConfig: func() {
					if err := docker.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); err != nil {
						t.Fatal(err)
					}
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(res, plancheck.ResourceActionCreate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{sameNodeID.AddStateValue(res, tfjsonpath.New("node_id"))},
				Check:             checkLocalConsulOverTLS(t, docker, name, httpPort, tlsMaterial),
			},
			{
				// Another image: the single server is recreated in place, keeping its data.
				Config: strings.Replace(config, "bootstrap_expect = 1", fmt.Sprintf("bootstrap_expect = 1\n  image = %q", retagged), 1),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					sameNodeID.AddStateValue(res, tfjsonpath.New("node_id")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("image"), knownvalue.StringExact(retagged)),
				},
				Check: checkLocalConsulOverTLS(t, docker, name, httpPort, tlsMaterial),
			},
		},
	})
}

// checkLocalConsulOverTLS talks to the local server over HTTPS with the test CA and
// checks that no secret shows on the container's command line or labels.
func checkLocalConsulOverTLS(t *testing.T, docker *client.Client, name string, httpPort int, tlsMaterial consul.TLS) resource.TestCheckFunc {
	return func(*terraform.State) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cfg, err := consul.APIConfig(consul.Spec{ClientAddr: "127.0.0.1", Ports: consul.Ports{HTTP: httpPort}, TLS: &tlsMaterial})
		if err != nil {
			return err
		}
		pool := testkit.Pool(t)
		h, err := pool.Open(ctx, conn.Target{Host: "unix:///var/run/docker.sock"})
		if err != nil {
			return err
		}
		api, err := h.Consul(cfg)
		if err != nil {
			return err
		}
		st, err := consul.ReadServerStatus(ctx, api)
		if err != nil {
			return fmt.Errorf("asking the server over https: %w", err)
		}
		if !st.Voter || st.Voters != 1 {
			return fmt.Errorf("server status %s", st)
		}
		info, err := docker.ContainerInspect(ctx, name)
		if err != nil {
			return err
		}
		visible := strings.Join(info.Config.Cmd, " ") + fmt.Sprint(info.Config.Labels) + strings.Join(info.Config.Env, " ")
		if strings.Contains(visible, strings.Split(tlsMaterial.KeyPEM, "\n")[1]) {
			return errors.New("the TLS key shows on the container's command line, env or labels")
		}
		if info.HostConfig.NetworkMode != "host" || info.HostConfig.RestartPolicy.Name != "unless-stopped" {
			return fmt.Errorf("network %s, restart policy %s", info.HostConfig.NetworkMode, info.HostConfig.RestartPolicy.Name)
		}
		if _, err := docker.VolumeInspect(ctx, name+"-data"); cerrdefs.IsNotFound(err) {
			return fmt.Errorf("the data volume %s-data is missing", name)
		}
		return nil
	}
}
