package conn

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Scheme is how a host is reached.
type Scheme string

const (
	SchemeSSH  Scheme = "ssh"
	SchemeUnix Scheme = "unix"
	SchemeTCP  Scheme = "tcp"
)

// Schemes lists the supported host schemes, for validators and docs.
var Schemes = []Scheme{SchemeSSH, SchemeUnix, SchemeTCP}

const defaultSSHPort = 22

// Endpoint is a parsed host string.
type Endpoint struct {
	Scheme Scheme
	// User is the SSH user; empty means the pool's default user.
	User string
	// Host and Port are set for ssh and tcp.
	Host string
	Port int
	// Path is the socket path for unix.
	Path string
}

// ParseEndpoint parses ssh://[user@]host[:port], unix:///path and tcp://host:port.
func ParseEndpoint(raw string) (Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("invalid host %q: %w", raw, err)
	}
	switch Scheme(u.Scheme) {
	case SchemeUnix:
		path := u.Path
		if path == "" {
			path = u.Opaque
		}
		if !strings.HasPrefix(path, "/") {
			return Endpoint{}, fmt.Errorf("invalid host %q: unix hosts need an absolute socket path, e.g. unix:///var/run/docker.sock", raw)
		}
		return Endpoint{Scheme: SchemeUnix, Path: path}, nil
	case SchemeSSH, SchemeTCP:
		if u.Hostname() == "" {
			return Endpoint{}, fmt.Errorf("invalid host %q: no host name", raw)
		}
		if u.Path != "" && u.Path != "/" {
			return Endpoint{}, fmt.Errorf("invalid host %q: a path is not allowed here", raw)
		}
		ep := Endpoint{Scheme: Scheme(u.Scheme), Host: u.Hostname()}
		if u.User != nil {
			if _, hasPassword := u.User.Password(); hasPassword {
				return Endpoint{}, fmt.Errorf("invalid host %q: passwords are not accepted in host strings; use ssh_private_key", raw)
			}
			ep.User = u.User.Username()
		}
		if p := u.Port(); p != "" {
			port, err := strconv.Atoi(p)
			if err != nil || port < 1 || port > 65535 {
				return Endpoint{}, fmt.Errorf("invalid host %q: port must be 1-65535", raw)
			}
			ep.Port = port
		} else if ep.Scheme == SchemeSSH {
			ep.Port = defaultSSHPort
		} else {
			return Endpoint{}, fmt.Errorf("invalid host %q: tcp hosts need a port, e.g. tcp://10.0.0.5:2376", raw)
		}
		if ep.Scheme == SchemeTCP && ep.User != "" {
			return Endpoint{}, fmt.Errorf("invalid host %q: tcp hosts take no user", raw)
		}
		return ep, nil
	case "":
		return Endpoint{}, fmt.Errorf("invalid host %q: no scheme; use ssh://root@IP, unix:///var/run/docker.sock or tcp://IP:2376", raw)
	default:
		return Endpoint{}, fmt.Errorf("invalid host %q: unsupported scheme %q (supported: ssh, unix, tcp)", raw, u.Scheme)
	}
}

// Address is host:port for ssh and tcp endpoints.
func (e Endpoint) Address() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// String renders the endpoint back as a host string.
func (e Endpoint) String() string {
	switch e.Scheme {
	case SchemeUnix:
		return "unix://" + e.Path
	case SchemeSSH:
		user := ""
		if e.User != "" {
			user = e.User + "@"
		}
		if e.Port == defaultSSHPort {
			return "ssh://" + user + formatHost(e.Host)
		}
		return "ssh://" + user + e.Address()
	default:
		return string(e.Scheme) + "://" + e.Address()
	}
}

func formatHost(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}
