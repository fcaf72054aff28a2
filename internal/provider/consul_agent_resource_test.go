package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

func TestConsulInputIsValidatedAtPlanTime(t *testing.T) {
	base := map[string]map[string]string{
		"microswarm_consul_server": {
			"host":             `host = "ssh://root@192.0.2.10"`,
			"advertise_addr":   `advertise_addr = "10.10.0.2"`,
			"bootstrap_expect": `bootstrap_expect = 3`,
		},
		"microswarm_consul_agent": {
			"host":           `host = "ssh://root@192.0.2.11"`,
			"advertise_addr": `advertise_addr = "10.10.0.3"`,
			"retry_join":     `retry_join = ["10.10.0.2"]`,
		},
	}
	cases := map[string]struct {
		resource string
		attr     string
		wantErr  string
	}{
		"host needs a scheme":           {"microswarm_consul_server", `host = "192.0.2.10"`, `no scheme`},
		"host scheme is known":          {"microswarm_consul_agent", `host = "http://192.0.2.10"`, `unsupported scheme`},
		"host key is a public key":      {"microswarm_consul_server", `host_key = "not a key"`, `Invalid SSH Public Key`},
		"advertise_addr is an ip":       {"microswarm_consul_server", `advertise_addr = "node-1"`, `Invalid Advertise Address`},
		"client_addr is an ip":          {"microswarm_consul_agent", `client_addr = "localhost"`, `Invalid IP Address`},
		"bootstrap_expect is positive":  {"microswarm_consul_server", `bootstrap_expect = 0`, `at least 1`},
		"retry_join is not empty":       {"microswarm_consul_agent", `retry_join = []`, `at least 1`},
		"retry_join has no spaces":      {"microswarm_consul_server", `retry_join = ["10.0.0.1 10.0.0.2"]`, `Invalid Retry Join Address`},
		"gossip key is base64":          {"microswarm_consul_server", `encrypt = "not-a-key!"`, `Invalid Gossip Key`},
		"gossip key has 32 bytes":       {"microswarm_consul_agent", `encrypt = "c2hvcnQ="`, `5 bytes`},
		"datacenter is lower case":      {"microswarm_consul_server", `datacenter = "DC1"`, `lower-case`},
		"container name is docker's":    {"microswarm_consul_agent", `container_name = "/consul"`, `container name`},
		"node name is a dns label":      {"microswarm_consul_agent", `node_name = "web_1"`, `Invalid Attribute Value Match`},
		"image is a reference":          {"microswarm_consul_server", `image = "Hashicorp/Consul"`, `Invalid Image Reference`},
		"http port cannot be off":       {"microswarm_consul_server", `ports = { http = -1 }`, `between 1 and 65535`},
		"ports are ports":               {"microswarm_consul_agent", `ports = { dns = 70000 }`, `Invalid Attribute Value`},
		"tls wants pem":                 {"microswarm_consul_server", `tls = { ca_pem = "x", cert_pem = "y", key_pem = "z" }`, `Invalid PEM`},
		"timeouts are go durations":     {"microswarm_consul_agent", `timeouts = { create = "soon" }`, `(?i)duration`},
		"servers have no member status": {"microswarm_consul_server", `member_status = "alive"`, `(?i)unsupported argument|can't configure|read-only`},
		"encrypt_wo needs its version":  {"microswarm_consul_server", `encrypt_wo = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="`, `(?s)"encrypt_wo_version".*must be specified`},
		"a version needs encrypt_wo":    {"microswarm_consul_agent", `encrypt_wo_version = 1`, `(?s)"encrypt_wo".*must be specified`},
		"encrypt or encrypt_wo": {"microswarm_consul_agent", "encrypt_wo = \"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\"\n  encrypt_wo_version = 1\n" +
			"  encrypt = \"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\"", `(?s)cannot be specified when`},
		"encrypt_wo is a gossip key": {"microswarm_consul_server", "encrypt_wo = \"c2hvcnQ=\"\n  encrypt_wo_version = 1", `5 bytes`},
		"acl needs a token":          {"microswarm_consul_server", `acl = { default_policy = "deny" }`, `(?s)"acl_token_wo".*must be specified`},
		"acl policy is allow or deny": {"microswarm_consul_agent", "acl = { default_policy = \"open\" }\n  acl_token_wo = \"0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0\"\n" +
			"  acl_token_wo_version = 1", `value must be one of`},
		"acl token is a uuid": {"microswarm_consul_server", "acl_token_wo = \"root\"\n  acl = {}\n  acl_token_wo_version = 1", `(?s)Invalid ACL Token.*uuidgen`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			attrs := map[string]string{}
			for k, v := range base[tc.resource] {
				attrs[k] = v
			}
			attrs[strings.Fields(tc.attr)[0]] = tc.attr
			body := ""
			for _, a := range attrs {
				body += "  " + a + "\n"
			}
			resource.UnitTest(t, resource.TestCase{
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				Steps: []resource.TestStep{{
					Config:      "resource \"" + tc.resource + "\" \"x\" {\n" + body + "}\n",
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(tc.wantErr),
				}},
			})
		})
	}
}

func TestParseConsulImportID(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		id, wantHost, wantName, wantErr string
	}{
		"ssh host":       {id: "ssh://root@203.0.113.10,consul-server", wantHost: "ssh://root@203.0.113.10", wantName: "consul-server"},
		"unix socket":    {id: "unix:///var/run/docker.sock,consul-agent", wantHost: "unix:///var/run/docker.sock", wantName: "consul-agent"},
		"no comma":       {id: "ssh://root@203.0.113.10", wantErr: "want HOST,CONTAINER_NAME"},
		"bad host":       {id: "203.0.113.10,consul-server", wantErr: "no scheme"},
		"bad name":       {id: "ssh://root@203.0.113.10,/consul", wantErr: "not a container name"},
		"empty name":     {id: "ssh://root@203.0.113.10,", wantErr: "not a container name"},
		"tcp with a tls": {id: "tcp://10.0.0.5:2376,consul", wantHost: "tcp://10.0.0.5:2376", wantName: "consul"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			host, container, err := parseConsulImportID(tc.id)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || host != tc.wantHost || container != tc.wantName {
				t.Errorf("got %q, %q, %v; want %q, %q", host, container, err, tc.wantHost, tc.wantName)
			}
		})
	}
}

func TestConsulUnreachableIsOnlyANodeThatDoesNotAnswer(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	cases := map[string]struct {
		err  error
		want bool
	}{
		"refused dial":      {err: fmt.Errorf("ssh: cannot reach 192.0.2.10:22: %w", refused), want: true},
		"handshake timeout": {err: fmt.Errorf("ssh: handshake did not finish: %w", context.DeadlineExceeded), want: true},
		"changed host key":  {err: &conn.HostKeyMismatchError{Address: "192.0.2.10:22"}},
		"login refused":     {err: errors.New("ssh: connecting to 192.0.2.10:22 as root: ssh: unable to authenticate")},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := nodeUnreachable(tc.err); got != tc.want {
				t.Errorf("nodeUnreachable(%v) = %t, want %t", tc.err, got, tc.want)
			}
		})
	}
}
