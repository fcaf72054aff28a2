package localcloud

import (
	"net/http"
	"strings"
	"testing"

	"github.com/digitalocean/godo"
)

// These tests need no Docker engine: the firewall API and the rules it makes for a node.

// exampleFirewall is the shape examples/digitalocean asks for: SSH and the app from
// anywhere, Consul from the VPC only, everything out.
func exampleFirewall(vpcRange string) *godo.FirewallRequest {
	anywhere := []string{"0.0.0.0/0", "::/0"}
	return &godo.FirewallRequest{
		Name: "microswarm-demo",
		Tags: []string{"microswarm-demo"},
		InboundRules: []godo.InboundRule{
			{Protocol: "tcp", PortRange: "22", Sources: &godo.Sources{Addresses: anywhere}},
			{Protocol: "tcp", PortRange: "80", Sources: &godo.Sources{Addresses: anywhere}},
			{Protocol: "tcp", PortRange: "8300-8302", Sources: &godo.Sources{Addresses: []string{vpcRange}}},
			{Protocol: "udp", PortRange: "4789", Sources: &godo.Sources{Addresses: []string{vpcRange}}},
		},
		OutboundRules: []godo.OutboundRule{
			{Protocol: "tcp", PortRange: "1-65535", Destinations: &godo.Destinations{Addresses: anywhere}},
			{Protocol: "udp", PortRange: "all", Destinations: &godo.Destinations{Addresses: anywhere}},
			{Protocol: "icmp", Destinations: &godo.Destinations{Addresses: anywhere}},
		},
	}
}

func TestFirewallLifecycle(t *testing.T) {
	t.Parallel()
	c, do, _ := apiWithNetworks(t)
	ctx := t.Context()
	if _, _, err := do.Tags.Create(ctx, &godo.TagCreateRequest{Name: "microswarm-demo"}); err != nil {
		t.Fatal(err)
	}

	fw, _, err := do.Firewalls.Create(ctx, exampleFirewall("10.100.0.0/20"))
	if err != nil {
		t.Fatal(err)
	}
	if fw.ID == "" || fw.Name != "microswarm-demo" || fw.Status != "waiting" || fw.Created == "" ||
		len(fw.Tags) != 1 || fw.DropletIDs == nil || len(fw.DropletIDs) != 0 || fw.PendingChanges == nil {
		t.Fatalf("created %+v", fw)
	}
	got, _, err := do.Firewalls.Get(ctx, fw.ID)
	if err != nil || got.Status != "succeeded" {
		t.Fatalf("get %+v %v", got, err)
	}
	// As DO reports them: "all" is "0", an ICMP rule has ports "0", the rest as given.
	if p := got.InboundRules[2]; p.PortRange != "8300-8302" || p.Sources.Addresses[0] != "10.100.0.0/20" {
		t.Errorf("inbound %+v", p)
	}
	var ports []string
	for _, r := range got.OutboundRules {
		ports = append(ports, r.Protocol+":"+r.PortRange)
	}
	if strings.Join(ports, " ") != "tcp:1-65535 udp:0 icmp:0" {
		t.Errorf("outbound ports %v", ports)
	}

	update := exampleFirewall("10.100.0.0/20")
	update.InboundRules = update.InboundRules[:1]
	updated, _, err := do.Firewalls.Update(ctx, fw.ID, update)
	if err != nil || len(updated.InboundRules) != 1 || updated.ID != fw.ID || updated.Created != fw.Created {
		t.Fatalf("update %+v %v", updated, err)
	}
	list, _, err := do.Firewalls.List(ctx, nil)
	if err != nil || len(list) != 1 {
		t.Fatalf("list %+v %v", list, err)
	}

	for name, mutate := range map[string]func(*godo.FirewallRequest){
		"no rules":        func(r *godo.FirewallRequest) { r.InboundRules, r.OutboundRules = nil, nil },
		"bad protocol":    func(r *godo.FirewallRequest) { r.InboundRules[0].Protocol = "sctp" },
		"tcp, no ports":   func(r *godo.FirewallRequest) { r.InboundRules[0].PortRange = "" },
		"bad range":       func(r *godo.FirewallRequest) { r.InboundRules[0].PortRange = "90-80" },
		"bad address":     func(r *godo.FirewallRequest) { r.InboundRules[0].Sources.Addresses = []string{"nowhere"} },
		"bad name":        func(r *godo.FirewallRequest) { r.Name = "with space" },
		"no such droplet": func(r *godo.FirewallRequest) { r.DropletIDs = []int{123} },
	} {
		req := exampleFirewall("10.100.0.0/20")
		mutate(req)
		if _, _, err := do.Firewalls.Create(ctx, req); err == nil {
			t.Errorf("%s: created", name)
		} else if status, _ := apiStatus(t, err); status != http.StatusUnprocessableEntity {
			t.Errorf("%s: status %d", name, status)
		}
	}

	if _, err := do.Firewalls.Delete(ctx, fw.ID); err != nil {
		t.Fatal(err)
	}
	if _, resp, err := do.Firewalls.Get(ctx, fw.ID); err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("deleted firewall: %v", err)
	}
	if _, err := do.Firewalls.Delete(ctx, fw.ID); err == nil {
		t.Fatal("second delete did not 404")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.st.Firewalls) != 0 {
		t.Fatalf("state keeps %d firewalls", len(c.st.Firewalls))
	}
}

