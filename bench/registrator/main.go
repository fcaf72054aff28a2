// Command registrator measures, on the `make demo` cluster, how fast the registrator
// follows swarm tasks: the delay from a task reaching `running` to its registration in
// the Consul catalog (median and p95 over -starts task starts), and, on a stop, how long
// before the container died its registration was gone.
//
//	go run ./bench/registrator -state .demo/terraform.tfstate -key .demo/id_ed25519 -consul .demo/consul
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/swarmservice"
	"github.com/microswarm/terraform-provider-microswarm/internal/tfstate"
)

const (
	app     = "bench-reg"
	image   = "microswarm/demo-app:1.0.0"
	perSpin = 10
	// pollEvery bounds the measurement's resolution.
	pollEvery = 10 * time.Millisecond
)

func main() {
	statePath := flag.String("state", ".demo/terraform.tfstate", "the demo's terraform.tfstate")
	keyPath := flag.String("key", ".demo/id_ed25519", "the demo's SSH private key")
	consulDir := flag.String("consul", ".demo/consul", "the demo's Consul CA, certificate, key and management token (democheck -consul-secrets); empty: plain HTTP, no token")
	starts := flag.Int("starts", 30, "task starts to measure (in rounds of 10)")
	flag.Parse()
	if err := run(*statePath, *keyPath, *consulDir, *starts); err != nil {
		fmt.Fprintln(os.Stderr, "registrator bench:", err)
		os.Exit(1)
	}
}

type cluster struct {
	manager *client.Client
	nodes   map[string]*client.Client // by hostname
	catalog *consulapi.Health
}

func run(statePath, keyPath, consulDir string, starts int) error {
	state, err := tfstate.Read(statePath)
	if err != nil {
		return err
	}
	pool, err := tfstate.PoolFromKeyFile(keyPath)
	if err != nil {
		return err
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	c := cluster{nodes: map[string]*client.Client{}}
	target, err := state.Manager()
	if err != nil {
		return err
	}
	h, err := pool.Open(ctx, target)
	if err != nil {
		return err
	}
	if c.manager, err = h.Docker(); err != nil {
		return err
	}
	cfg, err := tfstate.ConsulConfig(consulDir)
	if err != nil {
		return err
	}
	api, err := h.Consul(cfg)
	if err != nil {
		return err
	}
	c.catalog = api.Health()
	for name, t := range state.Nodes() {
		nh, err := pool.Open(ctx, t)
		if err != nil {
			return err
		}
		if c.nodes[name], err = nh.Docker(); err != nil {
			return err
		}
	}
	if _, err := c.manager.NetworkInspect(ctx, app, network.InspectOptions{}); err != nil {
		if _, err := c.manager.NetworkCreate(ctx, app, network.CreateOptions{Driver: "overlay", Attachable: true}); err != nil {
			return err
		}
	}

	var latencies []time.Duration
	for round := 0; len(latencies) < starts; round++ {
		got, err := c.measureStarts(ctx, fmt.Sprintf("%s-%d", app, round))
		if err != nil {
			return err
		}
		latencies = append(latencies, got...)
	}
	leads, afterSignal, err := c.measureStops(ctx, app+"-stop")
	if err != nil {
		return err
	}
	fmt.Printf("registration after a task reaches running, %d task starts: median %s, p95 %s, max %s\n",
		len(latencies), pct(latencies, 50), pct(latencies, 95), pct(latencies, 100))
	fmt.Printf("deregistration on a stop (scale to 0; the app drains 2 s after SIGTERM), %d tasks: median %s after the scale-down call, median %s before the container died (min %s)\n",
		len(leads), pct(afterSignal, 50), pct(leads, 50), pct(leads, 0))
	return nil
}

// spec is a replicated dnsrr service of the demo app on the bench overlay, without a
// HEALTHCHECK, so `running` is the moment its container started.
func spec(name string, replicas uint64, env []string) swarm.ServiceSpec {
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:       image,
				Env:         env,
				Labels:      map[string]string{"SERVICE_NAME": name},
				Healthcheck: &container.HealthConfig{Test: []string{"NONE"}},
			},
			Networks: []swarm.NetworkAttachmentConfig{{Target: app}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
}

// registered polls the catalog: task ID -> first time seen.
func (c cluster) registered(name string, seen map[string]time.Time) (int, error) {
	entries, _, err := c.catalog.Service(name, "", false, nil)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	for _, e := range entries {
		id := e.Service.Meta["swarm_task_id"]
		if _, ok := seen[id]; !ok && id != "" {
			seen[id] = now
		}
	}
	return len(entries), nil
}

// measureStarts starts perSpin tasks and returns, per task, registration time minus
// the time swarm recorded it running.
func (c cluster) measureStarts(ctx context.Context, name string) ([]time.Duration, error) {
	created, err := c.manager.ServiceCreate(ctx, spec(name, perSpin, nil), swarm.ServiceCreateOptions{})
	if err != nil {
		return nil, err
	}
	defer func() { _ = swarmservice.Remove(context.WithoutCancel(ctx), c.manager, created.ID) }()
	seen := map[string]time.Time{}
	deadline := time.Now().Add(2 * time.Minute)
	for len(seen) < perSpin {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: %d of %d tasks registered after 2 minutes", name, len(seen), perSpin)
		}
		if _, err := c.registered(name, seen); err != nil {
			return nil, err
		}
		time.Sleep(pollEvery)
	}
	tasks, err := c.manager.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", created.ID))})
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for _, t := range tasks {
		if at, ok := seen[t.ID]; ok && t.Status.State == swarm.TaskStateRunning {
			out = append(out, at.Sub(t.Status.Timestamp))
		}
	}
	return out, nil
}

