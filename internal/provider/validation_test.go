package provider

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// block renders a resource block from base attribute lines, each overridden (or added)
// by the line in overrides with the same attribute name.
func block(typ string, base, overrides map[string]string) string {
	attrs := maps.Clone(base)
	maps.Copy(attrs, overrides)
	var b strings.Builder
	fmt.Fprintf(&b, "resource %q \"t\" {\n", typ)
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		fmt.Fprintf(&b, "  %s = %s\n", k, attrs[k])
	}
	b.WriteString("}\n")
	return b.String()
}

func dropletBlock(o map[string]string) string {
	return block("microswarm_droplet_node", map[string]string{"name": `"n1"`, "region": `"nyc3"`, "size": `"s-1vcpu-1gb"`}, o)
}

func healthBlock(o map[string]string) string {
	return strings.Replace(block("microswarm_health", map[string]string{"host": `"ssh://root@127.0.0.1:2201"`}, o), "resource ", "data ", 1)
}

func consulServerBlock(o map[string]string) string {
	return block("microswarm_consul_server", map[string]string{"host": `"ssh://root@127.0.0.1:2201"`, "advertise_addr": `"10.10.0.1"`,
		"bootstrap_expect": "3", "retry_join": `["10.10.0.1", "10.10.0.2", "10.10.0.3"]`}, o)
}

func consulAgentBlock(o map[string]string) string {
	return block("microswarm_consul_agent", map[string]string{"host": `"ssh://root@127.0.0.1:2204"`, "advertise_addr": `"10.10.0.4"`,
		"retry_join": `["10.10.0.1"]`}, o)
}

// swarmBlock renders a swarm whose m1 entry has the given attributes on top of a valid one.
func swarmBlock(m1 map[string]string, o map[string]string) string {
	entry := maps.Clone(map[string]string{"host": `"ssh://root@127.0.0.1:2201"`, "advertise_addr": `"10.10.0.1"`, "role": `"manager"`})
	maps.Copy(entry, m1)
	var e []string
	for _, k := range slices.Sorted(maps.Keys(entry)) {
		e = append(e, k+" = "+entry[k])
	}
	nodes := "{\n    m1 = { " + strings.Join(e, ", ") + " }\n    w1 = { host = \"ssh://root@127.0.0.1:2202\", advertise_addr = \"10.10.0.2\", role = \"worker\" }\n  }"
	return block("microswarm_swarm_cluster", map[string]string{"nodes": nodes}, o)
}

func microserviceBlock(o map[string]string) string {
	return block("microswarm_microservice", map[string]string{"name": `"web"`, "host": `"ssh://root@127.0.0.1:2201"`,
		"blue": `{ image = "microswarm/demo-app:1.0.0" }`, "green": `{ image = "microswarm/demo-app:2.0.0" }`, "active": `"blue"`,
		"proxy_hosts": `[{ host = "ssh://root@127.0.0.1:2201" }]`}, o)
}

func providerBlock(attrs string) string {
	return "provider \"microswarm\" {\n" + attrs + "\n}\n" + anyNode
}

