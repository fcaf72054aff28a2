package provider

// The acceptance tests' fixtures, in one place: each reaches the test's nodes from
// outside the provider (through the Docker API, Consul and requests to the proxies) and
// checks what a user would see. They build on each other: healFixture adds the health
// loop to microserviceFixture, which adds the blue/green app to registratorFixture,
// which adds the registrator to swarmFixture.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/haproxy"
	"github.com/microswarm/terraform-provider-microswarm/internal/loadgen"
	"github.com/microswarm/terraform-provider-microswarm/internal/registrator"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// swarmFixture reaches the test's nodes through the Docker API, as the provider does,
// and remembers what later steps need.
type swarmFixture struct {
	t    *testing.T
	pool *conn.Pool
	// targets and nodeIDs are per entry key (or droplet name in droplet-only tests).
	targets    map[string]conn.Target
	nodeIDs    map[string]string
	dropletIDs map[string]int
	// workerToken is the worker join token as recordJoinToken last saw it.
	workerToken string
}

func (fx *swarmFixture) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Minute)
}

func (fx *swarmFixture) docker(key string) (*client.Client, error) {
	ctx, cancel := fx.ctx()
	defer cancel()
	target, ok := fx.targets[key]
	if !ok {
		return nil, fmt.Errorf("no host recorded for %s", key)
	}
	h, err := fx.pool.Open(ctx, target)
	if err != nil {
		return nil, err
	}
	return h.Docker()
}

// info is what a node's engine reports about itself, swarm state included.
func (fx *swarmFixture) info(key string) (system.Info, error) {
	docker, err := fx.docker(key)
	if err != nil {
		return system.Info{}, err
	}
	ctx, cancel := fx.ctx()
	defer cancel()
	info, err := docker.Info(ctx)
	if err != nil {
		return system.Info{}, fmt.Errorf("docker info on %s: %w", key, err)
	}
	return info, nil
}

// record remembers the swarm entries' hosts and node IDs from state.
func (fx *swarmFixture) record(s *terraform.State) error {
	rs, ok := s.RootModule().Resources[swarmResource]
	if !ok {
		return fmt.Errorf("%s not in state", swarmResource)
	}
	if fx.targets == nil {
		fx.targets = map[string]conn.Target{}
	}
	if fx.nodeIDs == nil {
		fx.nodeIDs = map[string]string{}
	}
	for attr, v := range rs.Primary.Attributes {
		parts := strings.Split(attr, ".")
		if len(parts) != 3 || parts[0] != "nodes" {
			continue
		}
		key := parts[1]
		t := fx.targets[key]
		switch parts[2] {
		case "host":
			t.Host = v
		case "host_key":
			t.HostKey = v
		case "node_id":
			fx.nodeIDs[key] = v
		}
		fx.targets[key] = t
	}
	return nil
}

// checkNodeList compares `docker node ls` on a manager with the state: every entry's
// node is listed with its role, ready, and nothing else is.
func (fx *swarmFixture) checkNodeList(manager string, want map[string]string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		if err := fx.record(s); err != nil {
			return err
		}
		docker, err := fx.docker(manager)
		if err != nil {
			return err
		}
		ctx, cancel := fx.ctx()
		defer cancel()
		nodes, err := docker.NodeList(ctx, dockerswarm.NodeListOptions{})
		if err != nil {
			return fmt.Errorf("node ls on %s: %w", manager, err)
		}
		if len(nodes) != len(want) {
			var got []string
			for _, n := range nodes {
				got = append(got, fmt.Sprintf("%s (%s, %s, %s)", n.ID, n.Description.Hostname, n.Spec.Role, n.Status.State))
			}
			return fmt.Errorf("node ls on %s lists %d nodes, want %d: %s", manager, len(nodes), len(want), strings.Join(got, "; "))
		}
		leaders := 0
		for key, role := range want {
			id, err := entryAttr(s, key, "node_id")
			if err != nil {
				return err
			}
			i := slices.IndexFunc(nodes, func(n dockerswarm.Node) bool { return n.ID == id })
			if i < 0 {
				return fmt.Errorf("%s's node %s is not in node ls", key, id)
			}
			n := nodes[i]
			if string(n.Spec.Role) != role || n.Status.State != dockerswarm.NodeStateReady {
				return fmt.Errorf("%s's node %s is a %s in state %s, want a ready %s", key, id, n.Spec.Role, n.Status.State, role)
			}
			if role == "manager" && (n.ManagerStatus == nil || n.ManagerStatus.Reachability != dockerswarm.ReachabilityReachable) {
				return fmt.Errorf("%s's node %s is not a reachable manager: %+v", key, id, n.ManagerStatus)
			}
			if n.ManagerStatus != nil && n.ManagerStatus.Leader {
				leaders++
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d leaders among the managers, want 1", leaders)
		}
		return nil
	}
}

// checkSameNode checks that entry key is the node entry was when last recorded.
func (fx *swarmFixture) checkSameNode(key, was string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		got, err := entryAttr(s, key, "node_id")
		if err != nil {
			return err
		}
		if got != fx.nodeIDs[was] {
			return fmt.Errorf("%s is node %s, want %s's node %s", key, got, was, fx.nodeIDs[was])
		}
		return nil
	}
}

