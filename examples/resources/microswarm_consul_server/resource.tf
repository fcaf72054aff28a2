variable "gossip_key" {
  description = "Output of `consul keygen`."
  type        = string
  sensitive   = true
}

resource "microswarm_droplet_node" "server" {
  count  = 3
  name   = "consul-${count.index}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
}

locals {
  consul_servers = microswarm_droplet_node.server[*].ipv4_address_private
}

# A three-server cluster: it keeps its quorum through the loss of one server, and an image
# change restarts the servers one at a time.
resource "microswarm_consul_server" "this" {
  count            = 3
  host             = microswarm_droplet_node.server[count.index].docker_host
  host_key         = microswarm_droplet_node.server[count.index].ssh_host_key
  advertise_addr   = microswarm_droplet_node.server[count.index].ipv4_address_private
  bootstrap_expect = 3
  raft_multiplier  = 1
  retry_join       = local.consul_servers
  encrypt          = var.gossip_key
  image            = "hashicorp/consul:1.20.5"
  ui               = true
}

output "consul_leader" {
  value = microswarm_consul_server.this[0].leader
}