// TestPlanTimeValidation feeds bad configurations to terraform plan: each must fail at
// plan time with a diagnostic that names the attribute's path.
func TestPlanTimeValidation(t *testing.T) {
	// A provider that could manage every resource, so that only the fault under test fails the plan.
	if os.Getenv(envSSHKey) == "" {
		t.Setenv(envSSHKey, newTestSSHKey(t))
	}
	pems, other := consultest.NewTLS(t), consultest.NewTLS(t)
	tlsBlock := func(ca, cert, key string) string {
		return fmt.Sprintf("{\n    ca_pem = %q\n    cert_pem = %q\n    key_pem = %q\n  }", ca, cert, key)
	}
	tlsWOBlock := func(ca, cert, key, keyWO string) string {
		b := fmt.Sprintf("{\n    ca_pem = %q\n    cert_pem = %q\n", ca, cert)
		if key != "" {
			b += fmt.Sprintf("    key_pem = %q\n", key)
		}
		if keyWO != "" {
			b += fmt.Sprintf("    key_pem_wo = %q\n", keyWO)
		}
		return b + "  }"
	}
	bigUserData := `"#cloud-config\n# ` + strings.Repeat("x", 64*1024) + `"`
	cases := map[string]struct {
		config string
		path   string // the attribute path the diagnostic must name
		api    bool   // needs the provider configured against an API (the local cloud)
	}{
		// The provider.
		"api_endpoint: http to a remote host":  {config: providerBlock(`api_endpoint = "http://api.example.invalid"`), path: "api_endpoint"},
		"connect_timeout: words":               {config: providerBlock(`connect_timeout = "5 minutes"`), path: "connect_timeout"},
		"connect_timeout: negative":            {config: providerBlock(`connect_timeout = "-1s"`), path: "connect_timeout"},
		"ssh_user: shell":                      {config: providerBlock(`ssh_user = "root; rm"`), path: "ssh_user"},
		"host_key_policy: unknown":             {config: providerBlock(`host_key_policy = "yolo"`), path: "host_key_policy"},
		"ssh_private_key: garbage":             {config: providerBlock(`ssh_private_key = "not a key"`), path: "ssh_private_key"},
		"droplet size: looks valid, not sold":  {config: dropletBlock(map[string]string{"size": `"s-64vcpu-1tb"`}), path: "size", api: true},
		"droplet image: looks valid, no image": {config: dropletBlock(map[string]string{"image": `"docker-99-04"`}), path: "image", api: true},
		"droplet region: looks valid, none":    {config: dropletBlock(map[string]string{"region": `"xyz9"`}), path: "region", api: true},

		// microswarm_droplet_node.
		"droplet user_data: over 64 KiB":     {config: dropletBlock(map[string]string{"user_data": bigUserData}), path: "user_data"},
		"droplet timeouts: words":            {config: dropletBlock(map[string]string{"timeouts": `{ create = "5 minutes" }`}), path: "timeouts.create"},
		"droplet name: not a hostname":       {config: dropletBlock(map[string]string{"name": `"-bad_name"`}), path: "name"},
		"droplet region: not a slug":         {config: dropletBlock(map[string]string{"region": `"New York"`}), path: "region"},
		"droplet size: not a slug":           {config: dropletBlock(map[string]string{"size": `"Big One"`}), path: "size"},
		"droplet vpc_uuid: not a uuid":       {config: dropletBlock(map[string]string{"vpc_uuid": `"default"`}), path: "vpc_uuid"},
		"droplet ssh_keys: not an id or md5": {config: dropletBlock(map[string]string{"ssh_keys": `["my key"]`}), path: `ssh_keys[Value("my key")]`},
		"droplet tags: the managed tag":      {config: dropletBlock(map[string]string{"tags": `["microswarm"]`}), path: `tags[Value("microswarm")]`},
		"droplet when_off: unknown action":   {config: dropletBlock(map[string]string{"when_off": `"reboot"`}), path: "when_off"},

		// microswarm_microservice: durations are timetypes.GoDuration (1m and 60s are one value).
		"microservice drain_timeout: words":        {config: microserviceBlock(map[string]string{"drain_timeout": `"5 minutes"`}), path: "drain_timeout"},
		"microservice drain_timeout: negative":     {config: microserviceBlock(map[string]string{"drain_timeout": `"-1s"`}), path: "drain_timeout"},
		"microservice auto_rollback: words":        {config: microserviceBlock(map[string]string{"auto_rollback": `"a minute"`}), path: "auto_rollback"},
		"microservice healthcheck interval: words": {config: microserviceBlock(map[string]string{"blue": `{ image = "microswarm/demo-app:1.0.0", healthcheck = { test = ["NONE"], interval = "5 secs" } }`}), path: "blue.healthcheck.interval"},

		// data.microswarm_health.
		"health: service and node":       {config: healthBlock(map[string]string{"service": `"web"`, "node": `"w1"`}), path: "node"},
		"health tag: without a service":  {config: healthBlock(map[string]string{"tag": `"blue"`}), path: "tag"},
		"health node: not a node name":   {config: healthBlock(map[string]string{"node": `"web_1!"`}), path: "node"},
		"health host: ftp":               {config: healthBlock(map[string]string{"host": `"ftp://10.10.0.1"`}), path: "host"},
		"health consul_address: no port": {config: healthBlock(map[string]string{"consul_address": `"localhost"`}), path: "consul_address"},
		"health consul_ca_pem: garbage":  {config: healthBlock(map[string]string{"consul_ca_pem": `"not a pem"`}), path: "consul_ca_pem"},
		"health datacenter: upper case":  {config: healthBlock(map[string]string{"datacenter": `"DC1"`}), path: "datacenter"},
		"health timeouts: words":         {config: healthBlock(map[string]string{"timeouts": `{ read = "2 minutes" }`}), path: "timeouts.read"},
		"health grace_period: negative":  {config: healthBlock(map[string]string{"grace_period": `"-30s"`}), path: "grace_period"},

		// microswarm_consul_server.
		"consul server host: tcp without TLS":       {config: consulServerBlock(map[string]string{"host": `"tcp://10.10.0.1:2376"`}), path: "host"},
		"consul server host: ftp":                   {config: consulServerBlock(map[string]string{"host": `"ftp://10.10.0.1"`}), path: "host"},
		"consul server host_key: with a unix host":  {config: consulServerBlock(map[string]string{"host": `"unix:///var/run/docker.sock"`, "host_key": `"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHuGOS9IzhfzMW2f4SEt4BkqUyXw4hGD9AVR4l5pf0I0"`}), path: "host_key"},
		"consul server host_key: garbage":           {config: consulServerBlock(map[string]string{"host_key": `"not a key"`}), path: "host_key"},
		"consul server advertise_addr: 0.0.0.0":     {config: consulServerBlock(map[string]string{"advertise_addr": `"0.0.0.0"`}), path: "advertise_addr"},
		"consul server advertise_addr: 999.1.1.1":   {config: consulServerBlock(map[string]string{"advertise_addr": `"999.1.1.1"`}), path: "advertise_addr"},
		"consul server client_addr: 999.1.1.1":      {config: consulServerBlock(map[string]string{"client_addr": `"999.1.1.1"`}), path: "client_addr"},
		"consul server retry_join: port not a num":  {config: consulServerBlock(map[string]string{"retry_join": `["10.99.0.5:abc"]`}), path: "retry_join[0]"},
		"consul server retry_join: port too big":    {config: consulServerBlock(map[string]string{"retry_join": `["10.99.0.5:70000"]`}), path: "retry_join[0]"},
		"consul server ports: http on server":       {config: consulServerBlock(map[string]string{"ports": `{ http = 8300 }`}), path: "ports.http"},
		"consul server ports: dns on serf_lan":      {config: consulServerBlock(map[string]string{"ports": `{ dns = 8301 }`}), path: "ports.dns"},
		"consul server ports: out of range":         {config: consulServerBlock(map[string]string{"ports": `{ http = 70000 }`}), path: "ports.http"},
		"consul server tls: ca_pem garbage":         {config: consulServerBlock(map[string]string{"tls": tlsBlock("garbage", pems.CertPEM, pems.KeyPEM)}), path: "tls.ca_pem"},
		"consul server tls: key_pem is a cert":      {config: consulServerBlock(map[string]string{"tls": tlsBlock(pems.CAPEM, pems.CertPEM, pems.CertPEM)}), path: "tls.key_pem"},
		"consul server tls: key of another cert":    {config: consulServerBlock(map[string]string{"tls": tlsBlock(pems.CAPEM, pems.CertPEM, other.KeyPEM)}), path: "tls.key_pem"},
		"consul server tls: cert not signed by ca":  {config: consulServerBlock(map[string]string{"tls": tlsBlock(other.CAPEM, pems.CertPEM, pems.KeyPEM)}), path: "tls.cert_pem"},
		"consul server tls: key_pem_wo of another":  {config: consulServerBlock(map[string]string{"tls": tlsWOBlock(pems.CAPEM, pems.CertPEM, "", other.KeyPEM)}), path: "tls.key_pem_wo"},
		"consul server tls: both keys":              {config: consulServerBlock(map[string]string{"tls": tlsWOBlock(pems.CAPEM, pems.CertPEM, pems.KeyPEM, pems.KeyPEM)}), path: "tls.key_pem"},
		"consul server tls: no key":                 {config: consulServerBlock(map[string]string{"tls": tlsWOBlock(pems.CAPEM, pems.CertPEM, "", "")}), path: "tls.key_pem_wo"},
		"consul server encrypt: not a key":          {config: consulServerBlock(map[string]string{"encrypt": `"abc"`}), path: "encrypt"},
		"consul server image: spaces":               {config: consulServerBlock(map[string]string{"image": `"Hashicorp Consul"`}), path: "image"},
		"consul server bootstrap_expect: 0":         {config: consulServerBlock(map[string]string{"bootstrap_expect": "0"}), path: "bootstrap_expect"},
		"consul server raft_multiplier: 11":         {config: consulServerBlock(map[string]string{"raft_multiplier": "11"}), path: "raft_multiplier"},
		"consul server timeouts: words":             {config: consulServerBlock(map[string]string{"timeouts": `{ update = "5 minutes" }`}), path: "timeouts.update"},
		"consul server datacenter: capitals, space": {config: consulServerBlock(map[string]string{"datacenter": `"DC 1"`}), path: "datacenter"},

		// microswarm_consul_agent.
		"consul agent host: tcp without TLS":      {config: consulAgentBlock(map[string]string{"host": `"tcp://10.10.0.4:2376"`}), path: "host"},
		"consul agent host_key: with a unix host": {config: consulAgentBlock(map[string]string{"host": `"unix:///var/run/docker.sock"`, "host_key": `"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHuGOS9IzhfzMW2f4SEt4BkqUyXw4hGD9AVR4l5pf0I0"`}), path: "host_key"},
		"consul agent advertise_addr: 0.0.0.0":    {config: consulAgentBlock(map[string]string{"advertise_addr": `"0.0.0.0"`}), path: "advertise_addr"},
		"consul agent advertise_addr: 999.1.1.1":  {config: consulAgentBlock(map[string]string{"advertise_addr": `"999.1.1.1"`}), path: "advertise_addr"},
		"consul agent retry_join: port not a num": {config: consulAgentBlock(map[string]string{"retry_join": `["10.99.0.5:abc"]`}), path: "retry_join[0]"},
		"consul agent ports: serf_lan on http":    {config: consulAgentBlock(map[string]string{"ports": `{ serf_lan = 8500 }`}), path: "ports.serf_lan"},
		"consul agent timeouts: words":            {config: consulAgentBlock(map[string]string{"timeouts": `{ create = "5 minutes" }`}), path: "timeouts.create"},

		// microswarm_swarm_cluster.
		"swarm advertise_addr: 0.0.0.0":           {config: swarmBlock(map[string]string{"advertise_addr": `"0.0.0.0"`}, nil), path: `nodes["m1"].advertise_addr`},
		"swarm advertise_addr: 999.1.1.1":         {config: swarmBlock(map[string]string{"advertise_addr": `"999.1.1.1"`}, nil), path: `nodes["m1"].advertise_addr`},
		"swarm host_key: garbage":                 {config: swarmBlock(map[string]string{"host_key": `"garbage"`}, nil), path: `nodes["m1"].host_key`},
		"swarm host_key: with a unix host":        {config: swarmBlock(map[string]string{"host": `"unix:///var/run/docker.sock"`, "host_key": `"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHuGOS9IzhfzMW2f4SEt4BkqUyXw4hGD9AVR4l5pf0I0"`}, nil), path: `nodes["m1"].host_key`},
		"swarm host: tcp without TLS":             {config: swarmBlock(map[string]string{"host": `"tcp://10.10.0.1:2376"`}, nil), path: `nodes["m1"].host`},
		"swarm host: duplicate":                   {config: swarmBlock(map[string]string{"host": `"ssh://root@127.0.0.1:2202"`}, nil), path: `nodes["w1"].host`},
		"swarm role: unknown":                     {config: swarmBlock(map[string]string{"role": `"boss"`}, nil), path: `nodes["m1"].role`},
		"swarm default_addr_pool: IPv6":           {config: swarmBlock(nil, map[string]string{"default_addr_pool": `["fd00::/8"]`}), path: "default_addr_pool[0]"},
		"swarm default_addr_pool: overlapping":    {config: swarmBlock(nil, map[string]string{"default_addr_pool": `["10.0.0.0/8", "10.20.0.0/16"]`}), path: "default_addr_pool[1]"},
		"swarm subnet_size: above 29":             {config: swarmBlock(nil, map[string]string{"subnet_size": "30"}), path: "subnet_size"},
		"swarm subnet_size: larger than a pool":   {config: swarmBlock(nil, map[string]string{"default_addr_pool": `["10.20.0.0/20"]`, "subnet_size": "16"}), path: "subnet_size"},
		"swarm data_path_port: privileged":        {config: swarmBlock(nil, map[string]string{"data_path_port": "80"}), path: "data_path_port"},
		"swarm cert_expiry: shorter than an hour": {config: swarmBlock(nil, map[string]string{"cert_expiry": `"5m"`}), path: "cert_expiry"},
		"swarm timeouts: words":                   {config: swarmBlock(nil, map[string]string{"timeouts": `{ create = "5 minutes" }`}), path: "timeouts.create"},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			// The path must be in the diagnostic's text (framework validators say
			// "Attribute PATH ...", ours "PATH: ..."), not only in the source excerpt.
			p := regexp.QuoteMeta(tc.path)
			step := resource.TestStep{Config: tc.config, PlanOnly: true,
				ExpectError: regexp.MustCompile(`Attribute\s+` + p + `\s|(^|\s)` + p + `:\s`)}
			if tc.api {
				resource.Test(t, resource.TestCase{PreCheck: func() { testkit.PreCheck(t) },
					ProtoV6ProviderFactories: testAccProtoV6ProviderFactories, Steps: []resource.TestStep{step}})
				return
			}
			resource.UnitTest(t, resource.TestCase{ProtoV6ProviderFactories: testAccProtoV6ProviderFactories, Steps: []resource.TestStep{step}})
		})
	}
}

func newTestSSHKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}
