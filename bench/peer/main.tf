# The peer of issue #29: what users pick today to get the same infrastructure as
# microswarm's `-target`ed demo (bench/perf.sh's "infra"): droplets running Docker, a
# Consul server on each of the first three with a leader and a client agent on each of the
# rest, a swarm of one manager (three from 9 nodes up) and the rest workers. The official
# digitalocean provider makes the droplets; Terraform's remote-exec provisioner and the ssh
# binary (for the swarm's join tokens, which no provisioner can hand from one node to
# another) do the rest over SSH, as its docs and the usual guides show.
# bench/peer.sh applies it on the local cloud, next to microswarm, and times both.
#
# Kept as close to the demo as the peer allows: the docker-20-04 image (UFW on, so the
# Consul and swarm ports are opened from the private network), Consul 1.20.5 on the host
# network with gossip encryption and `raft_multiplier = 1`, client API on loopback only.
# What it leaves out that the demo does: Consul's TLS and ACLs, pinned SSH host keys
# (remote-exec accepts any host key), Docker's API behind TLS, and any repair of a node
# that fails: a provisioner that fails taints its resource, nothing more.
terraform {
  required_providers {
    digitalocean = {
      source = "digitalocean/digitalocean"
    }
  }
}

# DIGITALOCEAN_API_URL and DIGITALOCEAN_TOKEN come from the environment (the local cloud).
provider "digitalocean" {}

variable "nodes" {
  type    = number
  default = 3
}

variable "ssh_public_key" {
  type = string
}

variable "ssh_private_key_file" {
  type = string
}

# The region's VPC range (DigitalOcean's default VPC of the region: 10.x on the real cloud).
variable "private_cidr" {
  type = string
}

variable "gossip_key" {
  type      = string
  sensitive = true
}

locals {
  servers    = min(3, var.nodes)
  managers   = var.nodes >= 9 ? 3 : 1
  server_ips = slice(digitalocean_droplet.node[*].ipv4_address_private, 0, local.servers)
  # The ssh binary's options for the join token: a throwaway known_hosts, like remote-exec,
  # which checks no host key.
  ssh = "ssh -i ${var.ssh_private_key_file} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10"
}

resource "digitalocean_ssh_key" "peer" {
  name       = "peer-bench"
  public_key = var.ssh_public_key
}

resource "digitalocean_droplet" "node" {
  count    = var.nodes
  name     = "peer-${count.index}"
  image    = "docker-20-04"
  region   = "nyc3"
  size     = "s-1vcpu-1gb"
  ssh_keys = [digitalocean_ssh_key.peer.fingerprint]
  tags     = ["peer"]

  connection {
    host        = self.ipv4_address
    user        = "root"
    private_key = file(var.ssh_private_key_file)
    # /tmp is noexec on the image: remote-exec puts its script in /root.
    script_path = "/root/terraform_%RAND%.sh"
  }

  # The image's UFW lets in only ssh and 2375-2376: open Consul's and the swarm's ports to
  # the private network.
  provisioner "remote-exec" {
    inline = [
      "until docker info >/dev/null 2>&1; do sleep 1; done",
      "for p in 8300:8302/tcp 8301:8302/udp 2377/tcp 7946/tcp 7946/udp 4789/udp; do ufw allow proto $${p#*/} from ${var.private_cidr} to any port $${p%/*} >/dev/null; done",
    ]
  }
}

resource "terraform_data" "consul" {
  count            = local.servers
  triggers_replace = [digitalocean_droplet.node[count.index].id]

  connection {
    host        = digitalocean_droplet.node[count.index].ipv4_address
    user        = "root"
    private_key = file(var.ssh_private_key_file)
    # /tmp is noexec on the image: remote-exec puts its script in /root.
    script_path = "/root/terraform_%RAND%.sh"
  }

  # A server on the host network, then wait until the cluster has a leader.
  provisioner "remote-exec" {
    inline = [
      "docker rm -f consul-server >/dev/null 2>&1 || true",
      join(" ", concat([
        "docker run -d --name consul-server --restart unless-stopped --net host hashicorp/consul:1.20.5 agent -server",
        "-bootstrap-expect=${local.servers} -bind=${digitalocean_droplet.node[count.index].ipv4_address_private} -client=127.0.0.1",
        "-encrypt=${var.gossip_key} -hcl='performance { raft_multiplier = 1 }'",
      ], [for ip in local.server_ips : "-retry-join=${ip}"])),
      "until docker exec consul-server consul operator raft list-peers >/dev/null 2>&1; do sleep 1; done",
    ]
  }
}

# A client agent on every other node, joined to the servers.
resource "terraform_data" "consul_agent" {
  count            = var.nodes - local.servers
  triggers_replace = [digitalocean_droplet.node[local.servers + count.index].id]

  connection {
    host        = digitalocean_droplet.node[local.servers + count.index].ipv4_address
    user        = "root"
    private_key = file(var.ssh_private_key_file)
    # /tmp is noexec on the image: remote-exec puts its script in /root.
    script_path = "/root/terraform_%RAND%.sh"
  }

  provisioner "remote-exec" {
    inline = [
      "docker rm -f consul-agent >/dev/null 2>&1 || true",
      join(" ", concat([
        "docker run -d --name consul-agent --restart unless-stopped --net host hashicorp/consul:1.20.5 agent",
        "-bind=${digitalocean_droplet.node[local.servers + count.index].ipv4_address_private} -client=127.0.0.1 -encrypt=${var.gossip_key}",
      ], [for ip in local.server_ips : "-retry-join=${ip}"])),
      "until docker exec consul-agent consul members 2>/dev/null | grep -qw server; do sleep 1; done",
    ]
  }
}

resource "terraform_data" "swarm_manager" {
  triggers_replace = [digitalocean_droplet.node[0].id]

  connection {
    host        = digitalocean_droplet.node[0].ipv4_address
    user        = "root"
    private_key = file(var.ssh_private_key_file)
    # /tmp is noexec on the image: remote-exec puts its script in /root.
    script_path = "/root/terraform_%RAND%.sh"
  }

  provisioner "remote-exec" {
    inline = [
      "docker info --format '{{.Swarm.LocalNodeState}}' | grep -qx active || docker swarm init --advertise-addr ${digitalocean_droplet.node[0].ipv4_address_private}",
    ]
  }

  # The join tokens, fetched once into files beside the configuration: one SSH connection
  # per joining node against the manager would pass `ufw limit ssh` (six in 30 s).
  provisioner "local-exec" {
    command = <<-EOT
      set -e
      for role in worker manager; do
        ${local.ssh} root@${digitalocean_droplet.node[0].ipv4_address} docker swarm join-token -q $role >"${path.module}/.swarm-$role-token"
      done
    EOT
  }
}

# The ssh binary joins each node with the token the manager's provisioner fetched, as a
# manager for the first ones (from 9 nodes up), as a worker for the rest.
resource "terraform_data" "swarm_worker" {
  count            = var.nodes - 1
  triggers_replace = [digitalocean_droplet.node[count.index + 1].id, terraform_data.swarm_manager.id]

  provisioner "local-exec" {
    command = <<-EOT
      set -e
      token=$(cat "${path.module}/.swarm-${count.index + 1 < local.managers ? "manager" : "worker"}-token")
      ${local.ssh} root@${digitalocean_droplet.node[count.index + 1].ipv4_address} \
        "docker info --format '{{.Swarm.LocalNodeState}}' | grep -qx active || docker swarm join --token $token ${digitalocean_droplet.node[0].ipv4_address_private}:2377"
    EOT
  }
}
