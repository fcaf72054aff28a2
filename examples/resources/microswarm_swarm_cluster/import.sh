# Import a swarm by the host of one of its managers. The swarm-wide attributes and one
# `nodes` entry per node (keyed by hostname) are read from that manager; write the
# entries in the configuration as usual (host, host_key, advertise_addr, role): the next
# apply matches them to the swarm's nodes by advertise address and moves no node.
# The manager's SSH host key is recorded on first contact (trust on first use). A
# configured rotate_join_tokens is new to the imported state, so that apply also
# rotates the join tokens once.
terraform import microswarm_swarm_cluster.this ssh://root@203.0.113.10