// measureStops runs perSpin tasks that keep serving 2 s after SIGTERM, scales them to
// zero, and returns per task how long before the container died its registration was
// gone, and how long after the stop began.
func (c cluster) measureStops(ctx context.Context, name string) (leads, afterSignal []time.Duration, err error) {
	created, err := c.manager.ServiceCreate(ctx, spec(name, perSpin, []string{"SHUTDOWN_DELAY=2s"}), swarm.ServiceCreateOptions{})
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = swarmservice.Remove(context.WithoutCancel(ctx), c.manager, created.ID) }()
	seen := map[string]time.Time{}
	for n := 0; n < perSpin; {
		if n, err = c.registered(name, seen); err != nil {
			return nil, nil, err
		}
		time.Sleep(pollEvery)
	}
	tasks, err := c.manager.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", created.ID))})
	if err != nil {
		return nil, nil, err
	}
	svc, _, err := c.manager.ServiceInspectWithRaw(ctx, created.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		return nil, nil, err
	}
	zero := uint64(0)
	svc.Spec.Mode.Replicated.Replicas = &zero
	stopAt := time.Now()
	if _, err := c.manager.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		return nil, nil, err
	}
	gone := map[string]time.Time{}
	for len(gone) < len(tasks) && time.Since(stopAt) < time.Minute {
		entries, _, err := c.catalog.Service(name, "", false, nil)
		if err != nil {
			return nil, nil, err
		}
		present := map[string]bool{}
		for _, e := range entries {
			present[e.Service.Meta["swarm_task_id"]] = true
		}
		for _, t := range tasks {
			if _, done := gone[t.ID]; !done && !present[t.ID] {
				gone[t.ID] = time.Now()
			}
		}
		time.Sleep(pollEvery)
	}
	nodeNames := map[string]string{}
	nodes, err := c.manager.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, nil, err
	}
	for _, n := range nodes {
		nodeNames[n.ID] = n.Description.Hostname
	}
	for _, t := range tasks {
		docker := c.nodes[nodeNames[t.NodeID]]
		if docker == nil || t.Status.ContainerStatus == nil {
			continue
		}
		if _, ok := gone[t.ID]; !ok {
			return nil, nil, fmt.Errorf("task %s still registered a minute after the stop", t.ID)
		}
		var inspect container.InspectResponse
		for i := 0; i < 600; i++ { // until the container has died, at most a minute
			if inspect, err = docker.ContainerInspect(ctx, t.Status.ContainerStatus.ContainerID); err != nil || !inspect.State.Running {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if cerrdefs.IsNotFound(err) {
			continue // swarm already removed the stopped container: its death time is gone with it
		}
		if err != nil {
			return nil, nil, err
		}
		died, err := time.Parse(time.RFC3339Nano, inspect.State.FinishedAt)
		if err != nil {
			return nil, nil, err
		}
		leads = append(leads, died.Sub(gone[t.ID]))
		afterSignal = append(afterSignal, gone[t.ID].Sub(stopAt))
	}
	return leads, afterSignal, nil
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s) + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return s[i].Round(time.Millisecond)
}
