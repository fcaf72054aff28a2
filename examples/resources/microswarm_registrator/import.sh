# Import a registrator by a swarm manager's Docker host and the service's name,
# `HOST,SERVICE_NAME`. The manager's host key must be vouched for by the provider's
# ssh_known_hosts_file or accepted under host_key_policy = "accept-new"; the Consul token
# cannot be read back: keep it in the configuration.
terraform import microswarm_registrator.this 'ssh://root@203.0.113.10,registrator'
