# The `make demo` cluster on the local cloud: three droplet nodes, a three-server Consul
# quorum on them, a swarm over them (one manager, two workers), a registrator on every
# node publishing its containers into Consul, a demo app deployed blue/green behind an
# HAProxy on every node (v1 blue live, v2 green ready), and Consul's health of it all.
# A droplet found off is replaced by the next apply (when_off defaults to "replace").
# Secure by default: Consul's gossip is encrypted, its RPC and HTTP API need TLS with a
# client certificate, and its ACLs deny what no token allows; no key or token is stored in
# the state (ephemeral variables into write-only arguments and the provider block).
# tools/demo.sh sets DIGITALOCEAN_API_URL, DIGITALOCEAN_TOKEN,
# MICROSWARM_SSH_PRIVATE_KEY_FILE, TF_VAR_gossip_key and the TF_VAR_consul_* variables
# (made once by `bin/democheck -consul-secrets .demo/consul`).
terraform {
  required_providers {
    microswarm = {
      source = "microswarm/microswarm"
    }
  }
}

# The provider reads Consul (the switch gate, the health data sources) over HTTPS with the
# certificate, as the least-privilege tokens it makes with the management token. Terraform
# never stores provider settings.
provider "microswarm" {
  consul_ca_pem           = var.consul_ca_pem
  consul_client_cert_pem  = var.consul_cert_pem
  consul_client_key_pem   = var.consul_key_pem
  consul_management_token = var.consul_management_token
}

variable "active" {
  type        = string
  default     = "blue"
  description = "The color of the demo app that takes the traffic: blue (v1) or green (v2)."
}

# Ephemeral: Terraform never writes it into the state or a plan file; encrypt_wo takes it.
variable "proxy_image" {
  description = "The proxies' HAProxy image; bench/proxyimage.sh changes it under load."
  type        = string
  default     = "haproxy:2.6"
}

variable "gossip_key" {
  type        = string
  ephemeral   = true
  sensitive   = true
  description = "Consul gossip encryption key: 32 random bytes, base64 (`consul keygen` or `openssl rand -base64 32`)."
}

variable "gossip_key_version" {
  type        = number
  default     = 1
  description = "Raise it, with a new gossip_key, to rotate the gossip key of the running cluster."
}

variable "consul_ca_pem" {
  type        = string
  description = "PEM CA certificate that signed the Consul agents' certificate."
}

variable "consul_cert_pem" {
  type        = string
  description = "PEM certificate of the Consul agents (server.dc1.consul, localhost, 127.0.0.1; server and client auth)."
}

variable "consul_key_pem" {
  type        = string
  ephemeral   = true
  sensitive   = true
  description = "PEM private key of consul_cert_pem."
}

variable "consul_management_token" {
  type        = string
  ephemeral   = true
  sensitive   = true
  description = "Consul ACL management token (a UUID): it bootstraps the ACL system, and the provider makes every other token with it."
}

variable "consul_token_version" {
  type        = number
  default     = 1
  description = "Raise it when consul_management_token is another management token."
}

variable "nodes" {
  description = "How many droplets. A Consul server on each of the first three (on every one when fewer), a Consul client agent on each of the rest; one swarm manager, three from 9 nodes up; a proxy on every node. bench/perf.sh runs 12."
  type        = number
  default     = 3
  validation {
    condition     = var.nodes >= 1 && var.nodes <= 24 && floor(var.nodes) == var.nodes
    error_message = "nodes must be a whole number from 1 to 24."
  }
}

locals {
  servers    = min(3, var.nodes)
  managers   = var.nodes >= 9 ? 3 : 1
  server_ips = slice(microswarm_droplet_node.node[*].ipv4_address_private, 0, local.servers)
}

resource "microswarm_droplet_node" "node" {
  count  = var.nodes
  name   = "demo-${count.index}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
  tags   = ["demo"]
  # No prefetch_images here: on the local cloud every node shares this machine's cores, and
  # pulling while the nodes are set up only moved the work (bench/results.md, 2026-12-04).
}

# A Consul server on each of the first three nodes: the cluster keeps its quorum through
# the loss of one.
resource "microswarm_consul_server" "consul" {
  count            = local.servers
  host             = microswarm_droplet_node.node[count.index].docker_host
  host_key         = microswarm_droplet_node.node[count.index].ssh_host_key
  advertise_addr   = microswarm_droplet_node.node[count.index].ipv4_address_private
  bootstrap_expect = local.servers
  retry_join       = local.server_ips
  # Raft at full speed (HashiCorp's advice for production): a leader in about a second.
  raft_multiplier = 1

  encrypt_wo         = var.gossip_key
  encrypt_wo_version = var.gossip_key_version

  tls = {
    ca_pem     = var.consul_ca_pem
    cert_pem   = var.consul_cert_pem
    key_pem_wo = var.consul_key_pem
  }
  acl                  = { default_policy = "deny" }
  acl_token_wo         = var.consul_management_token
  acl_token_wo_version = var.consul_token_version
}

