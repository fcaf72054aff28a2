// Package conn reaches a Docker host and the Consul agent beside it.
//
// A host is named the way Docker names it: ssh://user@host:port, unix:///path or
// tcp://host:port. Over SSH, both the Docker API (a forwarded unix socket) and the
// Consul HTTP API (a forwarded TCP port) travel through one pooled, host-key-verified
// golang.org/x/crypto/ssh connection, so no ssh or docker binary is ever needed.
package conn