// checkSettings compares the swarm's spec, through a manager, with the state.
func (fx *swarmFixture) checkSettings(manager string, historyLimit int64, certExpiry time.Duration, autolock bool) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		docker, err := fx.docker(manager)
		if err != nil {
			return err
		}
		ctx, cancel := fx.ctx()
		defer cancel()
		sw, err := docker.SwarmInspect(ctx)
		if err != nil {
			return err
		}
		spec := sw.Spec
		if l := spec.Orchestration.TaskHistoryRetentionLimit; l == nil || *l != historyLimit {
			return fmt.Errorf("task history limit %v, want %d", l, historyLimit)
		}
		if spec.CAConfig.NodeCertExpiry != certExpiry || spec.EncryptionConfig.AutoLockManagers != autolock {
			return fmt.Errorf("cert expiry %s and autolock %v, want %s and %v", spec.CAConfig.NodeCertExpiry, spec.EncryptionConfig.AutoLockManagers, certExpiry, autolock)
		}
		if fx.workerToken != "" && sw.JoinTokens.Worker == fx.workerToken {
			return fmt.Errorf("the worker join token was not rotated")
		}
		secrets := []string{sw.JoinTokens.Worker, sw.JoinTokens.Manager}
		if autolock {
			key, err := docker.SwarmGetUnlockKey(ctx)
			if err != nil || key.UnlockKey == "" {
				return fmt.Errorf("autolock is on but the manager reports no unlock key (%v)", err)
			}
			secrets = append(secrets, key.UnlockKey)
		}
		for name, v := range s.RootModule().Resources[swarmResource].Primary.Attributes {
			if slices.Contains(secrets, v) {
				return fmt.Errorf("the state holds a swarm secret in %s", name)
			}
		}
		return nil
	}
}

// recordJoinToken keeps the swarm's worker join token, read through a manager, so a later
// step can tell it was rotated (the state does not hold it).
func (fx *swarmFixture) recordJoinToken(manager string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		docker, err := fx.docker(manager)
		if err != nil {
			return err
		}
		ctx, cancel := fx.ctx()
		defer cancel()
		sw, err := docker.SwarmInspect(ctx)
		if err != nil {
			return err
		}
		fx.workerToken = sw.JoinTokens.Worker
		return nil
	}
}

// startService runs a replicated dnsrr service (the local cloud has no routing mesh)
// and waits until all its tasks run and one of them runs on onKey's node.
func (fx *swarmFixture) startService(name string, replicas uint64, onKey string) {
	fx.t.Helper()
	docker, err := fx.docker("a")
	if err != nil {
		fx.t.Fatal(err)
	}
	ctx, cancel := fx.ctx()
	defer cancel()
	spec := dockerswarm.ServiceSpec{
		Annotations:  dockerswarm.Annotations{Name: name},
		TaskTemplate: dockerswarm.TaskSpec{ContainerSpec: &dockerswarm.ContainerSpec{Image: testDemoAppImage}},
		Mode:         dockerswarm.ServiceMode{Replicated: &dockerswarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &dockerswarm.EndpointSpec{Mode: dockerswarm.ResolutionModeDNSRR},
	}
	// QueryRegistry false: digest resolution must never need Docker Hub.
	if _, err := docker.ServiceCreate(ctx, spec, dockerswarm.ServiceCreateOptions{QueryRegistry: false}); err != nil {
		fx.t.Fatalf("creating service %s: %v", name, err)
	}
	target := fx.nodeIDs[onKey]
	err = wait.Until(ctx, wait.Options{What: fmt.Sprintf("%d tasks of %s running, one on %s", replicas, name, onKey)}, func(ctx context.Context) (bool, string, error) {
		running, err := runningTasks(ctx, docker, name)
		if err != nil {
			return false, "", wait.Retryable(err)
		}
		return uint64(len(running)) == replicas && slices.Contains(running, target), fmt.Sprintf("running on %v", running), nil
	})
	if err != nil {
		fx.t.Fatal(err)
	}
}

// checkTasksMovedOff checks that all replicas run, none on the removed node.
func (fx *swarmFixture) checkTasksMovedOff(service string, replicas int, removedKey string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		docker, err := fx.docker("a")
		if err != nil {
			return err
		}
		ctx, cancel := fx.ctx()
		defer cancel()
		removed := fx.nodeIDs[removedKey]
		return wait.Until(ctx, wait.Options{What: fmt.Sprintf("%d tasks of %s running off %s", replicas, service, removedKey)}, func(ctx context.Context) (bool, string, error) {
			running, err := runningTasks(ctx, docker, service)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			if slices.Contains(running, removed) {
				return false, "", fmt.Errorf("a task of %s still runs on the removed node %s", service, removed)
			}
			return len(running) == replicas, fmt.Sprintf("running on %v", running), nil
		})
	}
}

// checkSwarmInactive checks that each node's engine is out of swarm mode.
func (fx *swarmFixture) checkSwarmInactive(keys ...string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		for _, key := range keys {
			info, err := fx.info(key)
			if err != nil {
				return err
			}
			if info.Swarm.LocalNodeState != dockerswarm.LocalNodeStateInactive {
				return fmt.Errorf("%s's engine is in swarm state %s, want inactive", key, info.Swarm.LocalNodeState)
			}
		}
		return nil
	}
}

// leaveOutOfBand makes a worker or manager leave without Terraform and waits until the
// manager sees it down, so the next refresh reports it.
func (fx *swarmFixture) leaveOutOfBand(key, manager string) {
	fx.t.Helper()
	node, err := fx.docker(key)
	if err != nil {
		fx.t.Fatal(err)
	}
	ctx, cancel := fx.ctx()
	defer cancel()
	if err := node.SwarmLeave(ctx, true); err != nil {
		fx.t.Fatalf("swarm leave on %s: %v", key, err)
	}
	mgr, err := fx.docker(manager)
	if err != nil {
		fx.t.Fatal(err)
	}
	err = wait.Until(ctx, wait.Options{What: key + " to be down"}, func(ctx context.Context) (bool, string, error) {
		n, _, err := mgr.NodeInspectWithRaw(ctx, fx.nodeIDs[key])
		if err != nil {
			return false, "", wait.Retryable(err)
		}
		return n.Status.State != dockerswarm.NodeStateReady && (n.ManagerStatus == nil || n.ManagerStatus.Reachability != dockerswarm.ReachabilityReachable),
			string(n.Status.State), nil
	})
	if err != nil {
		fx.t.Fatal(err)
	}
}

// waitNodeDown waits until a manager sees a node as down.
func (fx *swarmFixture) waitNodeDown(manager, key string) {
	fx.t.Helper()
	docker, err := fx.docker(manager)
	if err != nil {
		fx.t.Fatal(err)
	}
	ctx, cancel := fx.ctx()
	defer cancel()
	err = wait.Until(ctx, wait.Options{What: key + " to be down"}, func(ctx context.Context) (bool, string, error) {
		n, _, err := docker.NodeInspectWithRaw(ctx, fx.nodeIDs[key])
		if err != nil {
			return false, "", wait.Retryable(err)
		}
		return n.Status.State == dockerswarm.NodeStateDown, string(n.Status.State), nil
	})
	if err != nil {
		fx.t.Fatal(err)
	}
}

