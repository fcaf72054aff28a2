package provider

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/tfstate"
)

// secureConfig is a whole stack with Consul TLS (verify_incoming, HTTPS only) and ACLs
// (deny by default) on: a server and an agent, a swarm, a registrator that registers over
// HTTPS with its own token, a blue/green microservice whose switch is gated on Consul,
// and a health data source. The provider gets the CA, a client certificate and the
// management token from ephemeral variables, and reads with the tokens it makes.
const secureConfig = `
terraform {
  required_providers {
    microswarm = { source = "microswarm/microswarm" }
  }
}

variable "prefix" { type = string }
variable "active" { type = string }
variable "ca_pem" { type = string }
variable "cert_pem" { type = string }

variable "key_pem" {
  type      = string
  ephemeral = true
  sensitive = true
}

variable "gossip_key" {
  type      = string
  ephemeral = true
  sensitive = true
}

variable "acl_token" {
  type      = string
  ephemeral = true
  sensitive = true
}

provider "microswarm" {
  consul_ca_pem           = var.ca_pem
  consul_client_cert_pem  = var.cert_pem
  consul_client_key_pem   = var.key_pem
  consul_management_token = var.acl_token
}

locals {
  tls = { ca_pem = var.ca_pem, cert_pem = var.cert_pem, key_pem_wo = var.key_pem }
}

resource "microswarm_droplet_node" "n" {
  count  = 2
  name   = "${var.prefix}-${count.index}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
}

resource "microswarm_consul_server" "s" {
  host                 = microswarm_droplet_node.n[0].docker_host
  host_key             = microswarm_droplet_node.n[0].ssh_host_key
  advertise_addr       = microswarm_droplet_node.n[0].ipv4_address_private
  bootstrap_expect     = 1
  retry_join           = [microswarm_droplet_node.n[0].ipv4_address_private]
  encrypt_wo           = var.gossip_key
  encrypt_wo_version   = 1
  tls                  = local.tls
  acl                  = { default_policy = "deny" }
  acl_token_wo         = var.acl_token
  acl_token_wo_version = 1
}

resource "microswarm_consul_agent" "a" {
  host                 = microswarm_droplet_node.n[1].docker_host
  host_key             = microswarm_droplet_node.n[1].ssh_host_key
  advertise_addr       = microswarm_droplet_node.n[1].ipv4_address_private
  retry_join           = [microswarm_droplet_node.n[0].ipv4_address_private]
  encrypt_wo           = var.gossip_key
  encrypt_wo_version   = 1
  tls                  = local.tls
  acl                  = { default_policy = "deny" }
  acl_token_wo         = var.acl_token
  acl_token_wo_version = 1
  depends_on           = [microswarm_consul_server.s]
}

resource "microswarm_swarm_cluster" "sw" {
  nodes = {
    m = {
      host           = microswarm_droplet_node.n[0].docker_host
      host_key       = microswarm_droplet_node.n[0].ssh_host_key
      advertise_addr = microswarm_droplet_node.n[0].ipv4_address_private
      role           = "manager"
    }
    w = {
      host           = microswarm_droplet_node.n[1].docker_host
      host_key       = microswarm_droplet_node.n[1].ssh_host_key
      advertise_addr = microswarm_droplet_node.n[1].ipv4_address_private
      role           = "worker"
    }
  }
}

resource "microswarm_registrator" "r" {
  host                 = microswarm_droplet_node.n[0].docker_host
  host_key             = microswarm_droplet_node.n[0].ssh_host_key
  backend              = "consul-tls://127.0.0.1:8500"
  resync               = 5
  acl_token_wo         = var.acl_token
  acl_token_wo_version = 1
  depends_on           = [microswarm_swarm_cluster.sw, microswarm_consul_server.s, microswarm_consul_agent.a]
}

resource "microswarm_microservice" "web" {
  name     = "accsec"
  host     = microswarm_droplet_node.n[0].docker_host
  host_key = microswarm_droplet_node.n[0].ssh_host_key
  proxy_hosts = [for n in microswarm_droplet_node.n : {
    host     = n.docker_host
    host_key = n.ssh_host_key
  }]
  active = var.active
  blue = {
    image    = "microswarm/demo-app:1.0.0"
    replicas = 1
    env      = { COLOR = "blue", SHUTDOWN_DELAY = "1s" }
  }
  green = {
    image    = "microswarm/demo-app:2.0.0"
    replicas = 1
    env      = { COLOR = "green", SHUTDOWN_DELAY = "1s" }
  }
  depends_on = [microswarm_registrator.r]
}

data "microswarm_health" "live" {
  host     = microswarm_droplet_node.n[1].docker_host
  host_key = microswarm_droplet_node.n[1].ssh_host_key
  service  = microswarm_microservice.web.name
  tag      = microswarm_microservice.web.active
}

output "live_color" { value = microswarm_microservice.web.live_color }
output "health" { value = "${data.microswarm_health.live.status} ${data.microswarm_health.live.passing}" }
`

