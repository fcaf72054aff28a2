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
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/acctest"
	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

func main() {
	statePath := flag.String("state", "", "the demo's terraform.tfstate")
	keyPath := flag.String("key", "", "the demo's SSH private key")
	keygen := flag.String("keygen", "", "write a new ed25519 SSH private key to this path and exit")
	flag.Parse()
	var err error
	if *keygen != "" {
		err = writeKey(*keygen)
	} else {
		err = check(*statePath, *keyPath)
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

// tfState is the part of Terraform's state file (format 4) that the check reads.
type tfState struct {
	Resources []struct {
		Type      string `json:"type"`
		Instances []struct {
			Attributes map[string]any `json:"attributes"`
		} `json:"instances"`
	} `json:"resources"`
}

func check(statePath, keyPath string) error {
	raw, err := os.ReadFile(statePath)
	if err != nil {
		return err
	}
	var state tfState
	if err := json.Unmarshal(raw, &state); err != nil {
		return fmt.Errorf("reading %s: %w", statePath, err)
	}
	key, err := os.ReadFile(keyPath)
	if err != nil {
		return err
	}
	pool, err := conn.NewPool(conn.Options{PrivateKey: key})
	if err != nil {
		return err
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes := 0
	for _, r := range state.Resources {
		if r.Type != "microswarm_droplet_node" {
			continue
		}
		for _, inst := range r.Instances {
			name, _ := inst.Attributes["name"].(string)
			host, _ := inst.Attributes["docker_host"].(string)
			hostKey, _ := inst.Attributes["ssh_host_key"].(string)
			out, err := acctest.RunContainer(ctx, pool, conn.Target{Host: host, HostKey: hostKey}, "hashicorp/consul:1.20.5", "version")
			if err != nil {
				return fmt.Errorf("node %s (%s): %w", name, host, err)
			}
			first, _, _ := strings.Cut(out, "\n")
			fmt.Printf("node %-10s %-28s ran a container: %s\n", name, host, first)
			nodes++
		}
	}
	if nodes == 0 {
		return fmt.Errorf("no microswarm_droplet_node in %s", statePath)
	}
	fmt.Printf("%d nodes answered through SSH with pinned host keys\n", nodes)
	return nil
}