// rememberDroplets records the droplets' hosts, pinned keys and IDs by name.
func (fx *swarmFixture) rememberDroplets(names []string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		fx.targets, fx.dropletIDs = map[string]conn.Target{}, map[string]int{}
		for i, name := range names {
			rs, ok := s.RootModule().Resources[fmt.Sprintf("microswarm_droplet_node.test.%d", i)]
			if !ok {
				return fmt.Errorf("droplet %s not in state", name)
			}
			id, err := strconv.Atoi(rs.Primary.ID)
			if err != nil {
				return err
			}
			fx.dropletIDs[name] = id
			fx.targets[name] = conn.Target{Host: rs.Primary.Attributes["docker_host"], HostKey: rs.Primary.Attributes["ssh_host_key"]}
		}
		return nil
	}
}

func (fx *swarmFixture) powerOff(name string) {
	fx.t.Helper()
	ctx, cancel := fx.ctx()
	defer cancel()
	id := fx.dropletIDs[name]
	if _, _, err := testkit.Godo(fx.t).DropletActions.PowerOff(ctx, id); err != nil {
		fx.t.Fatalf("powering off droplet %s (%d): %v", name, id, err)
	}
	if _, err := testkit.Cloud(fx.t).WaitStatus(ctx, id, "off"); err != nil {
		fx.t.Fatalf("droplet %s did not power off: %v", name, err)
	}
}

func (fx *swarmFixture) powerOn(name string) {
	fx.t.Helper()
	ctx, cancel := fx.ctx()
	defer cancel()
	id := fx.dropletIDs[name]
	if err := testkit.Cloud(fx.t).PowerOn(ctx, id); err != nil {
		fx.t.Fatalf("powering on droplet %s (%d): %v", name, id, err)
	}
	if _, err := testkit.Cloud(fx.t).WaitStatus(ctx, id, "active"); err != nil {
		fx.t.Fatalf("droplet %s did not become active: %v", name, err)
	}
	if _, err := droplet.WaitReady(ctx, fx.pool, fx.targets[name]); err != nil {
		fx.t.Fatalf("droplet %s did not answer after power on: %v", name, err)
	}
}

// swarmIDOn reads the swarm ID a manager's engine reports.
func (fx *swarmFixture) swarmIDOn(name string) string {
	fx.t.Helper()
	info, err := fx.info(name)
	if err != nil {
		fx.t.Fatal(err)
	}
	if info.Swarm.Cluster == nil {
		fx.t.Fatalf("%s is not a swarm manager after the failed apply (state %s)", name, info.Swarm.LocalNodeState)
	}
	return info.Swarm.Cluster.ID
}

// checkStillJoined checks that a worker the failed apply joined is still in the swarm.
func (fx *swarmFixture) checkStillJoined(name, swarmID string) {
	fx.t.Helper()
	info, err := fx.info(name)
	if err != nil {
		fx.t.Fatal(err)
	}
	if info.Swarm.LocalNodeState != dockerswarm.LocalNodeStateActive {
		fx.t.Fatalf("%s is in swarm state %s after the failed apply, want active (joined to %s)", name, info.Swarm.LocalNodeState, swarmID)
	}
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

// checkNoFailures ends the load: not one request failed, and at least min were sent.
func (fx *microserviceFixture) checkNoFailures(minRequests int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		rep := fx.load.Stop()
		fx.t.Logf("load through the faults: %s", rep)
		if rep.Failed != 0 {
			return fmt.Errorf("%d of %d requests failed: %v %v", rep.Failed, rep.Requests, rep.Errors, rep.Examples)
		}
		if rep.Requests < minRequests {
			return fmt.Errorf("only %d requests, want at least %d", rep.Requests, minRequests)
		}
		return nil
	}
}

type microserviceFixture struct {
	registratorFixture
	endpoints []string
	load      *loadgen.Run
	// proxies are the proxy containers by node, oldLoads and newLoads a port change's loads, one per node.
	proxies            map[string]string
	oldLoads, newLoads []*loadgen.Run
}

// proxyContainers lists the running proxy container of every node.
func (fx *microserviceFixture) proxyContainers() map[string]string {
	ctx, cancel := fx.ctx()
	defer cancel()
	out := map[string]string{}
	for key := range fx.targets {
		docker, err := fx.docker(key)
		if err != nil {
			fx.t.Fatal(err)
		}
		list, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name=accweb-proxy"))})
		if err != nil {
			fx.t.Fatal(err)
		}
		for _, c := range list {
			out[key] = c.ID
		}
	}
	return out
}

func (fx *microserviceFixture) recordProxies() { fx.proxies = fx.proxyContainers() }

// checkSameProxies: every node still runs the proxy container it ran before the step.
func (fx *microserviceFixture) checkSameProxies() resource.TestCheckFunc {
	return func(*terraform.State) error {
		now := fx.proxyContainers()
		if len(now) != len(fx.targets) || !maps.Equal(now, fx.proxies) {
			return fmt.Errorf("proxy containers were %v, now %v: the change restarted them", fx.proxies, now)
		}
		return nil
	}
}

// checkNewProxies: every node runs a proxy container it did not run before the step.
func (fx *microserviceFixture) checkNewProxies() resource.TestCheckFunc {
	return func(*terraform.State) error {
		// The last node's old proxy may still be finishing its requests (soft stop).
		var err error
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
			err = nil
			now := fx.proxyContainers()
			for key, id := range fx.proxies {
				if now[key] == "" || now[key] == id {
					err = fmt.Errorf("node %s: proxy container %q, before %q: the image change did not replace it", key, now[key], id)
				}
			}
			if err == nil || time.Now().After(deadline) {
				return err
			}
		}
	}
}