// TestAccSecure_aclsAndTLS applies secureConfig (Consul with TLS and ACLs on) and checks
// that the secure configuration works end to end: the health data source reads and
// writes its ledger over HTTPS with its own token, the microservice switches colors
// through its gate, and the plan after that is empty (the refresh reads Consul too).
// Then, from each node and from a container on it, an anonymous write to the catalog
// and to the health ledger prefix is refused, with or without a client certificate; the
// registrator's and the gate's tokens cannot write the KV store, the health token
// writes only its ledger; and none of the tokens the provider made is in the state.
func TestAccSecure_aclsAndTLS(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	testkit.PreCheck(t)
	started := time.Now()
	pems := consultest.NewTLS(t)
	management := newACLToken(t)
	cli := newTerraformCLI(t, secureConfig)
	cli.vars = map[string]string{"prefix": "acc-tls-" + acctest.RandString(5), "active": "blue", "gossip_key": newConsulGossipKey(t),
		"acl_token": management, "ca_pem": pems.CAPEM, "cert_pem": pems.CertPEM, "key_pem": pems.KeyPEM}
	t.Cleanup(func() {
		if err := cli.run(context.Background(), "destroy", "destroy", "-auto-approve"); err != nil {
			t.Error(err)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	cli.mustRun(ctx, "apply blue", "apply", "-auto-approve")
	t.Logf("created in %s", time.Since(started).Round(time.Second))
	checkOutputs(t, cli, "apply blue", `live_color = "blue"`, `health = "passing 1"`)

	cli.vars["active"] = "green"
	switched := time.Now()
	cli.mustRun(ctx, "apply green", "apply", "-auto-approve")
	t.Logf("switched in %s", time.Since(switched).Round(time.Second))
	checkOutputs(t, cli, "apply green", `live_color = "green"`, `health = "passing 1"`)
	cli.mustRun(ctx, "plan (empty)", "plan", "-detailed-exitcode")
	if !strings.Contains(cli.outputs["plan (empty)"], "No changes.") {
		t.Errorf("the plan after the switch is not empty:\n%s", cli.outputs["plan (empty)"])
	}

	tfstate, err := tfstate.Read(cli.statePath())
	if err != nil {
		t.Fatal(err)
	}
	// The refresh and the gate counted through Consul with the gate's token.
	for _, ms := range tfstate.Instances("microswarm_microservice") {
		if ms["blue_passing"] != float64(1) || ms["green_passing"] != float64(1) {
			t.Errorf("passing in the state: blue %v, green %v; want 1 and 1", ms["blue_passing"], ms["green_passing"])
		}
	}
	for run, out := range cli.outputs {
		// Every run warns once that the provider is a development override.
		if strings.Count(out, "Warning:") > strings.Count(out, "Warning: Provider development overrides") {
			t.Errorf("terraform %s warned:\n%s", run, out)
		}
	}
	nodes := &secureNodes{secretsNodes: newSecretsNodes(t, tfstate), pems: pems}
	nodes.checkLedgerWritten(ctx, management)
	nodes.checkAnonymousRefused(ctx)
	tokens := testkit.Secrets{"acl management token": management, "consul client key": pems.KeyPEM}
	for _, name := range []string{"registrator-registrator", "gate", "health"} {
		tokens[name+" token"] = nodes.checkToken(ctx, management, name)
	}
	raw, err := os.ReadFile(cli.statePath())
	if err != nil {
		t.Fatal(err)
	}
	// The Consul resources take the key write-only (tls.key_pem_wo): neither it nor any
	// token is in the state.
	if found := tokens.Find(raw); len(found) != 0 {
		t.Errorf("the state file holds %v; want none of them", found)
	}
	t.Logf("checked in %s", time.Since(started).Round(time.Second))
}

func checkOutputs(t *testing.T, cli *terraformCLI, run string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(cli.outputs[run], w) {
			t.Errorf("terraform %s: no %s in:\n%s", run, w, cli.outputs[run])
		}
	}
}

// secureNodes reaches the nodes' Consul agents over HTTPS.
type secureNodes struct {
	*secretsNodes
	pems consultest.Material
}

// consul is the agent on node over HTTPS, with the client certificate when withCert.
func (n *secureNodes) consulTLS(ctx context.Context, node, token string, withCert bool) *consulapi.Client {
	n.t.Helper()
	h, _ := n.open(ctx, node)
	cert, key := []byte(n.pems.CertPEM), []byte(n.pems.KeyPEM)
	if !withCert {
		cert, key = nil, nil
	}
	tlsCfg, err := conn.ConsulTLS([]byte(n.pems.CAPEM), cert, key)
	if err != nil {
		n.t.Fatal(err)
	}
	api, err := h.Consul(conn.ConsulConfig{Scheme: "https", TLS: tlsCfg, Token: token})
	if err != nil {
		n.t.Fatal(err)
	}
	return api
}

// checkLedgerWritten checks the health data source recorded its ledger (one key per
// scope, a hash) before anything else wrote under the prefix.
func (n *secureNodes) checkLedgerWritten(ctx context.Context, management string) {
	n.t.Helper()
	keys, _, err := n.consulTLS(ctx, n.server, management, true).KV().Keys(consul.HealthLedgerPrefix, "", nil)
	if err != nil {
		n.t.Fatal(err)
	}
	if len(keys) != 1 {
		n.t.Errorf("ledger keys under %s: %v, want the data source's one", consul.HealthLedgerPrefix, keys)
	}
}

// checkAnonymousRefused tries, without a token, to forge the health ledger and to write
// the catalog, through each node's agent (with the client certificate, so only the ACLs
// refuse; and without it, refused by TLS), and from a container on the node's network
// with the consul CLI, with the CA and client certificate and without.
func (n *secureNodes) checkAnonymousRefused(ctx context.Context) {
	n.t.Helper()
	ledger := &consulapi.KVPair{Key: consul.HealthLedgerPrefix + "forged", Value: []byte("{}")}
	for name := range n.targets {
		api := n.consulTLS(ctx, name, "", true)
		if _, err := api.KV().Put(ledger, nil); !isForbidden(err) {
			n.t.Errorf("an anonymous write to the health ledger from %s: %v, want 403", name, err)
		}
		_, err := api.Catalog().Register(&consulapi.CatalogRegistration{Node: "forged", Address: "192.0.2.1",
			Service: &consulapi.AgentService{Service: "forged", Port: 80}}, nil)
		if !isForbidden(err) {
			n.t.Errorf("an anonymous catalog registration from %s: %v, want 403", name, err)
		}
		if err := api.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "forged", Port: 80}); !isForbidden(err) {
			n.t.Errorf("an anonymous service registration from %s: %v, want 403", name, err)
		}
		if _, err := n.consulTLS(ctx, name, "", false).KV().Put(ledger, nil); err == nil {
			n.t.Errorf("a write with no client certificate from %s was served, though verify_incoming is on", name)
		}

		withCert := map[string]string{"ca.pem": n.pems.CAPEM, "cert.pem": n.pems.CertPEM, "key.pem": n.pems.KeyPEM}
		tlsArgs := []string{"-http-addr=https://127.0.0.1:8500", "-ca-file=/tls/ca.pem", "-client-cert=/tls/cert.pem", "-client-key=/tls/key.pem"}
		for what, args := range map[string][]string{
			"kv put":            append([]string{"kv", "put"}, append(slices.Clone(tlsArgs), consul.HealthLedgerPrefix+"forged", "{}")...),
			"services register": append([]string{"services", "register"}, append(slices.Clone(tlsArgs), "-name=forged", "-port=80")...),
		} {
			if out := n.runConsulCLIWithFiles(ctx, name, withCert, args...); !strings.Contains(out, "Permission denied") {
				n.t.Errorf("an anonymous `consul %s` with the client certificate from a container on %s printed %q, want Permission denied", what, name, out)
			}
		}
		out := n.runConsulCLIWithFiles(ctx, name, nil, "kv", "put", "-http-addr=https://127.0.0.1:8500", "-tls-skip-verify",
			consul.HealthLedgerPrefix+"forged", "{}")
		if !strings.Contains(out, "certificate") || strings.Contains(out, "Success") {
			n.t.Errorf("an anonymous `consul kv put` with no client certificate from a container on %s printed %q, want a TLS refusal", name, out)
		}
	}
}

