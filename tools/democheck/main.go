// Command democheck proves the demo cluster works the way a user would see it: it reads
// the demo's Terraform state and, through each node's docker_host and pinned host key,
// runs a container there. With -keygen it writes the demo's SSH key instead (so the demo
// needs no ssh-keygen binary).
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/swarmservice"
	"github.com/microswarm/terraform-provider-microswarm/internal/tfstate"
)

func main() {
	statePath := flag.String("state", "", "the demo's terraform.tfstate")
	keyPath := flag.String("key", "", "the demo's SSH private key")
	keygen := flag.String("keygen", "", "write a new ed25519 SSH private key to this path and exit")
	consulSecrets := flag.String("consul-secrets", "", "make the demo's Consul CA, agent certificate and key, and ACL management token in this directory (those missing) and exit")
	consulDir := flag.String("consul", "", "check Consul over HTTPS with the certificate and management token in this directory (-consul-secrets)")
	flag.Parse()
	var err error
	switch {
	case *keygen != "":
		err = writeKey(*keygen)
	case *consulSecrets != "":
		err = writeConsulSecrets(*consulSecrets)
	default:
		err = check(*statePath, *keyPath, *consulDir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "democheck:", err)
		os.Exit(1)
	}
}

func writeKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "microswarm-demo")
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

