package conn

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

// A real Consul agent with HTTPS only, verify_incoming, and ACLs that deny by default:
// the client ConsulTLS builds, with the token, reads and writes through the SSH forward;
// without the token the write is refused, and without a client certificate the agent
// refuses the connection.
func TestConsulOverTLSWithAToken(t *testing.T) {
	t.Parallel()
	m := consultest.NewTLS(t)
	dir := t.TempDir()
	files := map[string]string{"ca.pem": m.CAPEM, "cert.pem": m.CertPEM, "key.pem": m.KeyPEM}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const management = "6b4c3a2e-8f9d-4e1a-b2c3-d4e5f6a7b8c9"
	httpsPort := consultest.FreePort(t)
	consultest.StartDevAgent(t, "-hcl", fmt.Sprintf(`
ports { https = %d }
tls { defaults {
  ca_file = %q
  cert_file = %q
  key_file = %q
  verify_incoming = true
} }
acl {
  enabled = true
  default_policy = "deny"
  tokens { initial_management = %q }
}`, httpsPort, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), management))

	f := newSSHFixture(t)
	h, err := f.pool(t, nil).Open(context.Background(), Target{Host: f.server.host(), HostKey: f.server.hostKeyLine()})
	if err != nil {
		t.Fatal(err)
	}
	address := "127.0.0.1:" + strconv.Itoa(httpsPort)
	client := func(t *testing.T, token string, withCert bool) *consulapi.Client {
		t.Helper()
		cert, key := []byte(m.CertPEM), []byte(m.KeyPEM)
		if !withCert {
			cert, key = nil, nil
		}
		tlsCfg, err := ConsulTLS([]byte(m.CAPEM), cert, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := h.Consul(ConsulConfig{Address: address, Scheme: "https", TLS: tlsCfg, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	admin := client(t, management, true)
	probe := &consulapi.KVPair{Key: "microswarm/health/probe", Value: []byte("x")}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := admin.KV().Put(probe, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the management token never wrote over TLS: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := client(t, "", true).KV().Put(probe, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("an anonymous write gave %v, want 403 (ACL denied)", err)
	}
	if _, _, err := client(t, management, false).KV().Get(probe.Key, nil); err == nil {
		t.Error("a client with no certificate was served, though verify_incoming is on")
	}
	for name, args := range map[string][3]string{
		"no CA":          {"", m.CertPEM, m.KeyPEM},
		"a cert, no key": {m.CAPEM, m.CertPEM, ""},
		"a key, no cert": {m.CAPEM, "", m.KeyPEM},
		"a key not its":  {m.CAPEM, m.CertPEM, consultest.NewTLS(t).KeyPEM},
	} {
		if _, err := ConsulTLS([]byte(args[0]), []byte(args[1]), []byte(args[2])); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
