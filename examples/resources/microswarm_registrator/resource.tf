# A registrator on every node of the swarm, each publishing its node's containers and
# swarm tasks into the Consul agent on that node (127.0.0.1:8500 by default). It needs
# the swarm and a Consul agent or server on every node.
resource "microswarm_registrator" "this" {
  host     = microswarm_droplet_node.manager[0].docker_host
  host_key = microswarm_droplet_node.manager[0].ssh_host_key

  # Full resync every 30 s, and this node's stale registrations removed.
  resync  = 30
  cleanup = true
  tags    = ["prod"]

  depends_on = [microswarm_swarm_cluster.this, microswarm_consul_server.this, microswarm_consul_agent.this]
}

# A service then tells the registrator how to publish it with registrator's keys, as
# container labels (seen on every node) or env:
#   SERVICE_NAME=web  SERVICE_TAGS=api,v2  SERVICE_CHECK_HTTP=/health
# A task on an overlay network is registered at its overlay address and container port;
# its Docker HEALTHCHECK becomes a Consul TTL check.
