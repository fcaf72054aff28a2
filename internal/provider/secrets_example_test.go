package provider

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msacctest "github.com/microswarm/terraform-provider-microswarm/internal/acctest"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

// TestAccSecrets_exampleLocal applies examples/local as it is (the configuration `make
// demo` runs: 3 nodes, 3 Consul servers, a swarm, a registrator, the blue/green app) with
// the real terraform CLI and the provider binary, and searches its state file, `terraform
// show -json`, the commands' output and their TRACE logs for every secret the example
// handles: the gossip key (an ephemeral variable into encrypt_wo), Consul's TLS key
// (tls.key_pem_wo and the provider's client key), the ACL management token and the
// least-privilege tokens the provider made with it (the registrator's, the gate's, the
// health data source's; each is also checked to be refused what it may not do), the
// swarm's manager and worker join tokens (read from the manager), the SSH private key and
// the API token.
func TestAccSecrets_exampleLocal(t *testing.T) {
	requireAcc(t)
	started := time.Now()
	main, err := os.ReadFile(filepath.Join("..", "..", "examples", "local", "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	cli := newTerraformCLI(t, string(main))
	gossip, pems, management := newConsulGossipKey(t), consultest.NewTLS(t), newACLToken(t)
	cli.vars = map[string]string{"gossip_key": gossip, "consul_ca_pem": pems.CAPEM, "consul_cert_pem": pems.CertPEM,
		"consul_key_pem": pems.KeyPEM, "consul_management_token": management}
	t.Cleanup(func() {
		if err := cli.run(context.Background(), "destroy", "destroy", "-auto-approve"); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cli.mustRun(ctx, "apply", "apply", "-auto-approve")
	cli.mustRun(ctx, "show -json", "show", "-json")
	tfstate, err := msacctest.ReadTFState(cli.statePath())
	if err != nil {
		t.Fatal(err)
	}
	nodes := &secretsNodes{t: t, pool: msacctest.Pool(t), targets: tfstate.Nodes(), server: "demo-0"}
	if len(nodes.targets) != 3 {
		t.Fatalf("droplet nodes in the state: %v", nodes.targets)
	}
	sw, _ := nodes.swarmSecrets(ctx)
	secrets := msacctest.Secrets{
		"gossip key":              gossip,
		"consul tls key":          pems.KeyPEM,
		"consul management token": management,
		"ssh private key":         os.Getenv(envSSHKey),
		"digitalocean token":      os.Getenv(envToken),
		"worker join token":       sw.JoinTokens.Worker,
		"manager join token":      sw.JoinTokens.Manager,
	}
	acl := &secureNodes{secretsNodes: nodes, pems: pems}
	for _, name := range []string{"registrator-registrator", "gate", "health"} {
		secrets[name+" token"] = acl.checkToken(ctx, management, name)
	}
	for name, v := range secrets {
		if v == "" {
			t.Fatalf("the %s could not be read: the search would prove nothing", name)
		}
	}
	// The search finds a secret where it legitimately lives: the gossip key in the config
	// file the Consul server on demo-0 started with.
	if found := secrets.Find(nodes.serverFile(ctx, consul.ConfigFile)); !strings.Contains(strings.Join(found, ","), "gossip key") {
		t.Errorf("the gossip key is not in the server's config file (found %v): the search cannot be trusted", found)
	}
	if found := secrets.Find(nodes.serverFile(ctx, consul.KeyFile)); !strings.Contains(strings.Join(found, ","), "consul tls key") {
		t.Errorf("the TLS key is not in the server's key file (found %v): the search cannot be trusted", found)
	}

	artifacts := cli.artifacts()
	for name, text := range artifacts {
		if found := secrets.Find(text); len(found) > 0 {
			t.Errorf("%s holds: %s", name, strings.Join(found, ", "))
		}
	}
	t.Logf("examples/local applied and searched (%d artifacts, %d secrets) in %s", len(artifacts), len(secrets), time.Since(started).Round(time.Second))
}