// checkChangeLoad ends the load: at least min requests were sent and none failed; when
// one did, every proxy's log is logged with it.
func (fx *microserviceFixture) checkChangeLoad(minRequests int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		rep := fx.load.Stop()
		fx.t.Logf("load through the change: %s", rep)
		if rep.Failed > 0 {
			fx.logProxyLogs()
			return fmt.Errorf("%d of %d requests failed: %v %v", rep.Failed, rep.Requests, rep.Errors, rep.Examples)
		}
		if rep.Requests < minRequests {
			return fmt.Errorf("only %d requests, want at least %d", rep.Requests, minRequests)
		}
		return nil
	}
}

// logProxyLogs logs what every proxy container on every node, running or stopped,
// logged (HAProxy logs its abnormal sessions only, with their termination state).
func (fx *microserviceFixture) logProxyLogs() {
	ctx, cancel := fx.ctx()
	defer cancel()
	for key := range fx.targets {
		docker, err := fx.docker(key)
		if err != nil {
			fx.t.Logf("node %s: %v", key, err)
			continue
		}
		// A name filter matches a part of the name: the proxy's and the stand-in's tasks.
		list, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", "accweb-proxy"))})
		if err != nil {
			fx.t.Logf("node %s: %v", key, err)
			continue
		}
		for _, c := range list {
			logs, err := docker.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Tail: "30"})
			if err != nil {
				fx.t.Logf("node %s, container %s: %v", key, c.Names, err)
				continue
			}
			var out bytes.Buffer
			_, _ = stdcopy.StdCopy(&out, &out, logs)
			_ = logs.Close()
			fx.t.Logf("node %s, %s (%s):\n%s", key, c.Names, c.State, out.String())
		}
	}
}

// checkNoStandIn: no node runs the proxy's stand-in any more.
func (fx *microserviceFixture) checkNoStandIn() resource.TestCheckFunc {
	return func(*terraform.State) error {
		ctx, cancel := fx.ctx()
		defer cancel()
		for key := range fx.targets {
			docker, err := fx.docker(key)
			if err != nil {
				return err
			}
			list, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name=accweb-proxy-standin"))})
			if err != nil {
				return err
			}
			if len(list) > 0 {
				return fmt.Errorf("node %s still runs the stand-in %s", key, list[0].ID)
			}
		}
		return nil
	}
}

// tagOnNodes tags image as tag in every node's engine.
func (fx *microserviceFixture) tagOnNodes(image, tag string) {
	ctx, cancel := fx.ctx()
	defer cancel()
	for key := range fx.targets {
		docker, err := fx.docker(key)
		if err == nil {
			err = docker.ImageTag(ctx, image, tag)
		}
		if err != nil {
			fx.t.Fatalf("tagging %s as %s on %s: %v", image, tag, key, err)
		}
	}
}

// startPortLoads loads the current endpoints and the same nodes on port newPort at once,
// each node's port with clients of its own: with clients shared by all nodes, a port that
// hangs on one node (the old one, once that node has handed over) would hold every client
// and leave the other nodes' ports unasked, so a moment in which no request was sent to a
// node would read as a gap in its answers.
func (fx *microserviceFixture) startPortLoads(newPort int) func() {
	return func() {
		start := func(target string) *loadgen.Run {
			run, err := loadgen.Start(context.Background(), loadgen.Options{Targets: []string{target}, Concurrency: 3, MaxRequests: 1_000_000,
				MaxDuration: 5 * time.Minute, DisableKeepAlive: true})
			if err != nil {
				fx.t.Fatal(err)
			}
			fx.t.Cleanup(func() { run.Stop() })
			return run
		}
		fx.oldLoads, fx.newLoads = nil, nil
		for _, ep := range fx.endpoints {
			u, err := url.Parse(ep)
			if err != nil {
				fx.t.Fatal(err)
			}
			fx.oldLoads = append(fx.oldLoads, start(ep))
			fx.newLoads = append(fx.newLoads, start("http://"+net.JoinHostPort(u.Hostname(), strconv.Itoa(newPort))))
		}
		time.Sleep(2 * time.Second)
	}
}

// stopLoads stops runs and returns their requests together.
func stopLoads(runs []*loadgen.Run) []loadgen.Result {
	var all []loadgen.Result
	for _, run := range runs {
		all = append(all, run.Stop().Results...)
	}
	return all
}

