# The examples/local stack on the real DigitalOcean cloud: three droplets in their own VPC
# behind a cloud firewall, a three-server Consul quorum, a swarm (one manager, two workers),
# a registrator on every node and a demo app deployed blue/green behind an HAProxy on every
# node. See README.md beside this file for how to run it, what it costs and what destroy
# removes.
#
#   export DIGITALOCEAN_TOKEN=...                                   # both providers read it
#   export MICROSWARM_SSH_PRIVATE_KEY_FILE=~/.ssh/id_ed25519        # unencrypted
#   export TF_VAR_gossip_key="$(openssl rand -base64 32)"
#   terraform init && terraform apply
terraform {
  required_providers {
    microswarm = {
      source = "microswarm/microswarm"
    }
    digitalocean = {
      source  = "digitalocean/digitalocean"
      version = "~> 2.0"
    }
  }
}

# DIGITALOCEAN_TOKEN and MICROSWARM_SSH_PRIVATE_KEY_FILE come from the environment.
provider "microswarm" {}

# DIGITALOCEAN_TOKEN comes from the environment.
provider "digitalocean" {}

variable "name" {
  type        = string
  default     = "microswarm-demo"
  description = "Prefix of every name (droplets NAME-0..2, the VPC, the firewall, the tag)."
}

variable "region" {
  type        = string
  default     = "fra1"
  description = "DigitalOcean region slug."
}

variable "size" {
  type        = string
  default     = "s-1vcpu-2gb"
  description = "Droplet size slug, for each of the three nodes."
}

variable "ssh_keys" {
  type        = list(string)
  default     = []
  description = "IDs or MD5 fingerprints of SSH keys already in your account to install for root as well (your login key). The provider's own key (MICROSWARM_SSH_PRIVATE_KEY_FILE) is always registered and installed."
}

variable "ssh_public_key" {
  type        = string
  default     = null
  description = "An OpenSSH public key (`ssh-ed25519 AAAA...`) not yet in your account: it is added to the account and installed for root. Leave unset to use ssh_keys only."
}

variable "ssh_source_addresses" {
  type        = list(string)
  default     = ["0.0.0.0/0", "::/0"]
  description = "Who may reach SSH (port 22): the machine running Terraform must be among them. Narrow it to your own address."
}

variable "gossip_key" {
  type        = string
  sensitive   = true
  description = "Consul gossip encryption key: 32 random bytes, base64 (`openssl rand -base64 32` or `consul keygen`)."
}

variable "active" {
  type        = string
  default     = "blue"
  description = "The color of the app that takes the traffic: blue (v1) or green (v2)."
}

variable "blue_image" {
  type        = string
  default     = "microswarm/demo-app:1.0.0"
  description = "Image of the blue color. Any HTTP service on port 8080 that answers 2xx on /health will do."
}

variable "green_image" {
  type        = string
  default     = "microswarm/demo-app:2.0.0"
  description = "Image of the green color."
}

locals {
  app_port = 80

  # Consul (server RPC, LAN and WAN gossip, HTTP, DNS) and swarm (management, node gossip,
  # overlay VXLAN): open between the nodes, from the VPC's range only.
  vpc_only = [
    { protocol = "tcp", ports = "8300-8302" },
    { protocol = "udp", ports = "8301-8302" },
    { protocol = "tcp", ports = "8500" },
    { protocol = "tcp", ports = "8600" },
    { protocol = "udp", ports = "8600" },
    { protocol = "tcp", ports = "2377" },
    { protocol = "tcp", ports = "7946" },
    { protocol = "udp", ports = "7946" },
    { protocol = "udp", ports = "4789" },
  ]
}

resource "digitalocean_vpc" "cluster" {
  name        = var.name
  region      = var.region
  description = "microswarm nodes: Consul and swarm traffic stays in here"
}

# The firewall follows the tag, so every node is covered from its first boot.
resource "digitalocean_tag" "cluster" {
  name = var.name
}