func check(statePath, keyPath, consulDir string) error {
	state, err := tfstate.Read(statePath)
	if err != nil {
		return err
	}
	pool, err := tfstate.PoolFromKeyFile(keyPath)
	if err != nil {
		return err
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Every node at once: each runs a container, which takes about a second.
	type node struct{ name, host, hostKey, out string }
	var nodes []*node
	for _, r := range state.Resources {
		if r.Type != "microswarm_droplet_node" {
			continue
		}
		for _, inst := range r.Instances {
			n := &node{}
			n.name, _ = inst.Attributes["name"].(string)
			n.host, _ = inst.Attributes["docker_host"].(string)
			n.hostKey, _ = inst.Attributes["ssh_host_key"].(string)
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return fmt.Errorf("no microswarm_droplet_node in %s", statePath)
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			out, err := tfstate.RunContainer(ctx, pool, conn.Target{Host: n.host, HostKey: n.hostKey}, "hashicorp/consul:1.20.5", "version")
			if err != nil {
				errs[i] = fmt.Errorf("node %s (%s): %w", n.name, n.host, err)
			}
			n.out, _, _ = strings.Cut(out, "\n")
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, n := range nodes {
		fmt.Printf("node %-10s %-28s ran a container: %s\n", n.name, n.host, n.out)
	}
	fmt.Printf("%d nodes answered through SSH with pinned host keys\n", len(nodes))
	if err := checkConsul(ctx, pool, state, consulDir); err != nil {
		return err
	}
	if err := checkSwarm(ctx, pool, state); err != nil {
		return err
	}
	if err := checkRegistrator(ctx, pool, state); err != nil {
		return err
	}
	return checkApp(ctx, state)
}

// checkApp asks the demo app through every proxy, as a user's client would, and checks
// that the live color answers.
func checkApp(ctx context.Context, state tfstate.State) error {
	for _, a := range state.Instances("microswarm_microservice") {
		live, _ := a["live_color"].(string)
		endpoints, _ := a["endpoints"].([]any)
		client := http.Client{Timeout: 5 * time.Second}
		for _, ep := range endpoints {
			url, _ := ep.(string)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("app through %s: %w", url, err)
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				return err
			}
			var answer struct{ Version, Color string }
			if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &answer) != nil || answer.Color != live {
				return fmt.Errorf("app through %s answered %s %s, want the live color %s", url, resp.Status, strings.TrimSpace(string(body)), live)
			}
			fmt.Printf("app: %s answered version %s (%s)\n", url, answer.Version, answer.Color)
		}
	}
	return nil
}

// checkRegistrator counts the registrator's running tasks through the manager.
func checkRegistrator(ctx context.Context, pool *conn.Pool, state tfstate.State) error {
	for _, a := range state.Instances("microswarm_registrator") {
		h, err := pool.Open(ctx, tfstate.Target(a, "host", "host_key"))
		if err != nil {
			return err
		}
		docker, err := h.Docker()
		if err != nil {
			return err
		}
		id, _ := a["id"].(string)
		svc, err := swarmservice.Get(ctx, docker, id)
		if err != nil {
			return fmt.Errorf("registrator service %s: %w", id, err)
		}
		st, err := swarmservice.ReadStatus(ctx, docker, svc)
		if err != nil {
			return err
		}
		fmt.Printf("registrator: %s\n", st.Describe())
		if st.Running != st.Desired || st.Desired < 1 {
			return fmt.Errorf("registrator: %s", st.Describe())
		}
	}
	return nil
}

// checkConsul asks the first Consul server, through SSH, for the raft voters and members:
// over HTTPS with the demo's certificate and management token when consulDir has them.
func checkConsul(ctx context.Context, pool *conn.Pool, state tfstate.State, consulDir string) error {
	cfg, err := tfstate.ConsulConfig(consulDir)
	if err != nil {
		return err
	}
	for _, r := range state.Resources {
		if r.Type != "microswarm_consul_server" || len(r.Instances) == 0 {
			continue
		}
		a := r.Instances[0].Attributes
		host, _ := a["host"].(string)
		hostKey, _ := a["host_key"].(string)
		httpAddr, _ := a["http_addr"].(string)
		h, err := pool.Open(ctx, conn.Target{Host: host, HostKey: hostKey})
		if err != nil {
			return err
		}
		cfg.Address = httpAddr
		api, err := h.Consul(cfg)
		if err != nil {
			return err
		}
		raft, err := api.Operator().RaftGetConfiguration(nil)
		if err != nil {
			return fmt.Errorf("consul raft configuration via %s: %w", host, err)
		}
		voters := map[string]bool{} // by address, without the port
		for _, s := range raft.Servers {
			if s.Voter {
				addr, _, _ := strings.Cut(s.Address, ":")
				voters[addr] = true
			}
		}
		members, err := api.Agent().Members(false)
		if err != nil {
			return fmt.Errorf("consul members via %s: %w", host, err)
		}
		alive := map[string]bool{}
		for _, m := range members {
			if m.Status == 1 { // serf's StatusAlive
				alive[m.Addr] = true
			}
		}
		// The catalog holds each member as itself, not a dead agent of the same name
		// (whose services it would go on reporting).
		stale, err := consul.CatalogMismatches(ctx, api, members)
		if err != nil {
			return fmt.Errorf("consul catalog via %s: %w", host, err)
		}
		if len(stale) > 0 {
			return fmt.Errorf("the consul catalog does not hold these alive members as themselves: %s", strings.Join(stale, ", "))
		}
		leader, _ := api.Status().Leader()
		fmt.Printf("consul: leader %s, %d voters, %d alive members, each in the catalog as itself\n", leader, len(voters), len(alive))
		// Every server of the state, by its advertised address: an alive member and a voter.
		var missing []string
		for _, inst := range r.Instances {
			addr, _ := inst.Attributes["advertise_addr"].(string)
			if !alive[addr] || !voters[addr] {
				missing = append(missing, fmt.Sprintf("%s (alive %v, voter %v)", addr, alive[addr], voters[addr]))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("consul servers not alive voters: %s", strings.Join(missing, ", "))
		}
		return nil
	}
	return nil
}

// checkSwarm lists the swarm's nodes through a manager.
func checkSwarm(ctx context.Context, pool *conn.Pool, state tfstate.State) error {
	for _, r := range state.Resources {
		if r.Type != "microswarm_swarm_cluster" || len(r.Instances) == 0 {
			continue
		}
		entries, _ := r.Instances[0].Attributes["nodes"].(map[string]any)
		for _, e := range entries {
			entry, _ := e.(map[string]any)
			if entry["role"] != "manager" {
				continue
			}
			host, _ := entry["host"].(string)
			hostKey, _ := entry["host_key"].(string)
			h, err := pool.Open(ctx, conn.Target{Host: host, HostKey: hostKey})
			if err != nil {
				return err
			}
			docker, err := h.Docker()
			if err != nil {
				return err
			}
			nodes, err := docker.NodeList(ctx, swarm.NodeListOptions{})
			if err != nil {
				return fmt.Errorf("swarm node list via %s: %w", host, err)
			}
			ready := map[string]bool{} // by address
			for _, n := range nodes {
				if n.Status.State == swarm.NodeStateReady {
					ready[n.Status.Addr] = true
				}
			}
			fmt.Printf("swarm: %d of %d nodes ready\n", len(ready), len(nodes))
			// Every entry of the state, by its advertised address: a ready node.
			var missing []string
			for _, name := range slices.Sorted(maps.Keys(entries)) {
				entry, _ := entries[name].(map[string]any)
				addr, _ := entry["advertise_addr"].(string)
				if !ready[addr] {
					missing = append(missing, fmt.Sprintf("%s (%s)", name, addr))
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("swarm nodes not ready: %s", strings.Join(missing, ", "))
			}
			return nil
		}
	}
	return nil
}
