# The health of the demo app's live color, read through the manager's Consul.
data "microswarm_health" "app" {
  host     = microswarm_droplet_node.manager.docker_host
  host_key = microswarm_droplet_node.manager.ssh_host_key
  service  = "web"
  tag      = "blue"
}

output "app_health" {
  value = "${data.microswarm_health.app.status}: ${data.microswarm_health.app.passing} passing, ${data.microswarm_health.app.critical} critical"
}

# Self-healing: each worker follows its own node's replace_token. The token moves once
# when the node starts failing and never when it recovers, so a failure replaces the
# worker exactly once and the plan after the heal is empty. The data source reads through
# the manager, which is not guarded by it (a resource cannot be replaced by what is read
# through it: that would be a cycle).
data "microswarm_health" "worker" {
  count    = 2
  host     = microswarm_consul_server.manager.host
  host_key = microswarm_consul_server.manager.host_key
  node     = "worker-${count.index}"
}

resource "terraform_data" "worker_health" {
  count = 2
  input = data.microswarm_health.worker[count.index].replace_token
}

resource "microswarm_droplet_node" "worker" {
  count  = 2
  name   = "worker-${count.index}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"

  lifecycle {
    replace_triggered_by = [terraform_data.worker_health[count.index]]
  }
}
