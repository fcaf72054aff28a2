// Package registrator keeps a node's Consul agent in step with the containers running on
// the node's Docker engine, with gliderlabs/registrator's conventions (SERVICE_* keys in
// env and labels, IDs <hostname>:<container>:<port>) and an understanding of swarm-mode
// tasks: a task on an overlay network is registered with its overlay address, its Docker
// HEALTHCHECK is mirrored into a Consul TTL check (the node's host-network agent cannot
// reach overlay addresses), and a stopping container is deregistered when it is told to
// stop, before it dies.
package registrator