// checkPortHandover: on every node the new port answered before the old one last did,
// the old port failed nothing before that, and the new one nothing after. A port has
// answered when a request through it has ended well: a request that started earlier can
// still end well (its SYN met the new task's network before it was up and was sent again
// a second later) while the requests right after it are refused, as the proxy inside is
// not listening yet; that is before the port answered, not after.
func (fx *microserviceFixture) checkPortHandover() resource.TestCheckFunc {
	return func(*terraform.State) error {
		time.Sleep(2 * time.Second)
		oldResults, newResults := stopLoads(fx.oldLoads), stopLoads(fx.newLoads)
		host := func(target string) string { u, _ := url.Parse(target); return u.Hostname() }
		// firstNew is when the new port first answered on a node: the end of its first
		// request that ended well. That request may have begun with a SYN the new task's
		// network dropped while it was being wired, resent a second later (see the log
		// below), so the port came up somewhere between its start (newSince) and its end.
		firstNew, newSince, lastOld := map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}
		for _, r := range newResults {
			if h := host(r.Target); r.OK() && (firstNew[h].IsZero() || r.End.Before(firstNew[h])) {
				firstNew[h], newSince[h] = r.End, r.Start
			}
			if r.OK() && r.End.Sub(r.Start) > 500*time.Millisecond {
				fx.t.Logf("%s took %s on the new port (%s to %s)", r.Target, r.End.Sub(r.Start).Round(time.Millisecond),
					r.Start.Format(time.StampMilli), r.End.Format(time.StampMilli))
			}
		}
		for _, r := range oldResults {
			if h := host(r.Target); r.OK() && r.End.After(lastOld[h]) {
				lastOld[h] = r.End
			}
		}
		for _, r := range oldResults {
			if h := host(r.Target); !r.OK() && (firstNew[h].IsZero() || r.Start.Before(firstNew[h])) {
				return fmt.Errorf("%s failed on the old port before the new one answered: %s", r.Target, r.Err)
			}
		}
		var late []loadgen.Result
		for _, r := range newResults {
			if h := host(r.Target); !r.OK() && !firstNew[h].IsZero() && r.Start.After(firstNew[h]) {
				late = append(late, r)
			}
		}
		if len(late) > 0 {
			r := late[0]
			fx.logProxyLogs()
			return fmt.Errorf("%s failed on the new port at %s (%d failures until %s), after it first answered at %s: %s; %s", r.Target,
				r.Start.Format(time.StampMilli), len(late), late[len(late)-1].Start.Format(time.StampMilli), firstNew[host(r.Target)].Format(time.StampMilli),
				r.Err, fx.proxyTaskHistory())
		}
		// A gap in which neither port answered: proven when the old port last answered
		// before the new one's first good request even began, as each node's old port has
		// clients of its own that kept asking it (a request that hung there ended failed,
		// by its timeout, and is caught above). A shorter one is within that request's
		// resent SYN, when no client was sampling; any request that did fail in it is
		// caught above, on either port.
		for h, first := range firstNew {
			switch {
			case !newSince[h].Before(lastOld[h]):
				return fmt.Errorf("node %s: the old port last answered at %s, before the new port's first good request began at %s (it ended at %s)",
					h, lastOld[h].Format(time.StampMilli), newSince[h].Format(time.StampMilli), first.Format(time.StampMilli))
			case !first.Before(lastOld[h]):
				fx.t.Logf("node %s: the new port came up between %s and %s; the old one last answered at %s, and no request failed in between",
					h, newSince[h].Format(time.StampMilli), first.Format(time.StampMilli), lastOld[h].Format(time.StampMilli))
			default:
				fx.t.Logf("node %s: both ports answered for %s", h, lastOld[h].Sub(first).Round(time.Millisecond))
			}
		}
		if len(firstNew) != len(fx.endpoints) {
			return fmt.Errorf("the new port answered on %d of %d nodes", len(firstNew), len(fx.endpoints))
		}
		return nil
	}
}

func (fx *microserviceFixture) recordEndpoints(s *terraform.State) error {
	rs, ok := s.RootModule().Resources[microserviceResourceName]
	if !ok {
		return fmt.Errorf("%s not in state", microserviceResourceName)
	}
	fx.endpoints = nil
	for i := 0; ; i++ {
		v, ok := rs.Primary.Attributes[fmt.Sprintf("endpoints.%d", i)]
		if !ok {
			break
		}
		fx.endpoints = append(fx.endpoints, v)
	}
	if len(fx.endpoints) == 0 {
		return fmt.Errorf("no endpoints in state")
	}
	return nil
}

// checkAnswers asks every endpoint a few times: each answer is version.
func (fx *microserviceFixture) checkAnswers(version string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		c := http.Client{Timeout: 3 * time.Second}
		for _, ep := range fx.endpoints {
			for range 5 {
				resp, err := c.Get(ep + "/")
				if err != nil {
					return err
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(body), `"version":"`+version+`"`) {
					return fmt.Errorf("%s answered %d %s, want version %s", ep, resp.StatusCode, body, version)
				}
			}
		}
		return nil
	}
}

// startLoad starts the bounded load through every endpoint and marks the first switch.
func (fx *microserviceFixture) startLoad(mark string) func() {
	return fx.startLoadFor(mark, 200000, 4*time.Minute)
}

// startLoadFor is startLoad bounded by maxRequests and maxDuration.
func (fx *microserviceFixture) startLoadFor(mark string, maxRequests int, maxDuration time.Duration) func() {
	return func() {
		run, err := loadgen.Start(context.Background(), loadgen.Options{
			Targets: fx.endpoints, Concurrency: 16, MaxRequests: maxRequests, MaxDuration: maxDuration,
			// A new connection per request: no silent resend can hide a dropped one.
			DisableKeepAlive: true,
		})
		if err != nil {
			fx.t.Fatal(err)
		}
		fx.load = run
		fx.t.Logf("load %q started at %s", mark, time.Now().Format("15:04:05.000"))
		fx.t.Cleanup(func() { run.Stop() })
		// Some load before the switch, so "not before" has something to say.
		time.Sleep(3 * time.Second)
		run.Mark(mark)
	}
}

func (fx *microserviceFixture) mark(name string) func() {
	return func() { fx.load.Mark(name) }
}

func (fx *microserviceFixture) markDone(name string) resource.TestCheckFunc {
	return func(*terraform.State) error { fx.load.Mark(name); return nil }
}

// checkLoad ends the load: no request failed, v2 answered only after the switch to green
// began and v1 only after the switch back began, and enough requests were sent.
func (fx *microserviceFixture) checkLoad() resource.TestCheckFunc {
	return func(*terraform.State) error {
		time.Sleep(3 * time.Second)
		// On a slow machine the switches take fewer requests: the load goes on (after
		// them, on blue) until it has sent the 20000 that make "0 failed" mean something.
		deadline := time.Now().Add(30 * time.Second)
		for len(fx.load.Results(19999)) == 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		rep := fx.load.Stop()
		fx.t.Logf("load through the switches: %s", rep)
		if rep.Failed != 0 {
			return fmt.Errorf("%d of %d requests failed: %v %v", rep.Failed, rep.Requests, rep.Errors, rep.Examples)
		}
		if rep.RatePerSecond < 200 || rep.Requests < 20000 {
			return fmt.Errorf("%d requests at %.0f/s, want at least 20000 at 200/s or more", rep.Requests, rep.RatePerSecond)
		}
		if err := rep.ChangedOnlyAfter("to-green", "1.0.0", "2.0.0"); err != nil {
			return err
		}
		toGreen, toBlue := rep.Marks["to-green"], rep.Marks["to-blue"]
		greenDone := rep.Marks["to-green-done"]
		for _, r := range rep.Results {
			switch {
			case !r.OK():
			case r.End.Before(toGreen) && r.Version != "1.0.0":
				return fmt.Errorf("%s answered before the switch to green began", r.Version)
			case r.Start.After(greenDone) && r.End.Before(toBlue) && r.Version != "2.0.0":
				return fmt.Errorf("%s answered between the switches", r.Version)
			}
		}
		if first, ok := rep.FirstAfter("to-green", "2.0.0"); ok {
			fx.t.Logf("first v2 answer %s after the switch step began (terraform plan and refresh included)", first)
		}
		return nil
	}
}

