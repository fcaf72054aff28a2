package provider

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/tfstate"
)

// secretsConfig has every resource that handles a secret: a Consul server and agent with a
// write-only gossip key and ACL management token from ephemeral variables (ACLs on,
// default deny, each agent given its own token by the provider), and a swarm with
// autolock (join tokens, unlock key), and a registrator whose least-privilege token the
// provider makes (a swarm secret on the nodes), on two droplet nodes.
const secretsConfig = `
terraform {
  required_providers {
    microswarm = { source = "microswarm/microswarm" }
  }
}

provider "microswarm" {}

variable "prefix" { type = string }

variable "gossip_key" {
  type      = string
  ephemeral = true
  sensitive = true
}

variable "gossip_key_version" { type = number }

variable "acl_token" {
  type      = string
  ephemeral = true
  sensitive = true
}

resource "microswarm_droplet_node" "n" {
  count  = 2
  name   = "${var.prefix}-${count.index}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
}

resource "microswarm_consul_server" "s" {
  host               = microswarm_droplet_node.n[0].docker_host
  host_key           = microswarm_droplet_node.n[0].ssh_host_key
  advertise_addr     = microswarm_droplet_node.n[0].ipv4_address_private
  bootstrap_expect   = 1
  retry_join         = [microswarm_droplet_node.n[0].ipv4_address_private]
  encrypt_wo         = var.gossip_key
  encrypt_wo_version = var.gossip_key_version

  acl                  = { default_policy = "deny" }
  acl_token_wo         = var.acl_token
  acl_token_wo_version = 1
}

resource "microswarm_consul_agent" "a" {
  host               = microswarm_droplet_node.n[1].docker_host
  host_key           = microswarm_droplet_node.n[1].ssh_host_key
  advertise_addr     = microswarm_droplet_node.n[1].ipv4_address_private
  retry_join         = [microswarm_droplet_node.n[0].ipv4_address_private]
  encrypt_wo         = var.gossip_key
  encrypt_wo_version = var.gossip_key_version

  acl                  = { default_policy = "deny" }
  acl_token_wo         = var.acl_token
  acl_token_wo_version = 1

  depends_on = [microswarm_consul_server.s]
}

resource "microswarm_registrator" "r" {
  host                 = microswarm_droplet_node.n[0].docker_host
  host_key             = microswarm_droplet_node.n[0].ssh_host_key
  acl_token_wo         = var.acl_token
  acl_token_wo_version = 1
  depends_on           = [microswarm_swarm_cluster.sw, microswarm_consul_agent.a]
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
  autolock = true
}
`

