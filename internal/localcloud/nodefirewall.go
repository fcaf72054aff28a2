package localcloud

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A DigitalOcean cloud firewall sits in front of a droplet: inbound traffic that no
// inbound rule allows is dropped before the droplet sees it, and outbound traffic that no
// outbound rule allows never leaves, on the public and on the VPC interface, statefully
// (answers to allowed connections pass). Here it is two chains in the mangle table of the
// node's network namespace, hooked into PREROUTING and POSTROUTING for the node's public and
// VPC interfaces only: they see every packet from or to outside, the node's own and its
// containers' (before Docker's port forwarding and the droplet's UFW see it coming in), and
// none of the node's local traffic (loopback, between its containers).

const (
	firewallChain    = "DO-CLOUD-FIREWALL"     // inbound
	firewallOutChain = "DO-CLOUD-FIREWALL-OUT" // outbound
)

// nodeFirewalls remembers which ruleset each node container holds, so that a change to
// the firewalls only touches the nodes it changes.
type nodeFirewalls struct {
	kick    chan struct{} // buffered 1: "something changed, resync"
	mu      sync.Mutex    // serialises applies; guards applied
	applied map[string]string
}

func newNodeFirewalls() *nodeFirewalls {
	return &nodeFirewalls{kick: make(chan struct{}, 1), applied: map[string]string{}}
}

// enforceFirewalls asks the sync loop to bring every node's rules up to date. It never
// blocks, so it may be called with c.mu held.
func (c *Cloud) enforceFirewalls() {
	if c.fw == nil {
		return // an API-only Cloud in tests
	}
	select {
	case c.fw.kick <- struct{}{}:
	default:
	}
}

// firewallsOfLocked returns the firewalls that apply to d; c.mu must be held.
func (c *Cloud) firewallsOfLocked(d *droplet) []*firewall {
	var applying []*firewall
	for _, f := range c.st.Firewalls {
		if containsInt(f.DropletIDs, d.ID) {
			applying = append(applying, f)
			continue
		}
		for _, tag := range f.Tags {
			if d.hasTag(tag) {
				applying = append(applying, f)
				break
			}
		}
	}
	return applying
}

// firewallRulesLocked is the iptables-restore input for d's two chains: empty when no
// firewall applies to d (the chains then let everything through). c.mu must be held.
func (c *Cloud) firewallRulesLocked(d *droplet) string {
	applying := c.firewallsOfLocked(d)
	if len(applying) == 0 {
		return ""
	}
	var b strings.Builder
	rule := func(chain, flag string, peer netip.Prefix, protocol, ports string) {
		b.WriteString("-A " + chain)
		if peer.Bits() != 0 {
			b.WriteString(" " + flag + " " + peer.String())
		}
		b.WriteString(" -p " + protocol)
		if from, to, ok := portRange(ports); ok && from != 0 && protocol != "icmp" {
			b.WriteString(" -m " + protocol + " --dport " + strconv.Itoa(from))
			if to != from {
				b.WriteString(":" + strconv.Itoa(to))
			}
		}
		b.WriteString(" -j RETURN\n")
	}
	for _, chain := range []string{firewallChain, firewallOutChain} {
		b.WriteString("-A " + chain + " -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN\n")
		for _, f := range applying {
			if chain == firewallChain {
				for _, r := range f.InboundRules {
					for _, source := range c.peersLocked(r.Sources) {
						rule(chain, "-s", source, r.Protocol, r.Ports)
					}
				}
				continue
			}
			for _, r := range f.OutboundRules {
				for _, dest := range c.peersLocked(r.Destinations) {
					rule(chain, "-d", dest, r.Protocol, r.Ports)
				}
			}
		}
		b.WriteString("-A " + chain + " -j DROP\n")
	}
	return b.String()
}