// containersOf lists the containers of a version of the app on every node.
func (fx *microserviceFixture) containersOf(ctx context.Context, version string) []nodeContainer {
	fx.t.Helper()
	var out []nodeContainer
	for key := range fx.targets {
		docker, err := fx.docker(key)
		if err != nil {
			fx.t.Fatal(err)
		}
		list, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "microswarm.version="+version))})
		if err != nil {
			fx.t.Fatal(err)
		}
		for _, c := range list {
			out = append(out, nodeContainer{docker: docker, id: c.ID, created: c.Created})
		}
	}
	// Oldest first: fx.targets is a map, so the order was random, and a test that fails
	// "one instance" wants one that every earlier read saw passing, not a task the swarm
	// started a moment ago in place of one on a node that went away. (A data source's
	// ledger gives an instance never seen passing a grace period; a CI mimic's selfHealing
	// run on 2026-12-05 most likely failed that way: one ledger moved, the other did not.)
	slices.SortStableFunc(out, func(a, b nodeContainer) int { return cmp.Compare(a.created, b.created) })
	return out
}

// tellFail makes the demo app in a container fail its health check from now on.
func (fx *microserviceFixture) tellFail(ctx context.Context, c nodeContainer) {
	fx.t.Helper()
	exec, err := c.docker.ContainerExecCreate(ctx, c.id, container.ExecOptions{Cmd: []string{"/demo-app", "-post", "http://127.0.0.1:8080/fail"}})
	if err == nil {
		err = c.docker.ContainerExecStart(ctx, exec.ID, container.ExecStartOptions{})
	}
	if err != nil {
		fx.t.Fatal(err)
	}
}

// failColor makes every instance of a version fail its health check.
func (fx *microserviceFixture) failColor(version string) func() {
	return func() {
		ctx, cancel := fx.ctx()
		for _, c := range fx.containersOf(ctx, version) {
			fx.tellFail(ctx, c)
		}
		cancel()
		// Until Consul sees them critical (the gate reads Consul and the proxies).
		ctx, cancel = fx.ctx()
		defer cancel()
		err := wait.Until(ctx, wait.Options{What: "green critical in Consul", Interval: 200 * time.Millisecond}, func(context.Context) (bool, string, error) {
			now, err := fx.instances()
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			for _, e := range now {
				if slices.Contains(e.Service.Tags, "version="+version) && passing(e) {
					return false, e.Service.ID + " still passing", nil
				}
			}
			return true, "", nil
		})
		if err != nil {
			fx.t.Fatal(err)
		}
	}
}

// driftOutOfBand switches every proxy to color through its admin socket, as an operator
// at a shell could, and scales blue down to one task.
func (fx *microserviceFixture) driftOutOfBand(color string) func() {
	return func() {
		fx.setActiveOn(color, "m", "w1", "w2")
		if err := fx.checkAnswers("2.0.0")(nil); err != nil {
			fx.t.Fatal(err)
		}
		ctx, cancel := fx.ctx()
		defer cancel()
		docker, err := fx.docker("m")
		if err != nil {
			fx.t.Fatal(err)
		}
		svc, _, err := docker.ServiceInspectWithRaw(ctx, "accweb-blue", dockerswarm.ServiceInspectOptions{})
		if err != nil {
			fx.t.Fatal(err)
		}
		one := uint64(1)
		svc.Spec.Mode.Replicated.Replicas = &one
		if _, err := docker.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, dockerswarm.ServiceUpdateOptions{}); err != nil {
			fx.t.Fatal(err)
		}
	}
}

// setActiveOn switches the proxies of the nodes named to color through their admin
// sockets, as an operator at a shell could, or as a switch killed mid-flip leaves them.
func (fx *microserviceFixture) setActiveOn(color string, keys ...string) {
	ctx, cancel := fx.ctx()
	defer cancel()
	for _, key := range keys {
		h, err := fx.pool.Open(ctx, fx.targets[key])
		if err != nil {
			fx.t.Fatal(err)
		}
		client := &haproxy.Client{Dial: func(ctx context.Context) (net.Conn, error) {
			return h.DialContext(ctx, "unix", "/var/lib/microswarm/proxy/accweb/admin.sock")
		}}
		if err := client.SetActive(ctx, "/var/lib/haproxy-bg/bluegreen.map", haproxy.Color(color)); err != nil {
			fx.t.Fatal(err)
		}
	}
}

// restartColor kills every container of a version; swarm starts fresh ones.
func (fx *microserviceFixture) restartColor(version string) func() {
	return func() {
		ctx, cancel := fx.ctx()
		defer cancel()
		for _, c := range fx.containersOf(ctx, version) {
			if err := c.docker.ContainerKill(ctx, c.id, "SIGKILL"); err != nil {
				fx.t.Fatal(err)
			}
		}
	}
}

// awaitPassing waits until n instances of the app pass in Consul.
func (fx *microserviceFixture) awaitPassing(n int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		_, err := fx.awaitInstances(2*time.Minute, n)
		return err
	}
}

// checkCanaryShare sends 2000 requests and checks color's share.
func (fx *microserviceFixture) checkCanaryShare(color string, want, tolerance float64) resource.TestCheckFunc {
	return func(*terraform.State) error {
		run, err := loadgen.Start(context.Background(), loadgen.Options{Targets: fx.endpoints, Concurrency: 4, MaxRequests: 2000, MaxDuration: time.Minute, DisableKeepAlive: true})
		if err != nil {
			return err
		}
		rep := run.Wait()
		share := rep.Share(color)
		fx.t.Logf("canary: %.1f%% of %d answers from %s (%d failed)", 100*share, rep.Requests, color, rep.Failed)
		if rep.Failed != 0 || share < want-tolerance || share > want+tolerance {
			return fmt.Errorf("%s answered %.1f%% of %d requests (%d failed), want %.0f%% ± %.0f", color, 100*share, rep.Requests, rep.Failed, 100*want, 100*tolerance)
		}
		return nil
	}
}