// TestAccSecrets_neverWrittenDown applies secretsConfig with the real terraform CLI and
// the provider binary (as a user runs them), rotates the gossip key, and searches
// everything a user or an attacker with access to the state, the logs or the nodes can
// read for every secret value: the state file, `terraform show -json`, the plan output,
// TF_LOG=TRACE output of every command, and every container's and service's inspect
// (argv, env, labels) on every node.
func TestAccSecrets_neverWrittenDown(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	testkit.PreCheck(t)
	started := time.Now()
	cli := newTerraformCLI(t, secretsConfig)
	key1, key2 := newConsulGossipKey(t), newConsulGossipKey(t)
	management := newACLToken(t)
	cli.vars = map[string]string{"prefix": "acc-sec-" + acctest.RandString(5), "gossip_key": key1, "gossip_key_version": "1", "acl_token": management}
	t.Cleanup(func() { cli.run(context.Background(), "destroy", "destroy", "-auto-approve") })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cli.mustRun(ctx, "plan 1", "plan")
	cli.mustRun(ctx, "apply 1", "apply", "-auto-approve")
	t.Logf("created in %s", time.Since(started).Round(time.Second))
	tfstate, err := tfstate.Read(cli.statePath())
	if err != nil {
		t.Fatal(err)
	}
	state := secretsState{tfstate}
	nodes := newSecretsNodes(t, tfstate)

	// Rotate the gossip key: version 2 of encrypt_wo, in place.
	cli.vars["gossip_key"], cli.vars["gossip_key_version"] = key2, "2"
	cli.mustRun(ctx, "plan 2", "plan", "-detailed-exitcode")
	if !strings.Contains(cli.outputs["plan 2"], "update in-place") || strings.Contains(cli.outputs["plan 2"], "must be replaced") {
		t.Errorf("the rotation plan is not an in-place update:\n%s", cli.outputs["plan 2"])
	}
	rotated := time.Now()
	cli.mustRun(ctx, "apply 2", "apply", "-auto-approve")
	t.Logf("rotated in %s", time.Since(rotated).Round(time.Second))
	cli.mustRun(ctx, "plan 3 (empty)", "plan", "-detailed-exitcode")
	if !strings.Contains(cli.outputs["plan 3 (empty)"], "No changes.") {
		t.Errorf("the plan after the rotation is not empty:\n%s", cli.outputs["plan 3 (empty)"])
	}
	cli.mustRun(ctx, "show -json", "show", "-json")

	// The rotation, seen from the cluster: the new key alone in every member's keyring.
	nodes.checkKeyring(ctx, key2, management)
	// ACLs, seen from the nodes: anonymous writes refused from the node and from a container.
	nodes.checkAnonymousRefused(ctx)

	secrets := testkit.Secrets{
		"gossip key 1":         key1,
		"gossip key 2":         key2,
		"ssh private key":      os.Getenv(envSSHKey),
		"digitalocean token":   os.Getenv(envToken),
		"worker join token":    "",
		"manager join token":   "",
		"swarm unlock key":     "",
		"acl management token": management,
	}
	for i, accessor := range state.agentTokenAccessors(t) {
		secrets[fmt.Sprintf("agent token %d", i)] = nodes.tokenSecret(ctx, management, accessor)
	}
	secrets["registrator token"] = nodes.checkRegistratorToken(ctx, management)
	sw, unlock := nodes.swarmSecrets(ctx)
	secrets["worker join token"], secrets["manager join token"], secrets["swarm unlock key"] = sw.JoinTokens.Worker, sw.JoinTokens.Manager, unlock
	for name, v := range secrets {
		if v == "" {
			t.Fatalf("the %s could not be read: the search would prove nothing", name)
		}
	}

	// The search can see each key where it legitimately lives on the node: the first in
	// the config file the server started with, the second in the keyring on its volume.
	for file, want := range map[string]string{consul.ConfigFile: "gossip key 1", consul.DataDir + "/serf/local.keyring": "gossip key 2"} {
		if found := secrets.Find(nodes.serverFile(ctx, file)); !strings.Contains(strings.Join(found, ","), want) {
			t.Errorf("the %s is not in the server's %s (found %v): the search cannot be trusted", want, file, found)
		}
	}

	artifacts := cli.artifacts()
	for name, inspect := range nodes.inspectAll(ctx) {
		artifacts[name] = inspect
	}
	logBytes := 0
	for name, text := range artifacts {
		if strings.Contains(name, "TRACE") {
			logBytes += len(text)
		}
		if found := secrets.Find(text); len(found) > 0 {
			t.Errorf("%s holds: %s", name, strings.Join(found, ", "))
		}
	}
	t.Logf("searched %d artifacts (%d KiB of TRACE logs) for %d secrets in %s", len(artifacts), logBytes/1024, len(secrets), time.Since(started).Round(time.Second))
}

// terraformCLI runs the real terraform with the provider binary built from this tree.
type terraformCLI struct {
	t       *testing.T
	bin     string
	dir     string
	rc      string
	vars    map[string]string
	outputs map[string]string
	logDir  string
}

func newTerraformCLI(t *testing.T, config string) *terraformCLI {
	t.Helper()
	tf := os.Getenv("TF_ACC_TERRAFORM_PATH")
	if tf == "" {
		var err error
		if tf, err = exec.LookPath("terraform"); err != nil {
			t.Fatal("no terraform: set TF_ACC_TERRAFORM_PATH")
		}
	}
	root := t.TempDir()
	c := &terraformCLI{t: t, bin: tf, dir: filepath.Join(root, "config"), rc: filepath.Join(root, "terraformrc"),
		outputs: map[string]string{}, logDir: filepath.Join(root, "logs")}
	pluginDir := filepath.Join(root, "plugins")
	for _, d := range []string{c.dir, pluginDir, c.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(pluginDir, "terraform-provider-microswarm"), "github.com/microswarm/terraform-provider-microswarm")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the provider: %v\n%s", err, out)
	}
	rc := fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"microswarm/microswarm\" = %q\n  }\n  direct {}\n}\n", pluginDir)
	if err := os.WriteFile(c.rc, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "main.tf"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *terraformCLI) statePath() string { return filepath.Join(c.dir, "terraform.tfstate") }

