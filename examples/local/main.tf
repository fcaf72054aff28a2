# The `make demo` cluster on the local cloud. tools/demo.sh sets DIGITALOCEAN_API_URL,
# DIGITALOCEAN_TOKEN and MICROSWARM_SSH_PRIVATE_KEY_FILE for the provider.
terraform {
  required_providers {
    microswarm = {
      source = "microswarm/microswarm"
    }
  }
}

provider "microswarm" {}

variable "node_count" {
  type        = number
  default     = 3
  description = "How many droplet nodes the demo cluster has."
}

resource "microswarm_droplet_node" "node" {
  count  = var.node_count
  name   = "demo-${count.index}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
  tags   = ["demo"]
}

output "nodes" {
  value = {
    for n in microswarm_droplet_node.node : n.name => {
      docker_host    = n.docker_host
      private_ip     = n.ipv4_address_private
      docker_version = n.docker_version
      host_key       = n.ssh_host_key
    }
  }
}
