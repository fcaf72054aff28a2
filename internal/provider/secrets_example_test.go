package provider

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/tfstate"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// TestAccSecrets_exampleLocal applies examples/local as it is (the configuration `make
// demo` runs: 3 nodes, 3 Consul servers, a swarm, a registrator, the blue/green app) with
// the real terraform CLI and the provider binary, and searches its state file, `terraform
// show -json`, the commands' output and their TRACE logs for every secret the example
// handles: the gossip key (an ephemeral variable into encrypt_wo), Consul's TLS key
// (tls.key_pem_wo and the provider's client key), the ACL management token and the
// least-privilege tokens the provider made with it (the registrator's, the gate's, the
// health data source's; each is also checked to be refused what it may not do) and every
// other ACL token the cluster has after the heal (each agent's own), the
// swarm's manager and worker join tokens (read from the manager), the SSH private key and
// the API token. In between, one node is powered off and the next apply heals the cluster
// with TLS and ACLs on (healExampleNode), so its output and logs are searched too.
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
	tfstate, err := tfstate.Read(cli.statePath())
	if err != nil {
		t.Fatal(err)
	}
	nodes := &secretsNodes{t: t, pool: testkit.Pool(t), targets: tfstate.Nodes(), server: "demo-0"}
	if len(nodes.targets) != 3 {
		t.Fatalf("droplet nodes in the state: %v", nodes.targets)
	}
	sw, _ := nodes.swarmSecrets(ctx)
	secrets := testkit.Secrets{
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

	healExampleNode(ctx, t, cli, acl, management, tfstate, "demo-1")
	// Every token the cluster has now, the replacement server's own included.
	tokens := acl.allTokens(ctx, management)
	if len(tokens) < 1+3+3 { // management, an agent token per server, registrator, gate, health
		t.Fatalf("the cluster has %d ACL tokens, want at least 7: %v", len(tokens), slices.Collect(maps.Keys(tokens)))
	}
	maps.Copy(secrets, tokens)

	artifacts := cli.artifacts()
	for name, text := range artifacts {
		if found := secrets.Find(text); len(found) > 0 {
			t.Errorf("%s holds: %s", name, strings.Join(found, ", "))
		}
	}
	t.Logf("examples/local applied and searched (%d artifacts, %d secrets) in %s", len(artifacts), len(secrets), time.Since(started).Round(time.Second))
}

// healExampleNode powers node off through the cloud's API, as a dying machine would be,
// then applies again: with Consul TLS and default-deny ACLs on, the apply replaces the
// droplet and its Consul server (whose agent token the provider makes with the management
// token), the plan after it is empty, and Consul, asked over HTTPS, has its three
// servers back as alive voters, the replacement's address among them.
func healExampleNode(ctx context.Context, t *testing.T, cli *terraformCLI, acl *secureNodes, management string, before tfstate.State, node string) {
	t.Helper()
	oldID := 0
	for _, a := range before.Instances("microswarm_droplet_node") {
		if a["name"] == node {
			oldID, _ = strconv.Atoi(fmt.Sprint(a["id"]))
		}
	}
	if oldID == 0 {
		t.Fatalf("no droplet %s in the state", node)
	}
	if _, _, err := testkit.Godo(t).DropletActions.PowerOff(ctx, oldID); err != nil {
		t.Fatalf("powering off %s: %v", node, err)
	}
	if _, err := testkit.Cloud(t).WaitStatus(ctx, oldID, "off"); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	cli.mustRun(ctx, "apply (heal)", "apply", "-auto-approve")
	healed := time.Since(started).Round(time.Second)
	cli.mustRun(ctx, "plan after the heal", "plan", "-detailed-exitcode")
	after, err := tfstate.Read(cli.statePath())
	if err != nil {
		t.Fatal(err)
	}
	var newAddr string
	for _, a := range after.Instances("microswarm_droplet_node") {
		if a["name"] == node {
			if id, _ := strconv.Atoi(fmt.Sprint(a["id"])); id == oldID {
				t.Fatalf("%s is still droplet %d after the heal", node, oldID)
			}
			newAddr, _ = a["ipv4_address_private"].(string)
		}
	}
	// The dead server leaves the raft configuration on autopilot's next tick (10 s).
	api := acl.consulTLS(ctx, acl.server, management, true)
	voters := map[string]bool{}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = wait.Until(waitCtx, wait.Options{What: "3 voters, the replacement among them", Interval: time.Second}, func(context.Context) (bool, string, error) {
		raft, err := api.Operator().RaftGetConfiguration(nil)
		if err != nil {
			return false, "", wait.Retryable(err)
		}
		voters = map[string]bool{}
		for _, s := range raft.Servers {
			if s.Voter {
				addr, _, _ := strings.Cut(s.Address, ":")
				voters[addr] = true
			}
		}
		return len(voters) == 3 && voters[newAddr], fmt.Sprintf("voters %v", voters), nil
	})
	if err != nil {
		t.Fatalf("after the heal, over HTTPS: %v; want 3 voters, %s (the replacement) among them", err, newAddr)
	}
	t.Logf("%s powered off, healed by one apply in %s with TLS and ACLs on; voters %v", node, healed, voters)
}