# A Consul client agent on every other node (none with the default 3 nodes).
resource "microswarm_consul_agent" "agent" {
  count          = var.nodes - local.servers
  host           = microswarm_droplet_node.node[local.servers + count.index].docker_host
  host_key       = microswarm_droplet_node.node[local.servers + count.index].ssh_host_key
  advertise_addr = microswarm_droplet_node.node[local.servers + count.index].ipv4_address_private
  retry_join     = local.server_ips

  encrypt_wo         = var.gossip_key
  encrypt_wo_version = var.gossip_key_version

  tls = {
    ca_pem     = var.consul_ca_pem
    cert_pem   = var.consul_cert_pem
    key_pem_wo = var.consul_key_pem
  }
  acl                  = { default_policy = "deny" }
  acl_token_wo         = var.consul_management_token
  acl_token_wo_version = var.consul_token_version
  depends_on           = [microswarm_consul_server.consul]
}

resource "microswarm_swarm_cluster" "swarm" {
  nodes = { for i, n in microswarm_droplet_node.node : n.name => {
    host           = n.docker_host
    host_key       = n.ssh_host_key
    advertise_addr = n.ipv4_address_private
    role           = i < local.managers ? "manager" : "worker"
  } }
}

# Publishes every container and swarm task of each node into that node's Consul agent,
# over HTTPS, with a token of its own that may write services and nothing else.
resource "microswarm_registrator" "registrator" {
  host                 = microswarm_droplet_node.node[0].docker_host
  host_key             = microswarm_droplet_node.node[0].ssh_host_key
  backend              = "consul-tls://127.0.0.1:8500"
  acl_token_wo         = var.consul_management_token
  acl_token_wo_version = var.consul_token_version
  depends_on           = [microswarm_swarm_cluster.swarm, microswarm_consul_server.consul, microswarm_consul_agent.agent]
}

# The demo app, blue/green: `make demo-switch` flips active with no failed request.
resource "microswarm_microservice" "app" {
  name     = "demo-app"
  host     = microswarm_droplet_node.node[0].docker_host
  host_key = microswarm_droplet_node.node[0].ssh_host_key
  proxy_hosts = [for n in microswarm_droplet_node.node : {
    host     = n.docker_host
    host_key = n.ssh_host_key
  }]

  blue = {
    image    = "microswarm/demo-app:1.0.0"
    replicas = 3
    env      = { COLOR = "blue", SHUTDOWN_DELAY = "1s" }
  }
  green = {
    image    = "microswarm/demo-app:2.0.0"
    replicas = 3
    env      = { COLOR = "green", SHUTDOWN_DELAY = "1s" }
  }
  active      = var.active
  min_healthy = 2
  proxy_image = var.proxy_image

  # The swarm, not Consul nor the registrator: the create gates until the registrator has
  # published the active color's instances passing, so it runs beside theirs, and a
  # destroy removes the app beside the registrator.
  depends_on = [microswarm_swarm_cluster.swarm]
}

# Consul's view, read through node 0's Consul server: the live color of the app, and the
# whole datacenter (every node and instance). `make demo-break` shows them healing. Read
# once every Consul server and the registrator are done too: the app no longer waits for
# them, and a heal's new servers are still joining when it is done.
data "microswarm_health" "app" {
  host       = microswarm_consul_server.consul[0].host
  host_key   = microswarm_consul_server.consul[0].host_key
  service    = microswarm_microservice.app.name
  tag        = microswarm_microservice.app.live_color
  depends_on = [microswarm_consul_server.consul, microswarm_registrator.registrator]
}

data "microswarm_health" "cluster" {
  host       = microswarm_consul_server.consul[0].host
  host_key   = microswarm_consul_server.consul[0].host_key
  depends_on = [microswarm_microservice.app, microswarm_consul_server.consul, microswarm_registrator.registrator]
}

output "health_app" {
  value = "${data.microswarm_health.app.status}: ${data.microswarm_health.app.passing} of ${length(data.microswarm_health.app.instances)} instances of ${data.microswarm_health.app.id} passing"
}

output "health_cluster" {
  value = "${data.microswarm_health.cluster.status}: ${length(data.microswarm_health.cluster.nodes)} nodes, ${data.microswarm_health.cluster.passing} instances passing, ${data.microswarm_health.cluster.critical} critical${length(data.microswarm_health.cluster.failing) > 0 ? " (failing: ${join(", ", data.microswarm_health.cluster.failing)})" : ""}"
}

output "app_endpoints" {
  value = microswarm_microservice.app.endpoints
}

output "app_live" {
  value = "${microswarm_microservice.app.live_color} ${microswarm_microservice.app.live_version}"
}

output "nodes" {
  value = {
    for i, n in microswarm_droplet_node.node : n.name => {
      droplet_id     = n.id
      role           = i < local.managers ? "manager" : "worker"
      docker_host    = n.docker_host
      private_ip     = n.ipv4_address_private
      docker_version = n.docker_version
    }
  }
}

output "consul_leader" {
  value = microswarm_consul_server.consul[0].leader
}

output "swarm_id" {
  value = microswarm_swarm_cluster.swarm.id
}