// checkToken finds the token the provider made for name (its policy microswarm-NAME),
// checks it cannot write outside the health ledger (nor the ledger, but for the health
// data source's), and returns its secret.
// allTokens is every ACL token of the cluster but the anonymous one (whose secret is the
// word "anonymous"), each with its secret: the management token, each agent's own and
// every least-privilege token the provider made.
func (n *secureNodes) allTokens(ctx context.Context, management string) map[string]string {
	n.t.Helper()
	admin := n.consulTLS(ctx, n.server, management, true)
	list, _, err := admin.ACL().TokenList(nil)
	if err != nil {
		n.t.Fatalf("listing the ACL tokens: %v", err)
	}
	out := map[string]string{}
	for _, e := range list {
		if e.AccessorID == consulAnonymousAccessor {
			continue
		}
		tok, _, err := admin.ACL().TokenRead(e.AccessorID, nil)
		if err != nil {
			n.t.Fatalf("reading ACL token %s: %v", e.AccessorID, err)
		}
		out[fmt.Sprintf("consul token %.8s (%s)", e.AccessorID, tok.Description)] = tok.SecretID
	}
	return out
}

// consulAnonymousAccessor is the accessor ID of Consul's built-in anonymous token.
const consulAnonymousAccessor = "00000000-0000-0000-0000-000000000002"

