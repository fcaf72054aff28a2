// Package haproxy holds what the blue/green proxy of a microservice needs from HAProxy:
// a Runtime API client (the admin socket's text protocol, one command per connection,
// HAProxy's textual complaints turned into errors) and the renderer of the proxy's
// config and routing map.
//
// Routing is data, not config: the frontend reads the active color and the canary share
// from a map on every request, so `set map` switches all following requests at once and
// no reload is needed. `set map` changes only memory, and a restart or reload loads the
// map file again, so a switch writes the file first and then the map (ApplyRouting).
//
// Gate a switch on StatRow.Healthy, not on the status alone: a server-template slot that
// DNS has just filled shows "UP 1/2" before its first check has run.
//
// A config change needs a reload (SIGUSR2 to the master, PID 1 in the image): save
// ServersStateFile to Config.ServerStateFile first, or the new process starts with empty
// server slots and answers 503 until DNS fills them.
package haproxy
