// Package tfstate reads what a Terraform state file says about a cluster this provider
// made (its droplet nodes, its swarm's manager) and reaches those nodes: for the demo's
// checks, the benchmarks and the tests, which share it. It imports no test package.
package tfstate

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// State is the part of a Terraform state file (format 4) that the demo's checks, the
// benchmarks and the tests read to find the cluster.
type State struct {
	Resources []struct {
		Type      string `json:"type"`
		Instances []struct {
			Attributes map[string]any `json:"attributes"`
		} `json:"instances"`
	} `json:"resources"`
}

// Read reads a state file.
func Read(path string) (State, error) {
	var s State
	raw, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("reading %s: %w", path, err)
	}
	return s, nil
}

// Instances returns the attributes of every instance of a resource type.
func (s State) Instances(resourceType string) []map[string]any {
	var out []map[string]any
	for _, r := range s.Resources {
		if r.Type != resourceType {
			continue
		}
		for _, inst := range r.Instances {
			out = append(out, inst.Attributes)
		}
	}
	return out
}

// Target is how to reach the host an instance names in its host and host-key attributes.
func Target(attrs map[string]any, hostAttr, keyAttr string) conn.Target {
	host, _ := attrs[hostAttr].(string)
	key, _ := attrs[keyAttr].(string)
	return conn.Target{Host: host, HostKey: key}
}

// Nodes are the droplet nodes' targets by droplet name.
func (s State) Nodes() map[string]conn.Target {
	out := map[string]conn.Target{}
	for _, a := range s.Instances("microswarm_droplet_node") {
		name, _ := a["name"].(string)
		out[name] = Target(a, "docker_host", "ssh_host_key")
	}
	return out
}

// Manager is the first (by entry key) manager of the first swarm in the state.
func (s State) Manager() (conn.Target, error) {
	for _, a := range s.Instances("microswarm_swarm_cluster") {
		entries, _ := a["nodes"].(map[string]any)
		keys := make([]string, 0, len(entries))
		for k := range entries {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			entry, _ := entries[k].(map[string]any)
			if entry["role"] == "manager" {
				return Target(entry, "host", "host_key"), nil
			}
		}
	}
	return conn.Target{}, fmt.Errorf("no swarm manager in the state")
}

// PoolFromKeyFile is a connection pool with the SSH private key in path (the demo's).
func PoolFromKeyFile(path string) (*conn.Pool, error) {
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return conn.NewPool(conn.Options{PrivateKey: key})
}