// run runs one terraform command with TRACE logging into its own file; exit code 2 of
// `plan -detailed-exitcode` (changes present) counts as success.
func (c *terraformCLI) run(ctx context.Context, name string, args ...string) error {
	logName := strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(name)
	cmd := exec.CommandContext(ctx, c.bin, append(args, "-no-color", "-input=false")...)
	if args[0] == "show" {
		cmd = exec.CommandContext(ctx, c.bin, append(args, "-no-color")...)
	}
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+c.rc, "TF_IN_AUTOMATION=1", "TF_LOG=TRACE",
		"TF_LOG_PATH="+filepath.Join(c.logDir, logName+".log"))
	for k, v := range c.vars {
		cmd.Env = append(cmd.Env, "TF_VAR_"+k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	c.outputs[name] = out.String()
	if exit, ok := err.(*exec.ExitError); ok && exit.ExitCode() == 2 && args[0] == "plan" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("terraform %s: %w\n%s", name, err, out.String())
	}
	return nil
}

func (c *terraformCLI) mustRun(ctx context.Context, name string, args ...string) {
	c.t.Helper()
	if err := c.run(ctx, name, args...); err != nil {
		c.t.Fatal(err)
	}
}

// artifacts is what a user or an attacker with the state, the CLI's output or its logs can
// read, by name: the state file, the output and the TRACE log of every command run so far.
func (c *terraformCLI) artifacts() map[string][]byte {
	c.t.Helper()
	raw, err := os.ReadFile(c.statePath())
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string][]byte{"the state file": raw}
	for name, text := range c.outputs {
		out["the output of terraform "+name] = []byte(text)
	}
	for name, log := range c.logs() {
		out["the TF_LOG=TRACE log of terraform "+name] = log
	}
	return out
}

// logs are the TRACE logs of every command run so far, by command.
func (c *terraformCLI) logs() map[string][]byte {
	out := map[string][]byte{}
	entries, _ := os.ReadDir(c.logDir)
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(c.logDir, e.Name()))
		if err != nil {
			c.t.Fatal(err)
		}
		out[strings.TrimSuffix(e.Name(), ".log")] = raw
	}
	if len(out) == 0 {
		c.t.Fatal("terraform wrote no TRACE log: the search would prove nothing")
	}
	return out
}

// secretsNodes reaches the test's droplet nodes the way the provider does.
type secretsNodes struct {
	t       *testing.T
	pool    *conn.Pool
	targets map[string]conn.Target // by droplet name, sorted server first
	server  string
}

func newSecretsNodes(t *testing.T, state tfstate.State) *secretsNodes {
	n := &secretsNodes{t: t, pool: testkit.Pool(t), targets: state.Nodes()}
	for name := range n.targets {
		if strings.HasSuffix(name, "-0") {
			n.server = name
		}
	}
	if len(n.targets) != 2 || n.server == "" {
		t.Fatalf("droplet nodes in the state: %v", n.targets)
	}
	return n
}

func (n *secretsNodes) open(ctx context.Context, name string) (*conn.Host, *client.Client) {
	n.t.Helper()
	h, err := n.pool.Open(ctx, n.targets[name])
	if err != nil {
		n.t.Fatal(err)
	}
	docker, err := h.Docker()
	if err != nil {
		n.t.Fatal(err)
	}
	return h, docker
}

// secretsState reads what the test needs from the state file.
type secretsState struct{ tfstate.State }

// agentTokenAccessors are the accessor IDs of the agent tokens the provider made.
func (s secretsState) agentTokenAccessors(t *testing.T) []string {
	var out []string
	for _, typ := range []string{"microswarm_consul_server", "microswarm_consul_agent"} {
		for _, a := range s.Instances(typ) {
			id, _ := a["acl_agent_token_accessor"].(string)
			if id == "" {
				t.Fatalf("%s has no acl_agent_token_accessor", typ)
			}
			out = append(out, id)
		}
	}
	return out
}