func (n *secureNodes) checkToken(ctx context.Context, management, name string) string {
	n.t.Helper()
	admin := n.consulTLS(ctx, n.server, management, true)
	policy, _, err := admin.ACL().PolicyReadByName("microswarm-"+name, nil)
	if err != nil || policy == nil {
		n.t.Fatalf("the %s policy: %v, %v", name, policy, err)
	}
	tokens, _, err := admin.ACL().TokenListFiltered(consulapi.ACLTokenFilterOptions{Policy: policy.ID}, nil)
	if err != nil || len(tokens) != 1 {
		n.t.Fatalf("the %s tokens: %d, %v; want 1", name, len(tokens), err)
	}
	tok, _, err := admin.ACL().TokenRead(tokens[0].AccessorID, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	api := n.consulTLS(ctx, n.server, tok.SecretID, true)
	_, err = api.KV().Put(&consulapi.KVPair{Key: "elsewhere", Value: []byte("x")}, nil)
	if !isForbidden(err) {
		n.t.Errorf("the %s token writing the KV store outside the ledger: %v, want 403", name, err)
	}
	_, err = api.KV().Put(&consulapi.KVPair{Key: consul.HealthLedgerPrefix + "probe-" + name, Value: []byte("{}")}, nil)
	if name == "health" && err != nil {
		n.t.Errorf("the health token cannot write its ledger: %v", err)
	}
	if name != "health" && !isForbidden(err) {
		n.t.Errorf("the %s token writing the health ledger: %v, want 403", name, err)
	}
	return tok.SecretID
}

func isForbidden(err error) bool { return err != nil && strings.Contains(err.Error(), "403") }

// runConsulCLIWithFiles runs the consul CLI in a throwaway container on the node's
// network, with files copied into /tls first.
func (n *secureNodes) runConsulCLIWithFiles(ctx context.Context, node string, files map[string]string, args ...string) string {
	n.t.Helper()
	_, docker := n.open(ctx, node)
	return consulCLI(ctx, n.t, docker, files, args...)
}