type healFixture struct {
	microserviceFixture
	workerIDs   []string
	workerNames []string
	failedID    string
	blueToken   string
	tokens      []int
	appTokens   map[string]int
	powerOffAt  time.Time
}

// recordAppTokens remembers the app's tokens as terraform_data.app_health holds them.
func (fx *healFixture) recordAppTokens(s *terraform.State) error {
	got, err := appTokensOf(s)
	fx.appTokens = got
	return err
}

// checkAppTokens: both app tokens moved by exactly moved since they were recorded.
func (fx *healFixture) checkAppTokens(moved int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		got, err := appTokensOf(s)
		if err != nil {
			return err
		}
		for k, before := range fx.appTokens {
			if got[k] != before+moved {
				return fmt.Errorf("the %s token went %d -> %d, want %d", k, before, got[k], before+moved)
			}
		}
		fx.appTokens = got
		return nil
	}
}

// recordTokens remembers the tokens the workers' terraform_data follow.
func (fx *healFixture) recordTokens(s *terraform.State) error {
	fx.tokens = nil
	for i := range 2 {
		rs, ok := s.RootModule().Resources[fmt.Sprintf("terraform_data.worker_health.%d", i)]
		if !ok {
			return fmt.Errorf("terraform_data.worker_health[%d] not in state", i)
		}
		n, err := strconv.Atoi(rs.Primary.Attributes["input"])
		if err != nil {
			return fmt.Errorf("worker %d token %q: %w", i, rs.Primary.Attributes["input"], err)
		}
		fx.tokens = append(fx.tokens, n)
	}
	return nil
}

// checkTokenMovedOnce: the failed worker's token moved by one, the other's not at all.
func (fx *healFixture) checkTokenMovedOnce(failed int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		before := fx.tokens
		if err := fx.recordTokens(s); err != nil {
			return err
		}
		for i := range before {
			want := before[i]
			if i == failed {
				want++
			}
			if fx.tokens[i] != want {
				return fmt.Errorf("worker %d token %d -> %d, want %d", i, before[i], fx.tokens[i], want)
			}
		}
		return nil
	}
}

func (fx *healFixture) recordWorkers(s *terraform.State) error {
	fx.workerIDs, fx.workerNames = nil, nil
	for i := range 2 {
		rs, ok := s.RootModule().Resources[fmt.Sprintf("microswarm_droplet_node.w.%d", i)]
		if !ok {
			return fmt.Errorf("worker %d not in state", i)
		}
		fx.workerIDs = append(fx.workerIDs, rs.Primary.ID)
		fx.workerNames = append(fx.workerNames, rs.Primary.Attributes["name"])
	}
	return nil
}

// powerOffWorker powers a worker off through the cloud's API, as a failure would, and
// waits until Consul sees it failed: the next plan reads what a scheduled run sees.
func (fx *healFixture) powerOffWorker(i int) func() {
	return func() {
		t := fx.t
		ctx, cancel := fx.ctx()
		defer cancel()
		id, err := strconv.Atoi(fx.workerIDs[i])
		if err != nil {
			t.Fatal(err)
		}
		fx.powerOffAt = time.Now()
		if _, _, err := testkit.Godo(t).DropletActions.PowerOff(ctx, id); err != nil {
			t.Fatalf("powering off %s: %v", fx.workerNames[i], err)
		}
		if _, err := testkit.Cloud(t).WaitStatus(ctx, id, "off"); err != nil {
			t.Fatal(err)
		}
		api, err := fx.consul("m")
		if err != nil {
			t.Fatal(err)
		}
		err = wait.Until(ctx, wait.Options{What: fx.workerNames[i] + " failed in Consul", Interval: 250 * time.Millisecond}, func(context.Context) (bool, string, error) {
			members, err := api.Agent().Members(false)
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			for _, m := range members {
				if m.Name == fx.workerNames[i] {
					return m.Status == 4, fmt.Sprintf("member status %d", m.Status), nil
				}
			}
			return false, "not a member", nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Not waiting for swarm to see the node down as well: a scheduled run comes when it
		// comes, and the replacement may get the old addresses back.
	}
}

// checkWorkerReplaced: a new droplet carries the worker's name.
func (fx *healFixture) checkWorkerReplaced(i int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[fmt.Sprintf("microswarm_droplet_node.w.%d", i)]
		if !ok {
			return fmt.Errorf("worker %d not in state", i)
		}
		if rs.Primary.ID == fx.workerIDs[i] {
			return fmt.Errorf("worker %d is still droplet %s", i, rs.Primary.ID)
		}
		fx.t.Logf("%s: droplet %s replaced by %s; power-off to healed apply: %s", fx.workerNames[i], fx.workerIDs[i], rs.Primary.ID,
			time.Since(fx.powerOffAt).Round(time.Second))
		if _, err := testkit.Cloud(fx.t).Get(context.Background(), mustAtoi(fx.workerIDs[i])); err == nil {
			return fmt.Errorf("the off droplet %s still exists", fx.workerIDs[i])
		}
		return fx.recordWorkers(s)
	}
}

// checkClusterWhole: the swarm lists exactly its nodes, all ready; Consul has every node
// alive and no failed or left member; every node is in the catalog once.
func (fx *healFixture) checkClusterWhole(nodes int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		ctx, cancel := fx.ctx()
		defer cancel()
		docker, err := fx.docker("m")
		if err != nil {
			return err
		}
		list, err := docker.NodeList(ctx, dockerswarm.NodeListOptions{})
		if err != nil {
			return err
		}
		var ready []string
		for _, n := range list {
			if n.Status.State != dockerswarm.NodeStateReady {
				return fmt.Errorf("swarm node %s (%s) is %s: a dead node was left in the node list", n.ID, n.Description.Hostname, n.Status.State)
			}
			ready = append(ready, n.Description.Hostname)
		}
		if len(ready) != nodes {
			return fmt.Errorf("swarm nodes %v, want %d", ready, nodes)
		}
		api, err := fx.consul("m")
		if err != nil {
			return err
		}
		members, err := api.Agent().Members(false)
		if err != nil {
			return err
		}
		var alive []string
		for _, m := range members {
			if m.Status != 1 {
				return fmt.Errorf("consul member %s (%s) has status %d: a dead member was left", m.Name, m.Addr, m.Status)
			}
			alive = append(alive, m.Name)
		}
		if len(alive) != nodes {
			return fmt.Errorf("consul members %v, want %d", alive, nodes)
		}
		catalog, _, err := api.Catalog().Nodes(nil)
		if err != nil {
			return err
		}
		if len(catalog) != nodes {
			return fmt.Errorf("consul catalog has %d nodes, want %d", len(catalog), nodes)
		}
		// Each worker's own checks (not the instances on it, checked below) pass once
		// gossip has settled after the heal.
		for _, name := range fx.workerNames {
			var st string
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
				checks, _, err := api.Health().Node(name, nil)
				if err != nil {
					return err
				}
				var own consulapi.HealthChecks
				for _, c := range checks {
					if c.ServiceID == "" {
						own = append(own, c)
					}
				}
				if st = own.AggregatedStatus(); st == consulapi.HealthPassing || time.Now().After(deadline) {
					break
				}
			}
			if st != consulapi.HealthPassing {
				return fmt.Errorf("node %s is %s in Consul", name, st)
			}
		}
		// Every replica of the active color passes.
		_, err = fx.awaitInstancesTagged("blue", 3, time.Minute)
		return err
	}
}