// tokenSecret reads a token's secret through the server with the management token.
func (n *secretsNodes) tokenSecret(ctx context.Context, management, accessor string) string {
	n.t.Helper()
	tok, _, err := n.consul(ctx, n.server, management).ACL().TokenRead(accessor, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		n.t.Fatal(err)
	}
	return tok.SecretID
}

func (n *secretsNodes) consul(ctx context.Context, node, token string) *consulapi.Client {
	n.t.Helper()
	h, _ := n.open(ctx, node)
	api, err := h.Consul(conn.ConsulConfig{Token: token})
	if err != nil {
		n.t.Fatal(err)
	}
	return api
}

// checkRegistratorToken finds the token the provider made for the registrator, checks it
// may register services but not write the KV store, and returns its secret.
func (n *secretsNodes) checkRegistratorToken(ctx context.Context, management string) string {
	n.t.Helper()
	admin := n.consul(ctx, n.server, management)
	policy, _, err := admin.ACL().PolicyReadByName("microswarm-registrator-registrator", nil)
	if err != nil || policy == nil {
		n.t.Fatalf("the registrator's policy: %v, %v", policy, err)
	}
	tokens, _, err := admin.ACL().TokenListFiltered(consulapi.ACLTokenFilterOptions{Policy: policy.ID}, nil)
	if err != nil || len(tokens) != 1 {
		n.t.Fatalf("the registrator's tokens: %d, %v; want 1", len(tokens), err)
	}
	secret := n.tokenSecret(ctx, management, tokens[0].AccessorID)
	reg := n.consul(ctx, n.server, secret)
	if _, err := reg.KV().Put(&consulapi.KVPair{Key: consul.HealthLedgerPrefix + "forged", Value: []byte("{}")}, nil); err == nil || !strings.Contains(err.Error(), "403") {
		n.t.Errorf("the registrator's token writing the health ledger: %v, want 403", err)
	}
	if err := reg.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{ID: "acc-probe", Name: "acc-probe", Port: 80}); err != nil {
		n.t.Errorf("the registrator's token cannot register a service: %v", err)
	} else if err := reg.Agent().ServiceDeregister("acc-probe"); err != nil {
		n.t.Errorf("the registrator's token cannot deregister a service: %v", err)
	}
	return secret
}

// checkAnonymousRefused tries, without a token, to forge the health ledger and to
// register a service: through the agent's API from the node itself, and from a
// container on the node's network, as any app with host networking could.
func (n *secretsNodes) checkAnonymousRefused(ctx context.Context) {
	n.t.Helper()
	for name := range n.targets {
		api := n.consul(ctx, name, "")
		_, err := api.KV().Put(&consulapi.KVPair{Key: consul.HealthLedgerPrefix + "forged", Value: []byte("{}")}, nil)
		if err == nil || !strings.Contains(err.Error(), "403") {
			n.t.Errorf("an anonymous write to the health ledger from %s: %v, want 403", name, err)
		}
		err = api.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "forged", Port: 80})
		if err == nil || !strings.Contains(err.Error(), "403") {
			n.t.Errorf("an anonymous service registration from %s: %v, want 403", name, err)
		}
		out := n.runConsulCLI(ctx, name, "kv", "put", consul.HealthLedgerPrefix+"forged", "{}")
		if !strings.Contains(out, "Permission denied") {
			n.t.Errorf("an anonymous `consul kv put` from a container on %s printed %q, want Permission denied", name, out)
		}
		out = n.runConsulCLI(ctx, name, "services", "register", "-name=forged", "-port=80")
		if !strings.Contains(out, "Permission denied") {
			n.t.Errorf("an anonymous `consul services register` from a container on %s printed %q, want Permission denied", name, out)
		}
	}
}

// runConsulCLI runs the consul CLI in a throwaway container on the node's network.
func (n *secretsNodes) runConsulCLI(ctx context.Context, node string, args ...string) string {
	n.t.Helper()
	_, docker := n.open(ctx, node)
	return consulCLI(ctx, n.t, docker, nil, args...)
}

