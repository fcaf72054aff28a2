// Command bluegreen measures, on the `make demo` cluster, what a blue/green switch of the
// demo app costs under load: requests, failed requests, the switch step's latency (the
// gate and the flip of every proxy, to the first answer of the new color), the rollback
// latency (the same step back), and the whole `terraform apply` of a switch.
//
//	go run ./bench/bluegreen -state .demo/terraform.tfstate -key .demo/id_ed25519 -consul .demo/consul
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/bluegreen"
	"github.com/microswarm/terraform-provider-microswarm/internal/haproxy"
	"github.com/microswarm/terraform-provider-microswarm/internal/loadgen"
	"github.com/microswarm/terraform-provider-microswarm/internal/tfstate"
)

func main() {
	statePath := flag.String("state", ".demo/terraform.tfstate", "the demo's terraform.tfstate")
	keyPath := flag.String("key", ".demo/id_ed25519", "the demo's SSH private key")
	consulDir := flag.String("consul", ".demo/consul", "the demo's Consul CA, certificate, key and management token (democheck -consul-secrets); empty: plain HTTP, no token")
	flag.Parse()
	if err := run(*statePath, *keyPath, *consulDir); err != nil {
		fmt.Fprintln(os.Stderr, "bluegreen bench:", err)
		os.Exit(1)
	}
}

// The demo app's versions by color (examples/local).
var versions = map[bluegreen.Color]string{bluegreen.Blue: "1.0.0", bluegreen.Green: "2.0.0"}

type app struct {
	endpoints []string
	proxies   []bluegreen.Proxy
	health    bluegreen.Health
	routeFile bluegreen.MapFiles
}

