package droplet

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// What microswarm_droplet_node does about the node's own firewall (UFW).
const (
	// FirewallStack allows StackPorts in on the private interface, where UFW is installed.
	FirewallStack = "stack"
	// FirewallNone leaves the node's firewall as the image shipped it.
	FirewallNone = "none"
)

// FirewallModes lists the allowed values, for the validator and the docs.
var FirewallModes = []string{FirewallStack, FirewallNone}

// Port is one port range a stack's nodes must reach each other on.
type Port struct {
	From, To int
	Proto    string // "tcp" or "udp"
	Why      string
}

func (p Port) ufwPort() string {
	if p.From == p.To {
		return strconv.Itoa(p.From)
	}
	return fmt.Sprintf("%d:%d", p.From, p.To)
}

// String is the port as the docs write it: 8300-8302/tcp.
func (p Port) String() string {
	return strings.ReplaceAll(p.ufwPort(), ":", "-") + "/" + p.Proto
}

// StackPorts are what Consul and the swarm need between the stack's nodes, and nothing
// else. Besides them, only SSH gets a rule (see sshScript). What needs none:
//   - Consul's HTTP API and DNS (8500, 8600): on the client address, loopback by default;
//     the provider reaches the API through SSH.
//   - The proxy's listen port and every other port a swarm service publishes: Docker
//     forwards them through its own iptables chains, before UFW's INPUT rules see them,
//     so they are reachable from everywhere whatever UFW says.
var StackPorts = []Port{
	{From: 8300, To: 8302, Proto: "tcp", Why: "Consul: server RPC (8300), Serf LAN (8301) and WAN (8302) gossip"},
	{From: 8301, To: 8302, Proto: "udp", Why: "Consul: Serf LAN and WAN gossip"},
	{From: 2377, To: 2377, Proto: "tcp", Why: "swarm: cluster management (joining, the managers' raft)"},
	{From: 7946, To: 7946, Proto: "tcp", Why: "swarm: node gossip"},
	{From: 7946, To: 7946, Proto: "udp", Why: "swarm: node gossip"},
	{From: 4789, To: 4789, Proto: "udp", Why: "swarm: overlay network traffic (VXLAN)"},
}

// sshScript lets the provider's SSH connections through DigitalOcean's `ufw limit ssh`,
// which refuses a sixth new connection from one address within 30 seconds, and keeps
// refusing while the client retries. Every terraform command starts the provider anew and
// each opens a connection per node, so a plan right after an apply, or a test suite, is
// refused. An allow rule for SSH on the public interface, placed before the limit rule, is
// matched first; deleting it brings DigitalOcean's limit back. (It names the interface so
// that UFW sees a rule of its own: `allow 22/tcp` would be taken for the limit rule,
// skipped by `insert` and replace the limit by `allow`, and its deletion would then leave
// SSH closed.)
func sshScript(action, comment string) string {
	rule := `allow in on "$public" to any port 22 proto tcp` + comment + " >/dev/null\n"
	if action != "allow" {
		return "ufw " + action + ` in on "$public" to any port 22 proto tcp >/dev/null` + "\n"
	}
	return `if printf '%s\n' "$status" | grep -q '^\[ *1\]'; then
  ufw insert 1 ` + rule + `else
  ufw ` + rule + `fi
`
}

// stackPortLists groups StackPorts by protocol into UFW's multiport form (8300:8302,2377),
// tcp first: one rule, and one run of ufw (about half a second on a booting node), per
// protocol instead of per port.
func stackPortLists() (protos []string, lists map[string]string) {
	lists = map[string]string{}
	for _, p := range StackPorts {
		if lists[p.Proto] == "" {
			protos = append(protos, p.Proto)
			lists[p.Proto] = p.ufwPort()
		} else {
			lists[p.Proto] += "," + p.ufwPort()
		}
	}
	sort.Strings(protos)
	return protos, lists
}

// ufwComment marks the rules this package adds, so they can be told apart and removed.
const ufwComment = "microswarm stack"

