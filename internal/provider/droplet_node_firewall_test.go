package provider

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

func firewallNodeConfig(name, firewall string) string {
	setting := ""
	if firewall != "" {
		setting = fmt.Sprintf("firewall = %q", firewall)
	}
	return fmt.Sprintf(`
resource "microswarm_droplet_node" "test" {
  name   = %q
  region = "nyc3"
  size   = "s-1vcpu-1gb"
  %s
}
`, name, setting)
}

// probe is one port a listener on the node serves, and whether the test expects to reach
// it on the node's public and on its private address.
type probe struct {
	port            int
	proto           string
	public, private bool
}

// TestAccDropletNode_firewall: a docker-20-04 droplet comes up with DigitalOcean's UFW
// rules; firewall = "stack" (the default) opens the stack's ports on the private interface
// and nowhere else; "none" takes them out again. Reachability is measured from outside
// the node (this process, on the local cloud's public and VPC networks) against
// listeners on the node's own network, as Consul and dockerd's swarm ports listen.
func TestAccDropletNode_firewall(t *testing.T) {
	name := "acc-fw-" + acctest.RandString(6)
	const node = "microswarm_droplet_node.test"
	// One SSH connection for every check: UFW's `limit ssh` refuses a seventh connection
	// from one address within 30 seconds.
	pool := testkit.Pool(t)
	opened := []probe{
		{port: 8300, proto: "tcp", private: true}, {port: 8302, proto: "tcp", private: true},
		{port: 2377, proto: "tcp", private: true}, {port: 7946, proto: "tcp", private: true},
		{port: 8301, proto: "udp", private: true}, {port: 7946, proto: "udp", private: true},
		{port: 4789, proto: "udp", private: true},
		// Not the stack's: closed everywhere.
		{port: 8500, proto: "tcp"}, {port: 9999, proto: "tcp"}, {port: 9999, proto: "udp"},
	}
	closed := make([]probe, len(opened))
	for i, p := range opened {
		closed[i] = probe{port: p.port, proto: p.proto}
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				Config: firewallNodeConfig(name, ""),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(node, tfjsonpath.New("firewall"), knownvalue.StringExact("stack")),
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					// One multiport rule per protocol, as UFW prints it.
					checkUFW(pool, node, "Status: active", "22/tcp", "LIMIT", "2375/tcp", "2376/tcp", "2377,7946,8300:8302/tcp on eth1", "4789,7946,8301:8302/udp on eth1", "22/tcp on eth0"),
					checkReachable(pool, node, opened),
					checkSSHBurst(node, true),
				),
			},
			{
				Config: firewallNodeConfig(name, "none"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(node, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					checkUFW(pool, node, "Status: active", "22/tcp", "2375/tcp"),
					checkNoUFWRule(pool, node, "8300", "2377", "7946", "4789", "22/tcp on eth0"),
					checkReachable(pool, node, closed),
					// Last: it trips DigitalOcean's limit for this process's address.
					checkSSHBurst(node, false),
				),
			},
		},
	})
}

func nodeHost(pool *conn.Pool, s *terraform.State, name string) (*conn.Host, map[string]string, error) {
	rs, ok := s.RootModule().Resources[stateKey(name)]
	if !ok {
		return nil, nil, fmt.Errorf("%s not in state", name)
	}
	a := rs.Primary.Attributes
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := pool.Open(ctx, conn.Target{Host: a["docker_host"], HostKey: a["ssh_host_key"]})
	return h, a, err
}

// checkUFW checks what `ufw status` prints on the node.
func checkUFW(pool *conn.Pool, name string, want ...string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		h, _, err := nodeHost(pool, s, name)
		if err != nil {
			return err
		}
		out, err := h.Run(context.Background(), "ufw status", nil)
		if err != nil {
			return err
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				return fmt.Errorf("ufw status on %s lacks %q:\n%s", name, w, out)
			}
		}
		return nil
	}
}

func checkNoUFWRule(pool *conn.Pool, name string, ports ...string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		h, _, err := nodeHost(pool, s, name)
		if err != nil {
			return err
		}
		out, err := h.Run(context.Background(), "ufw status", nil)
		if err != nil {
			return err
		}
		for _, p := range ports {
			if strings.Contains(out, p) {
				return fmt.Errorf("ufw status on %s still names port %s:\n%s", name, p, out)
			}
		}
		return nil
	}
}