// awaitInstancesTagged waits until want instances with tag pass in Consul.
func (fx *healFixture) awaitInstancesTagged(tag string, want int, within time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var ids []string
	err := wait.Until(ctx, wait.Options{What: fmt.Sprintf("%d passing %s instances", want, tag), Interval: 250 * time.Millisecond}, func(context.Context) (bool, string, error) {
		got, err := fx.instances()
		if err != nil {
			return false, "", wait.Retryable(err)
		}
		ids = ids[:0]
		total := 0
		for id, e := range got {
			if !slices.Contains(e.Service.Tags, tag) {
				continue
			}
			total++
			if passing(e) {
				ids = append(ids, id)
			}
		}
		return total == want && len(ids) == want, fmt.Sprintf("%d of %d passing", len(ids), total), nil
	})
	return ids, err
}

// failOneInstance starts load through the proxy, then tells one instance of version to
// fail its health check, and waits until Consul says it is critical.
func (fx *healFixture) failOneInstance(version string) func() {
	return func() {
		t := fx.t
		fx.startLoad("fail")()
		ctx, cancel := fx.ctx()
		defer cancel()
		containers := fx.containersOf(ctx, version)
		if len(containers) == 0 {
			t.Fatalf("no container of version %s on any node", version)
		}
		fx.tellFail(ctx, containers[0])
		err := wait.Until(ctx, wait.Options{What: "the failed instance critical in Consul", Interval: 200 * time.Millisecond}, func(context.Context) (bool, string, error) {
			now, err := fx.instances()
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			var failing []string
			for id, e := range now {
				if !passing(e) {
					failing = append(failing, id)
				}
			}
			if len(failing) > 1 {
				return false, "", fmt.Errorf("more than the one failed instance is critical: %v", failing)
			}
			if len(failing) == 1 {
				fx.failedID = failing[0]
			}
			return len(failing) == 1, "all passing", nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkFailingNamed: the data source names the failed instance and moved its token.
func (fx *healFixture) checkFailingNamed(name string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[name]
		if !ok {
			return fmt.Errorf("%s not in state", name)
		}
		failing := rs.Primary.Attributes["failing.0"]
		if !strings.HasSuffix(failing, "/"+fx.failedID) {
			return fmt.Errorf("failing %q does not name the failed instance %s", failing, fx.failedID)
		}
		for i := 0; ; i++ {
			id, ok := rs.Primary.Attributes[fmt.Sprintf("instances.%d.id", i)]
			if !ok {
				return fmt.Errorf("instance %s not listed", fx.failedID)
			}
			if id == fx.failedID {
				if st := rs.Primary.Attributes[fmt.Sprintf("instances.%d.status", i)]; st != "critical" {
					return fmt.Errorf("instance %s is %s, want critical", id, st)
				}
				break
			}
		}
		fx.blueToken = rs.Primary.Attributes["replace_token"]
		if fx.blueToken == "0" || fx.blueToken == "" {
			return fmt.Errorf("replace_token %q did not move on the failure", fx.blueToken)
		}
		return nil
	}
}

// awaitReplaced waits until swarm has replaced the failed instance and three pass again.
func (fx *healFixture) awaitReplaced() func() {
	return func() {
		ids, err := fx.awaitInstancesTagged("blue", 3, 3*time.Minute)
		if err != nil {
			fx.t.Fatal(err)
		}
		if slices.Contains(ids, fx.failedID) {
			fx.t.Fatalf("the failed instance %s passes again without being replaced", fx.failedID)
		}
	}
}

func (fx *healFixture) checkTokenKept(name string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[name]
		if !ok {
			return fmt.Errorf("%s not in state", name)
		}
		if got := rs.Primary.Attributes["replace_token"]; got != fx.blueToken {
			return fmt.Errorf("replace_token moved on recovery: %s -> %s", fx.blueToken, got)
		}
		return nil
	}
}

func (fx *healFixture) checkNoFailedRequest() resource.TestCheckFunc {
	return func(*terraform.State) error {
		rep := fx.load.Stop()
		fx.t.Logf("load through the instance failure and its replacement: %s", rep)
		if rep.Failed != 0 {
			return fmt.Errorf("%d of %d requests failed: %v %v", rep.Failed, rep.Requests, rep.Errors, rep.Examples)
		}
		if rep.Requests < 1000 {
			return fmt.Errorf("only %d requests", rep.Requests)
		}
		return nil
	}
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