// FirewallResult says what a firewall change found on the node.
type FirewallResult struct {
	// UFW is "active", "inactive" (rules recorded, not enforced) or "absent".
	UFW string
	// Interface is the private interface the rules name ("" when UFW is absent).
	Interface string
}

// firewallScript allows (or, with action "delete allow", removes) StackPorts in on the
// interface that holds the private address. Rules recorded while UFW is off take effect
// when it is enabled; a rule that exists already is skipped by UFW itself.
func firewallScript(publicIP, privateIP netip.Addr, action string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `set -e
holder() { ip -o -4 addr show | awk -v want="$1" '{ split($4, a, "/"); if (a[1] == want) { print $2; exit } }'; }
iface=$(holder %s)
public=$(holder %s)
if ! command -v ufw >/dev/null 2>&1; then echo "absent $iface"; exit 0; fi
[ -n "$iface" ] || { echo "no interface holds the private address %s" >&2; exit 1; }
[ -n "$public" ] || { echo "no interface holds the public address %s" >&2; exit 1; }
`, privateIP, publicIP, privateIP, publicIP)
	comment := " comment '" + ufwComment + "'"
	if action != "allow" {
		comment = "" // a rule is deleted by its terms
	}
	// Read once: whether UFW is active, and whether it has rules (rule changes alter neither).
	b.WriteString("status=$(ufw status numbered)\n")
	b.WriteString(sshScript(action, comment))
	protos, lists := stackPortLists()
	for _, proto := range protos {
		fmt.Fprintf(&b, "ufw %s in on \"$iface\" to any port %s proto %s%s >/dev/null\n", action, lists[proto], proto, comment)
	}
	if action != "allow" {
		// Nodes made before the rules were grouped hold one rule per port; UFW skips a
		// rule that is not there.
		for _, p := range StackPorts {
			fmt.Fprintf(&b, "ufw %s in on \"$iface\" to any port %s proto %s >/dev/null\n", action, p.ufwPort(), p.Proto)
		}
	}
	b.WriteString(`if printf '%s\n' "$status" | grep -q '^Status: active'; then echo "active $iface"; else echo "inactive $iface"; fi
`)
	return b.String()
}

// OpenStackPorts allows StackPorts in on the node's private interface, and SSH on its
// public one past DigitalOcean's rate limit, if UFW is installed; run twice, it changes
// nothing.
func OpenStackPorts(ctx context.Context, run RunFunc, publicIP, privateIP string) (FirewallResult, error) {
	return changeFirewall(ctx, run, publicIP, privateIP, "allow")
}

// CloseStackPorts removes what OpenStackPorts added.
func CloseStackPorts(ctx context.Context, run RunFunc, publicIP, privateIP string) (FirewallResult, error) {
	return changeFirewall(ctx, run, publicIP, privateIP, "delete allow")
}

// RunFunc runs a shell script on the node and returns its standard output.
type RunFunc func(ctx context.Context, script string) (string, error)

func changeFirewall(ctx context.Context, run RunFunc, publicIP, privateIP, action string) (FirewallResult, error) {
	private, err := netip.ParseAddr(privateIP)
	if err != nil || !private.Is4() {
		return FirewallResult{}, fmt.Errorf("the node has no private IPv4 address to open the stack's ports on (got %q): place it in a VPC", privateIP)
	}
	public, err := netip.ParseAddr(publicIP)
	if err != nil || !public.Is4() {
		return FirewallResult{}, fmt.Errorf("the node has no public IPv4 address (got %q)", publicIP)
	}
	out, err := run(ctx, firewallScript(public, private, action))
	if err != nil {
		return FirewallResult{}, fmt.Errorf("changing the node's firewall (ufw): %w", err)
	}
	state, iface, _ := strings.Cut(strings.TrimSpace(out), " ")
	switch state {
	case "active", "inactive", "absent":
		return FirewallResult{UFW: state, Interface: iface}, nil
	}
	return FirewallResult{}, fmt.Errorf("changing the node's firewall (ufw): unexpected output %q", out)
}
