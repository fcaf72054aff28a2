terraform {
  required_providers {
    microswarm = {
      source = "microswarm/microswarm"
    }
  }
}

# Every attribute can come from the environment instead:
# DIGITALOCEAN_TOKEN, DIGITALOCEAN_API_URL, MICROSWARM_SSH_PRIVATE_KEY_FILE, ...
provider "microswarm" {
  do_token             = var.do_token
  ssh_private_key_file = pathexpand("~/.ssh/microswarm_ed25519")
  host_key_policy      = "strict"
  connect_timeout      = "30s"
  # Stacks sharing an account and SSH key tell their droplets apart by it.
  stack_id = terraform.workspace
}

variable "do_token" {
  type      = string
  sensitive = true
}
