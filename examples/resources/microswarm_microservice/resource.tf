# A service deployed blue/green behind an HAProxy on every node. v1 (blue) takes the
# traffic; v2 (green) runs beside it. Setting active = "green" switches every proxy at
# once with no failed request; setting it back is the rollback. The registrator (on every
# node) publishes both colors in Consul, which gates every switch.
resource "microswarm_microservice" "web" {
  name     = "web"
  host     = microswarm_droplet_node.manager[0].docker_host
  host_key = microswarm_droplet_node.manager[0].ssh_host_key
  proxy_hosts = [for n in microswarm_droplet_node.manager : {
    host     = n.docker_host
    host_key = n.ssh_host_key
  }]
  port        = 8080
  listen_port = 80
  health_path = "/health"

  blue = {
    image    = "microswarm/demo-app:1.0.0"
    replicas = 3
    env      = { COLOR = "blue" }
  }
  green = {
    image    = "microswarm/demo-app:2.0.0"
    replicas = 3
    env      = { COLOR = "green" }
  }

  active        = "blue"
  min_healthy   = 2
  canary_weight = 0     # e.g. 10 sends 10 % of requests to green before the switch
  auto_rollback = "60s" # after a switch, watch green for a minute and switch back if it degrades

  # The swarm only: the create gates until Consul answers and the registrator has
  # published blue passing, so it runs beside their creates.
  depends_on = [microswarm_swarm_cluster.this]
}

output "web_endpoints" {
  value = microswarm_microservice.web.endpoints
}