// The chains a node gets, inbound then outbound: stateful, one RETURN per allowed (peer,
// protocol, ports), IPv6 peers left out, tag sources resolved to both addresses of each
// tagged droplet, and a DROP at the end; no rules at all for a droplet no firewall covers.
func TestFirewallRulesForANode(t *testing.T) {
	t.Parallel()
	c, do, _ := apiWithNetworks(t)
	ctx := t.Context()
	c.mu.Lock()
	c.st.Tags = []string{"microswarm-demo", "peers"}
	c.st.Droplets = []*droplet{
		{ID: 1, Name: "covered", Tags: []string{"microswarm-demo"}, PublicIP: "172.29.0.2", PrivateIP: "172.30.0.2"},
		{ID: 2, Name: "peer", Tags: []string{"peers"}, PublicIP: "172.29.0.3", PrivateIP: "172.30.0.3"},
		{ID: 3, Name: "bare", PublicIP: "172.29.0.4", PrivateIP: "172.30.0.4"},
	}
	c.mu.Unlock()
	req := exampleFirewall("172.30.0.0/16")
	req.InboundRules = append(req.InboundRules,
		godo.InboundRule{Protocol: "tcp", PortRange: "all", Sources: &godo.Sources{Tags: []string{"peers"}, DropletIDs: []int{3}}},
		godo.InboundRule{Protocol: "icmp", Sources: &godo.Sources{Addresses: []string{"192.0.2.7"}}},
	)
	if _, _, err := do.Firewalls.Create(ctx, req); err != nil {
		t.Fatal(err)
	}

	c.mu.Lock()
	covered, bare := c.firewallRulesLocked(c.st.droplet(1)), c.firewallRulesLocked(c.st.droplet(3))
	c.mu.Unlock()
	want := `-A DO-CLOUD-FIREWALL -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
-A DO-CLOUD-FIREWALL -p tcp -m tcp --dport 22 -j RETURN
-A DO-CLOUD-FIREWALL -p tcp -m tcp --dport 80 -j RETURN
-A DO-CLOUD-FIREWALL -s 172.30.0.0/16 -p tcp -m tcp --dport 8300:8302 -j RETURN
-A DO-CLOUD-FIREWALL -s 172.30.0.0/16 -p udp -m udp --dport 4789 -j RETURN
-A DO-CLOUD-FIREWALL -s 172.29.0.3/32 -p tcp -j RETURN
-A DO-CLOUD-FIREWALL -s 172.30.0.3/32 -p tcp -j RETURN
-A DO-CLOUD-FIREWALL -s 172.29.0.4/32 -p tcp -j RETURN
-A DO-CLOUD-FIREWALL -s 172.30.0.4/32 -p tcp -j RETURN
-A DO-CLOUD-FIREWALL -s 192.0.2.7/32 -p icmp -j RETURN
-A DO-CLOUD-FIREWALL -j DROP
-A DO-CLOUD-FIREWALL-OUT -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
-A DO-CLOUD-FIREWALL-OUT -p tcp -m tcp --dport 1:65535 -j RETURN
-A DO-CLOUD-FIREWALL-OUT -p udp -j RETURN
-A DO-CLOUD-FIREWALL-OUT -p icmp -j RETURN
-A DO-CLOUD-FIREWALL-OUT -j DROP
`
	if covered != want {
		t.Errorf("rules for the tagged droplet:\n%s\nwant:\n%s", covered, want)
	}
	if bare != "" {
		t.Errorf("a droplet no firewall covers got rules:\n%s", bare)
	}

	// Untagging the droplet lifts the firewall from it.
	if _, err := do.Tags.UntagResources(ctx, "microswarm-demo", &godo.UntagResourcesRequest{
		Resources: []godo.Resource{{ID: "1", Type: godo.DropletResourceType}},
	}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rules := c.firewallRulesLocked(c.st.droplet(1)); rules != "" {
		t.Errorf("after untagging:\n%s", rules)
	}
}

func TestFirewallScriptHooksBothInterfacesBothWays(t *testing.T) {
	t.Parallel()
	script := firewallScript("-A DO-CLOUD-FIREWALL -j DROP\n", "172.29.0.2", "172.30.0.2")
	for _, want := range []string{
		"iptables-restore --noflush",
		":DO-CLOUD-FIREWALL - [0:0]\n:DO-CLOUD-FIREWALL-OUT - [0:0]\n-A DO-CLOUD-FIREWALL -j DROP\nCOMMIT\n",
		"for addr in '172.29.0.2' '172.30.0.2'; do",
		"iptables -t mangle -I PREROUTING 1 -i \"$dev\" -j DO-CLOUD-FIREWALL\n",
		"iptables -t mangle -I POSTROUTING 1 -o \"$dev\" -j DO-CLOUD-FIREWALL-OUT\n",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
}