// consulCLI runs the consul CLI in a throwaway container on the node's network (through
// its Docker API), with files copied into /tls first, and returns what it printed.
func consulCLI(ctx context.Context, t *testing.T, docker *client.Client, files map[string]string, args ...string) string {
	t.Helper()
	created, err := docker.ContainerCreate(ctx, &container.Config{Image: consul.DefaultImage, Entrypoint: []string{consul.Binary}, Cmd: args},
		&container.HostConfig{NetworkMode: "host"}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = docker.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
	}()
	if len(files) > 0 {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		_ = tw.WriteHeader(&tar.Header{Name: "tls/", Typeflag: tar.TypeDir, Mode: 0o755})
		for name, body := range files {
			_ = tw.WriteHeader(&tar.Header{Name: "tls/" + name, Mode: 0o644, Size: int64(len(body))})
			_, _ = tw.Write([]byte(body))
		}
		_ = tw.Close()
		if err := docker.CopyToContainer(ctx, created.ID, "/", &buf, container.CopyToContainerOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitC, errC := docker.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatal(err)
	}
	logs, err := docker.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	var out bytes.Buffer
	_, _ = stdcopy.StdCopy(&out, &out, logs)
	return out.String()
}

// checkKeyring asks the server for every member's keyring: key alone, primary everywhere.
func (n *secretsNodes) checkKeyring(ctx context.Context, key, token string) {
	n.t.Helper()
	h, _ := n.open(ctx, n.server)
	api, err := h.Consul(conn.ConsulConfig{Token: token})
	if err != nil {
		n.t.Fatal(err)
	}
	pools, err := api.Operator().KeyringList((&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		n.t.Fatal(err)
	}
	for _, p := range pools {
		if p.WAN {
			continue
		}
		if len(p.Keys) != 1 || p.Keys[key] != 2 || p.PrimaryKeys[key] != 2 || p.NumNodes != 2 {
			n.t.Errorf("LAN keyring of %d nodes: %d keys, the new key on %d, primary on %d; want the new key alone on both nodes",
				p.NumNodes, len(p.Keys), p.Keys[key], p.PrimaryKeys[key])
		}
	}
}

// swarmSecrets reads the join tokens and the unlock key through the manager.
func (n *secretsNodes) swarmSecrets(ctx context.Context) (dockerswarm.Swarm, string) {
	n.t.Helper()
	_, docker := n.open(ctx, n.server)
	sw, err := docker.SwarmInspect(ctx)
	if err != nil {
		n.t.Fatal(err)
	}
	key, err := docker.SwarmGetUnlockKey(ctx)
	if err != nil {
		n.t.Fatal(err)
	}
	return sw, key.UnlockKey
}

// serverFile is one file of the Consul server container.
func (n *secretsNodes) serverFile(ctx context.Context, path string) []byte {
	n.t.Helper()
	_, docker := n.open(ctx, n.server)
	rc, _, err := docker.CopyFromContainer(ctx, consul.DefaultServerContainerName, path)
	if err != nil {
		n.t.Fatalf("reading %s from the server container: %v", path, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		n.t.Fatal(err)
	}
	body, err := io.ReadAll(tr)
	if err != nil {
		n.t.Fatal(err)
	}
	return body
}

// inspectAll is the inspect output of every container on every node, and of every swarm
// service on the manager: what `docker inspect` shows anyone on the node.
func (n *secretsNodes) inspectAll(ctx context.Context) map[string][]byte {
	n.t.Helper()
	out := map[string][]byte{}
	for name := range n.targets {
		_, docker := n.open(ctx, name)
		list, err := docker.ContainerList(ctx, container.ListOptions{All: true})
		if err != nil {
			n.t.Fatal(err)
		}
		for _, c := range list {
			info, err := docker.ContainerInspect(ctx, c.ID)
			if err != nil {
				n.t.Fatal(err)
			}
			raw, _ := json.Marshal(info)
			out[fmt.Sprintf("docker inspect of container %s on %s", strings.TrimPrefix(info.Name, "/"), name)] = raw
		}
		if len(list) == 0 {
			n.t.Fatalf("no container on %s: the search would prove nothing", name)
		}
		if name == n.server {
			services, err := docker.ServiceList(ctx, dockerswarm.ServiceListOptions{})
			if err != nil {
				n.t.Fatal(err)
			}
			raw, _ := json.Marshal(services)
			out["docker service inspect on "+name] = raw
		}
	}
	return out
}

// newACLToken is a random UUID (version 4), as `uuidgen` prints.
func newACLToken(t *testing.T) string {
	token, err := consul.NewACLToken()
	if err != nil {
		t.Fatal(err)
	}
	return token
}