// listenerScript serves the probes on every address of the node: TCP connections are
// accepted, UDP datagrams are written to a log, one line per datagram ("PORT TEXT").
const listenerScript = `
import socket, sys, threading
log = open(sys.argv[1], "a", buffering=1)
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, _ = s.recvfrom(512); log.write("%d %s\n" % (port, data.decode()))
threads = []
for spec in sys.argv[2:]:
    port, proto = spec.split("/")
    threads.append(threading.Thread(target=tcp if proto == "tcp" else udp, args=(int(port),), daemon=True))
for th in threads: th.start()
print("ready", flush=True)
for th in threads: th.join()
`

// checkReachable starts listeners on the node for the probes and tries each one from this
// process on the node's public and private addresses.
func checkReachable(pool *conn.Pool, name string, probes []probe) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		h, a, err := nodeHost(pool, s, name)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		specs := make([]string, len(probes))
		for i, p := range probes {
			specs[i] = fmt.Sprintf("%d/%s", p.port, p.proto)
		}
		logFile := "/root/probe-" + acctest.RandString(6) + ".log"
		start := fmt.Sprintf("cat >/root/probe.py; touch %s; nohup python3 /root/probe.py %s %s >/root/probe.out 2>&1 & "+
			"for i in $(seq 50); do grep -q ready /root/probe.out 2>/dev/null && exit 0; sleep 0.1; done; cat /root/probe.out; exit 1",
			logFile, logFile, strings.Join(specs, " "))
		if out, err := h.Run(ctx, start, strings.NewReader(listenerScript)); err != nil {
			return fmt.Errorf("starting the listeners on %s: %w: %s", name, err, out)
		}
		defer func() { _, _ = h.Run(context.Background(), "pkill -f /root/probe.py", nil) }()

		var failures []string
		addrs := map[string]string{"public": a["ipv4_address"], "private": a["ipv4_address_private"]}
		for _, p := range probes {
			for _, side := range []string{"public", "private"} {
				want := p.public
				if side == "private" {
					want = p.private
				}
				got, err := reach(ctx, h, p, addrs[side], logFile, side)
				if err != nil {
					return err
				}
				if got != want {
					failures = append(failures, fmt.Sprintf("%d/%s on the %s address %s: reachable %v, want %v", p.port, p.proto, side, addrs[side], got, want))
				}
			}
		}
		if len(failures) > 0 {
			return fmt.Errorf("%s:\n%s", name, strings.Join(failures, "\n"))
		}
		return nil
	}
}

// reach says whether a TCP connection to addr:port is accepted, or a UDP datagram sent
// there arrives (the node's listener logs it).
func reach(ctx context.Context, h *conn.Host, p probe, addr, logFile, side string) (bool, error) {
	target := net.JoinHostPort(addr, strconv.Itoa(p.port))
	if p.proto == "tcp" {
		c, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			return false, nil
		}
		_ = c.Close()
		return true, nil
	}
	c, err := net.Dial("udp", target)
	if err != nil {
		return false, err
	}
	mark := side + "-" + acctest.RandString(8)
	for range 3 {
		_, _ = c.Write([]byte(mark))
	}
	_ = c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		out, err := h.Run(ctx, "cat "+logFile, nil)
		if err != nil {
			return false, err
		}
		if strings.Contains(out, fmt.Sprintf("%d %s", p.port, mark)) {
			return true, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false, nil
}

// checkSSHBurst opens ten new connections to the node's SSH port in a row, as ten
// terraform commands would, and checks that all of them are accepted (the rule "stack"
// adds) or that DigitalOcean's `limit ssh` refuses some (without it).
func checkSSHBurst(name string, wantAll bool) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[stateKey(name)]
		if !ok {
			return fmt.Errorf("%s not in state", name)
		}
		target := net.JoinHostPort(rs.Primary.Attributes["ipv4_address"], "22")
		accepted := 0
		for range 10 {
			c, err := net.DialTimeout("tcp", target, 2*time.Second)
			if err != nil {
				continue
			}
			banner := make([]byte, 7)
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if n, _ := c.Read(banner); string(banner[:n]) == "SSH-2.0" {
				accepted++
			}
			_ = c.Close()
		}
		if wantAll && accepted != 10 {
			return fmt.Errorf("%s: %d of 10 SSH connections in a row were accepted, want all", name, accepted)
		}
		if !wantAll && accepted == 10 {
			return fmt.Errorf("%s: all 10 SSH connections in a row were accepted: DigitalOcean's limit ssh is not in force", name)
		}
		return nil
	}
}
