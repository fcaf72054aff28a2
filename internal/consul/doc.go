// Package consul runs Consul server and client agents as containers on a Docker host and
// watches them through the Consul API.
//
// A Spec says what one agent should be; it renders the container (image, flags, labels,
// data volume, a config file for the secrets) and a hash of all of it, so a container
// whose config drifted is recognisable. Ensure finds or creates the container (safe to
// re-run after a failure), Replace swaps it for a new spec keeping its data, Leave makes
// the agent leave the cluster gracefully, and RollingRestart replaces a server only while
// every other server is healthy, one server at a time across the cluster, under a Consul
// lock.
package consul
