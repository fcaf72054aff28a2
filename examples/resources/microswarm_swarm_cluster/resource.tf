resource "microswarm_droplet_node" "manager" {
  count  = 3
  name   = "manager-${count.index}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
}

resource "microswarm_droplet_node" "worker" {
  count  = 2
  name   = "worker-${count.index}"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
}

# Three managers (they tolerate the loss of one) and two workers. Entries are keyed by
# name: adding or removing one joins or drains and removes only that node, and changing
# an entry's role promotes or demotes it in place.
resource "microswarm_swarm_cluster" "this" {
  nodes = merge(
    { for i, n in microswarm_droplet_node.manager : "m${i}" => {
      host           = n.docker_host
      host_key       = n.ssh_host_key
      advertise_addr = n.ipv4_address_private
      role           = "manager"
    } },
    { for i, n in microswarm_droplet_node.worker : "w${i}" => {
      host           = n.docker_host
      host_key       = n.ssh_host_key
      advertise_addr = n.ipv4_address_private
      role           = "worker"
    } },
  )

  task_history_limit = 10
  autolock           = true

  # Change to rotate both join tokens (which the state never holds).
  rotate_join_tokens = "2026-11"

  timeouts = {
    update = "30m" # removing a node waits until its tasks have moved
  }
}

output "swarm_id" {
  value = microswarm_swarm_cluster.this.id
}

# The join tokens and the unlock key are never in the state: the provider reads them from a
# manager when it needs them. With autolock, keep the unlock key in your secret store too
# (`docker swarm unlock-key -q` on a manager): with every manager locked, only it unlocks one.
