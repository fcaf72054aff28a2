# Import a Consul server by its node's Docker host and container name, `HOST,CONTAINER_NAME`.
# The node's SSH host key is recorded on first contact after the import (trust on first
# use); the gossip key and TLS material cannot be read back: keep them, and host_key, in
# the configuration.
terraform import 'microswarm_consul_server.this[0]' 'ssh://root@203.0.113.10,consul-server'
