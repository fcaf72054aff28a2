package swarm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// MaxSubnetSize is the longest prefix swarm carves overlay subnets with: a /30 leaves no
// address for tasks once the network and gateway take theirs.
const MaxSubnetSize = 29

var interfacePattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)

// CheckAdvertiseAddr accepts what `docker swarm init --advertise-addr` does, an IP or a
// network interface name with an optional port, but not 0.0.0.0 or ::, which other
// nodes cannot reach, nor a dotted number that is no IP (999.1.1.1).
func CheckAdvertiseAddr(s string) error {
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return errors.New("the port must be 1-65535")
		}
		host = h
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() || ip.IsMulticast() {
			return errors.New("other nodes cannot reach it: give the node's own (private) address")
		}
		return nil
	}
	if strings.Trim(host, "0123456789.") == "" {
		return errors.New("not an IP address")
	}
	if interfacePattern.MatchString(host) {
		return nil
	}
	return errors.New("not an IP address or interface name")
}

// CheckAddrPools checks default_addr_pool: IPv4 networks (swarm carves no IPv6 overlay
// subnets from it) that do not overlap. index is the entry at fault.
func CheckAddrPools(pools []string) (index int, err error) {
	var seen []netip.Prefix
	for i, s := range pools {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return i, fmt.Errorf("%q is not a network in CIDR form", s)
		}
		if !p.Addr().Is4() {
			return i, fmt.Errorf("%q is not IPv4: swarm's address pools are IPv4 only", s)
		}
		if p.Masked() != p {
			return i, fmt.Errorf("%q has host bits set; the network is %s", s, p.Masked())
		}
		for j, q := range seen {
			if p.Overlaps(q) {
				return i, fmt.Errorf("%q overlaps %q (entry %d)", s, pools[j], j)
			}
		}
		seen = append(seen, p)
	}
	return -1, nil
}

// CheckSubnetSize checks subnet_size against the pools: no longer than /29, and no
// shorter than a pool's own prefix (a subnet cannot be larger than its pool).
func CheckSubnetSize(pools []string, size int) error {
	if size > MaxSubnetSize {
		return fmt.Errorf("/%d leaves no addresses for tasks: at most %d", size, MaxSubnetSize)
	}
	for _, s := range pools {
		if p, err := netip.ParsePrefix(s); err == nil && size < p.Bits() {
			return fmt.Errorf("/%d subnets are larger than the pool %s: use %d-%d", size, s, p.Bits(), MaxSubnetSize)
		}
	}
	return nil
}
