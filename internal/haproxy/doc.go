// Package haproxy holds what the blue/green proxy of a microservice needs from HAProxy:
// a Runtime API client (the admin socket's text protocol, one command per connection,
// HAProxy's textual complaints turned into errors) and the renderer of the proxy's
// config and routing map.
//
// Routing is data, not config: the frontend reads the active color and the canary share
// from a map on every request, so `set map` switches all following requests at once and
// no reload (which drops requests) is ever needed. `set map` changes only memory; the map
// file is what a restarted HAProxy loads, so a switch must rewrite it too (RenderMap).
package haproxy
