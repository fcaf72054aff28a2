# Import a microservice by a swarm manager's Docker host and the service's name,
# `HOST,NAME`. proxy_hosts and the timing settings come from the configuration; the
# manager's host key must be vouched for by ssh_known_hosts_file or host_key_policy.
terraform import microswarm_microservice.web 'ssh://root@203.0.113.10,web'
