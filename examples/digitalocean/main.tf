# The demo cluster on the real DigitalOcean API. Needs DIGITALOCEAN_TOKEN and an SSH key:
#   export DIGITALOCEAN_TOKEN=... MICROSWARM_SSH_PRIVATE_KEY_FILE=~/.ssh/id_ed25519
#   terraform init && terraform apply
terraform {
  required_providers {
    microswarm = {
      source = "microswarm/microswarm"
    }
  }
}

provider "microswarm" {}

variable "region" {
  type    = string
  default = "fra1"
}

resource "microswarm_droplet_node" "node" {
  count      = 3
  name       = "microswarm-${count.index}"
  region     = var.region
  size       = "s-1vcpu-2gb"
  monitoring = true
  tags       = ["microswarm-demo"]
}

output "nodes" {
  value = {
    for n in microswarm_droplet_node.node : n.name => {
      docker_host = n.docker_host
      private_ip  = n.ipv4_address_private
      host_key    = n.ssh_host_key
    }
  }
}