// peersLocked resolves a rule's sources or destinations to IPv4 prefixes: its addresses, and both
// addresses of each droplet it names or that carries one of its tags. IPv6 sources are
// left out (the nodes have no IPv6); load balancers and Kubernetes clusters do not exist
// here. c.mu must be held.
func (c *Cloud) peersLocked(t ruleTarget) []netip.Prefix {
	var out []netip.Prefix
	add := func(p netip.Prefix) {
		if p.IsValid() && p.Addr().Is4() && !containsPrefix(out, p.Masked()) {
			out = append(out, p.Masked())
		}
	}
	for _, a := range t.Addresses {
		if p, err := netip.ParsePrefix(a); err == nil {
			add(p)
		} else if addr, err := netip.ParseAddr(a); err == nil {
			add(netip.PrefixFrom(addr, addr.BitLen()))
		}
	}
	for _, d := range c.sortedDropletsLocked() {
		named := containsInt(t.DropletIDs, d.ID)
		for _, tag := range t.Tags {
			named = named || d.hasTag(tag)
		}
		if !named {
			continue
		}
		for _, ip := range []string{d.PublicIP, d.PrivateIP} {
			if addr, err := netip.ParseAddr(ip); err == nil {
				add(netip.PrefixFrom(addr, 32))
			}
		}
	}
	return out
}

func containsPrefix(list []netip.Prefix, p netip.Prefix) bool {
	for _, x := range list {
		if x == p {
			return true
		}
	}
	return false
}

// firewallScript loads rules into the node's chains and hooks them into PREROUTING (in)
// and POSTROUTING (out) for the interfaces holding the droplet's public and private
// addresses.
func firewallScript(rules, publicIP, privateIP string) string {
	return fmt.Sprintf(`set -e
iptables-restore --noflush <<'RULES'
*mangle
:%[1]s - [0:0]
:%[2]s - [0:0]
%[3]sCOMMIT
RULES
for addr in %[4]s %[5]s; do
  dev=$(ip -o -4 addr show | awk -v a="$addr" '{split($4, p, "/"); if (p[1] == a) print $2}')
  [ -n "$dev" ] || { echo "no interface holds $addr" >&2; exit 1; }
  iptables -t mangle -C PREROUTING -i "$dev" -j %[1]s 2>/dev/null ||
    iptables -t mangle -I PREROUTING 1 -i "$dev" -j %[1]s
  iptables -t mangle -C POSTROUTING -o "$dev" -j %[2]s 2>/dev/null ||
    iptables -t mangle -I POSTROUTING 1 -o "$dev" -j %[2]s
done`, firewallChain, firewallOutChain, rules, shellQuote(publicIP), shellQuote(privateIP))
}

// applyNodeFirewall brings one node's chain to what the firewalls say now. force forgets
// what the node held (a node that restarted lost its rules), so they go in again.
func (c *Cloud) applyNodeFirewall(ctx context.Context, dropletID int, force bool) error {
	c.fw.mu.Lock()
	defer c.fw.mu.Unlock()
	c.mu.Lock()
	d := c.st.droplet(dropletID)
	if d == nil || d.ContainerID == "" {
		c.mu.Unlock()
		return nil
	}
	containerID, publicIP, privateIP := d.ContainerID, d.PublicIP, d.PrivateIP
	rules := c.firewallRulesLocked(d)
	c.mu.Unlock()

	if force {
		delete(c.fw.applied, containerID) // a node that restarted holds no rules
	}
	// A node never given rules holds none: nothing to do until a firewall covers it.
	if held, known := c.fw.applied[containerID]; held == rules && (known || rules == "") {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if out, err := c.nodes.runInNode(ctx, containerID, firewallScript(rules, publicIP, privateIP)); err != nil {
		delete(c.fw.applied, containerID)
		return fmt.Errorf("cloud firewall: %v: %s", err, strings.TrimSpace(out))
	}
	c.fw.applied[containerID] = rules
	return nil
}

// syncFirewalls applies the firewalls to every running node whenever enforceFirewalls
// asks, and retries nodes that failed, until the cloud closes.
func (c *Cloud) syncFirewalls() {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.fw.kick:
		case <-retry.C:
		}
		c.mu.Lock()
		var ids []int
		for _, d := range c.sortedDropletsLocked() {
			if d.ContainerID != "" && d.Status == statusActive {
				ids = append(ids, d.ID)
			}
		}
		c.mu.Unlock()
		failed := false
		for _, id := range ids {
			if err := c.applyNodeFirewall(c.ctx, id, false); err != nil && c.ctx.Err() == nil {
				c.logf("droplet %d: %v (retrying)", id, err)
				failed = true
			}
		}
		if failed {
			retry.Reset(2 * time.Second)
		}
	}
}