func run(statePath, keyPath, consulDir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	a, err := reach(ctx, statePath, keyPath, consulDir)
	if err != nil {
		return err
	}
	live, err := bluegreen.CurrentRoute(ctx, a.proxies)
	if err != nil {
		return err
	}
	other := live.Active.Other()

	// The switch step itself, as the provider runs it (gate, persist, flip), and back.
	rep, took, err := a.underLoad(ctx, "switch", func() error { return a.switchStep(ctx, live.Active, other) })
	if err != nil {
		return err
	}
	first, _ := rep.FirstAfter("switch", versions[other])
	fmt.Printf("switch step %s -> %s: first %s answer %s after the step began (step %s); %d requests at %.0f/s, %d failed\n",
		live.Active, other, other, first.Round(time.Millisecond), took.Round(time.Millisecond), rep.Requests, rep.RatePerSecond, rep.Failed)
	rep, took, err = a.underLoad(ctx, "rollback", func() error { return a.switchStep(ctx, other, live.Active) })
	if err != nil {
		return err
	}
	first, _ = rep.FirstAfter("rollback", versions[live.Active])
	fmt.Printf("rollback step %s -> %s: first %s answer %s after the step began (step %s); %d requests at %.0f/s, %d failed\n",
		other, live.Active, live.Active, first.Round(time.Millisecond), took.Round(time.Millisecond), rep.Requests, rep.RatePerSecond, rep.Failed)

	// A switch and the rollback inside one sustained load of at least 100,000 requests.
	if err := a.sustained(ctx, live.Active, other, 100000); err != nil {
		return err
	}

	// A proxy configuration change: every proxy saves its servers' state and reloads in
	// place through its master CLI, as the provider does for a changed haproxy.cfg.
	rep, took, err = a.underLoad(ctx, "reload", func() error {
		for _, n := range a.routeFile.Nodes {
			if err := n.Reload(ctx); err != nil {
				return fmt.Errorf("reloading the proxy on %s: %w", n.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("proxy reload on every node, one after another (step %s): %d requests at %.0f/s, %d failed\n",
		took.Round(time.Millisecond), rep.Requests, rep.RatePerSecond, rep.Failed)

	// The whole apply a user runs, there and back.
	for _, to := range []bluegreen.Color{other, live.Active} {
		rep, took, err = a.underLoad(ctx, "apply", func() error {
			cmd := exec.CommandContext(ctx, "tools/demo.sh", "switch", string(to))
			// This bench brings its own load: none from demo.sh's live view.
			cmd.Env = append(os.Environ(), "MICROSWARM_DEMO_LOAD=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("tools/demo.sh switch %s: %w\n%s", to, err, out)
			}
			return nil
		})
		if err != nil {
			return err
		}
		first, _ = rep.FirstAfter("apply", versions[to])
		fmt.Printf("terraform apply (make demo-switch) to %s: %s in all, first %s answer %s after it began; %d requests at %.0f/s, %d failed\n",
			to, took.Round(100*time.Millisecond), to, first.Round(time.Millisecond), rep.Requests, rep.RatePerSecond, rep.Failed)
	}
	return nil
}

// underLoad runs step while the load runs through every endpoint, from 1 s before to
// 1 s after it, and fails on any failed request.
func (a *app) underLoad(ctx context.Context, mark string, step func() error) (loadgen.Report, time.Duration, error) {
	load, err := loadgen.Start(ctx, loadgen.Options{Targets: a.endpoints, Concurrency: 8, MaxRequests: 1000000,
		MaxDuration: 5 * time.Minute, DisableKeepAlive: true})
	if err != nil {
		return loadgen.Report{}, 0, err
	}
	time.Sleep(time.Second)
	load.Mark(mark)
	start := time.Now()
	err = step()
	took := time.Since(start)
	time.Sleep(time.Second)
	rep := load.Stop()
	if err != nil {
		return rep, took, err
	}
	if rep.Failed != 0 {
		return rep, took, fmt.Errorf("%s: %d of %d requests failed: %v", mark, rep.Failed, rep.Requests, rep.Examples)
	}
	return rep, took, nil
}

// sustained runs one load through every endpoint until it has sent at least total
// requests, switching to `to` once a third were sent and back once two thirds were, and
// fails on any failed request.
func (a *app) sustained(ctx context.Context, from, to bluegreen.Color, total int) error {
	load, err := loadgen.Start(ctx, loadgen.Options{Targets: a.endpoints, Concurrency: 8, MaxRequests: total,
		MaxDuration: 10 * time.Minute, DisableKeepAlive: true})
	if err != nil {
		return err
	}
	// Results(n-1) is empty until the n-th request ended; a load that ends first ends the wait.
	awaitCount := func(n int) {
		for len(load.Results(n-1)) == 0 {
			select {
			case <-load.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	awaitCount(total / 3)
	load.Mark("switch")
	if err := a.switchStep(ctx, from, to); err != nil {
		load.Stop()
		return err
	}
	awaitCount(2 * total / 3)
	load.Mark("rollback")
	if err := a.switchStep(ctx, to, from); err != nil {
		load.Stop()
		return err
	}
	rep := load.Wait()
	fmt.Printf("switch %s -> %s and rollback inside one load: %d requests at %.0f/s, %d failed\n",
		from, to, rep.Requests, rep.RatePerSecond, rep.Failed)
	if rep.Failed != 0 {
		return fmt.Errorf("sustained: %d of %d requests failed: %v", rep.Failed, rep.Requests, rep.Examples)
	}
	return nil
}

func (a *app) switchStep(ctx context.Context, from, to bluegreen.Color) error {
	_, err := bluegreen.Switch(ctx, a.health, a.proxies, bluegreen.Route{Active: from}, bluegreen.Route{Active: to},
		bluegreen.SwitchOptions{MinHealthy: 2, Persist: a.routeFile.Persist})
	return err
}

// reach finds the demo app's proxies and Consul in the state, through the nodes' SSH.
func reach(ctx context.Context, statePath, keyPath, consulDir string) (*app, error) {
	state, err := tfstate.Read(statePath)
	if err != nil {
		return nil, err
	}
	pool, err := tfstate.PoolFromKeyFile(keyPath)
	if err != nil {
		return nil, err
	}
	instances := state.Instances("microswarm_microservice")
	if len(instances) == 0 {
		return nil, fmt.Errorf("no microswarm_microservice in %s", statePath)
	}
	attrs := instances[0]
	name, _ := attrs["name"].(string)
	a := &app{}
	endpoints, _ := attrs["endpoints"].([]any)
	for _, ep := range endpoints {
		if s, ok := ep.(string); ok {
			a.endpoints = append(a.endpoints, s)
		}
	}
	manager, err := pool.Open(ctx, tfstate.Target(attrs, "host", "host_key"))
	if err != nil {
		return nil, err
	}
	cfg, err := tfstate.ConsulConfig(consulDir)
	if err != nil {
		return nil, err
	}
	api, err := manager.Consul(cfg)
	if err != nil {
		return nil, err
	}
	a.health = &bluegreen.ConsulHealth{API: api, Service: name}
	deployment := bluegreen.ProxyDeployment{Service: bluegreen.Service{Name: name}}
	a.routeFile.Path = deployment.MapFile()
	proxyHosts, _ := attrs["proxy_hosts"].([]any)
	for _, ph := range proxyHosts {
		entry, _ := ph.(map[string]any)
		h, err := pool.Open(ctx, tfstate.Target(entry, "host", "host_key"))
		if err != nil {
			return nil, err
		}
		socket, master := deployment.AdminSocket(), deployment.MasterSocket()
		proxy := &bluegreen.HAProxy{
			Node:    h.Endpoint().Host,
			MapPath: deployment.ContainerDir() + "/bluegreen.map",
			Client: &haproxy.Client{Dial: func(ctx context.Context) (net.Conn, error) {
				return h.DialContext(ctx, "unix", socket)
			}},
			Master: &haproxy.Client{Dial: func(ctx context.Context) (net.Conn, error) {
				return h.DialContext(ctx, "unix", master)
			}},
		}
		a.proxies = append(a.proxies, proxy)
		files := bluegreen.SSHFiles{Host: h}
		a.routeFile.Nodes = append(a.routeFile.Nodes, bluegreen.ProxyNode{Name: h.Endpoint().Host, Files: files, Proxy: proxy,
			Reload: func(ctx context.Context) error {
				state, err := proxy.Client.ServersStateFile(ctx)
				if err != nil {
					return err
				}
				if err := files.Write(ctx, deployment.ServerStateFile(), state); err != nil {
					return err
				}
				return proxy.Reload(ctx)
			}})
	}
	return a, nil
}
