variable "gossip_key" {
  description = "Output of `consul keygen`, the same as the servers'."
  type        = string
  sensitive   = true
}

variable "consul_servers" {
  description = "Private addresses of the Consul servers."
  type        = list(string)
}

resource "microswarm_droplet_node" "worker" {
  count  = 2
  name   = "worker-${count.index}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
}

# A client agent on every worker, so services there register with their local agent.
resource "microswarm_consul_agent" "this" {
  count          = 2
  host           = microswarm_droplet_node.worker[count.index].docker_host
  host_key       = microswarm_droplet_node.worker[count.index].ssh_host_key
  advertise_addr = microswarm_droplet_node.worker[count.index].ipv4_address_private
  retry_join     = var.consul_servers
  encrypt        = var.gossip_key
}