resource "digitalocean_firewall" "cluster" {
  name = var.name
  tags = [digitalocean_tag.cluster.name]

  # From the internet: SSH (the provider's only way in) and the app.
  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = var.ssh_source_addresses
  }
  inbound_rule {
    protocol         = "tcp"
    port_range       = tostring(local.app_port)
    source_addresses = ["0.0.0.0/0", "::/0"]
  }

  # Between the nodes only.
  dynamic "inbound_rule" {
    for_each = local.vpc_only
    content {
      protocol         = inbound_rule.value.protocol
      port_range       = inbound_rule.value.ports
      source_addresses = [digitalocean_vpc.cluster.ip_range]
    }
  }

  # Out: anything (image pulls, package updates, DNS).
  outbound_rule {
    protocol              = "tcp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
  outbound_rule {
    protocol              = "udp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
  outbound_rule {
    protocol              = "icmp"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
}

resource "digitalocean_ssh_key" "login" {
  count      = var.ssh_public_key == null ? 0 : 1
  name       = "${var.name}-login"
  public_key = var.ssh_public_key
}

resource "microswarm_droplet_node" "node" {
  count      = 3
  name       = "${var.name}-${count.index}"
  region     = var.region
  size       = var.size
  vpc_uuid   = digitalocean_vpc.cluster.id
  tags       = [digitalocean_tag.cluster.name]
  ssh_keys   = concat(var.ssh_keys, digitalocean_ssh_key.login[*].fingerprint)
  monitoring = true

  # DigitalOcean's Docker image turns on UFW with only ssh (rate-limited), 2375 and 2376
  # open, which would block Consul and swarm between the nodes. firewall = "stack" (the
  # default) opens exactly their ports on the private interface, and SSH past the rate
  # limit; the app's port needs no rule, Docker forwards it past UFW. The cloud firewall
  # above still decides what reaches a node.
  firewall = "stack"

  # Pulled in the background from the moment the node answers, in this order, while it is
  # set up and Consul and the swarm form. Literals, not the image variables: a change here is
  # an update in place of every node (acted on only by new droplets).
  prefetch_images = ["hashicorp/consul:1.20.5", "microswarm/registrator:0.1.0", "haproxy:2.6", "microswarm/demo-app:1.0.0", "microswarm/demo-app:2.0.0"]

  depends_on = [digitalocean_firewall.cluster]
}

# A Consul server on every node: the cluster keeps its quorum through the loss of one.
resource "microswarm_consul_server" "consul" {
  count            = length(microswarm_droplet_node.node)
  host             = microswarm_droplet_node.node[count.index].docker_host
  host_key         = microswarm_droplet_node.node[count.index].ssh_host_key
  advertise_addr   = microswarm_droplet_node.node[count.index].ipv4_address_private
  bootstrap_expect = 3
  retry_join       = microswarm_droplet_node.node[*].ipv4_address_private
  encrypt          = var.gossip_key
  # Raft at full speed (HashiCorp's advice for production): a leader in about a second.
  raft_multiplier = 1
}

resource "microswarm_swarm_cluster" "swarm" {
  nodes = { for i, n in microswarm_droplet_node.node : n.name => {
    host           = n.docker_host
    host_key       = n.ssh_host_key
    advertise_addr = n.ipv4_address_private
    role           = i == 0 ? "manager" : "worker"
  } }
}

# Publishes every container and swarm task of each node into that node's Consul agent.
resource "microswarm_registrator" "registrator" {
  host       = microswarm_droplet_node.node[0].docker_host
  host_key   = microswarm_droplet_node.node[0].ssh_host_key
  depends_on = [microswarm_swarm_cluster.swarm, microswarm_consul_server.consul]
}

# The app, blue/green behind an HAProxy on every node: change var.active to switch.
resource "microswarm_microservice" "app" {
  name     = "demo-app"
  host     = microswarm_droplet_node.node[0].docker_host
  host_key = microswarm_droplet_node.node[0].ssh_host_key
  proxy_hosts = [for n in microswarm_droplet_node.node : {
    host     = n.docker_host
    host_key = n.ssh_host_key
  }]
  listen_port = local.app_port

  blue = {
    image    = var.blue_image
    replicas = 3
    env      = { COLOR = "blue" }
  }
  green = {
    image    = var.green_image
    replicas = 3
    env      = { COLOR = "green" }
  }
  active      = var.active
  min_healthy = 2

  # The swarm only: the create gates until Consul answers and the registrator has
  # published blue passing, so it runs beside their creates.
  depends_on = [microswarm_swarm_cluster.swarm]
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
      droplet_id  = n.id
      role        = i == 0 ? "manager" : "worker"
      public_ip   = n.ipv4_address
      private_ip  = n.ipv4_address_private
      docker_host = n.docker_host
    }
  }
}

output "consul_leader" {
  value = microswarm_consul_server.consul[0].leader
}

output "swarm_id" {
  value = microswarm_swarm_cluster.swarm.id
}
