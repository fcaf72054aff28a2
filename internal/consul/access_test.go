package consul

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

// A real agent with HTTPS only, verify_incoming and ACLs that deny by default: the
// provider's readers reach it with the CA and the client certificate, each with the
// least-privilege token made for its role from the management token (made once, even
// by readers in parallel); the gate's token reads health but writes nothing, the health
// token writes the ledger and nothing else, and a reader without a token writes nothing.
func TestAccessReachesASecureAgentWithLeastPrivilege(t *testing.T) {
	m := consultest.NewTLS(t)
	dir := t.TempDir()
	for name, body := range map[string]string{"ca.pem": m.CAPEM, "cert.pem": m.CertPEM, "key.pem": m.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const management = "0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"
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
	open := func(cfg conn.ConsulConfig) (*consulapi.Client, error) {
		return consulapi.NewClient(&consulapi.Config{Address: cfg.Address, Scheme: cfg.Scheme, Token: cfg.Token,
			TLSConfig: consulapi.TLSConfig{CAPem: []byte(m.CAPEM), CertPEM: []byte(m.CertPEM), KeyPEM: []byte(m.KeyPEM)}})
	}
	address := "127.0.0.1:" + strconv.Itoa(httpsPort)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	access := &Access{CAPEM: m.CAPEM, CertPEM: m.CertPEM, KeyPEM: m.KeyPEM, ManagementToken: management}
	cfg, err := access.Config(address)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Scheme != "https" || cfg.TLS == nil || len(cfg.TLS.Certificates) != 1 {
		t.Fatalf("config %+v: want https with the client certificate", cfg)
	}
	// The ACL system is ready once the dev agent has elected itself.
	admin, err := open(conn.ConsulConfig{Address: address, Scheme: "https", Token: management})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, _, err := admin.ACL().TokenReadSelf(nil); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the ACL system never came up: %v", err)
		}
	}
	if err := admin.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "web", Tags: []string{"blue"}, Port: 80}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	clients := make([]*consulapi.Client, 4)
	errs := make([]error, 4)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			role := HealthReader
			if i%2 == 1 {
				role = GateReader
			}
			clients[i], errs[i] = access.Client(ctx, open, cfg, "node-0", role)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("reader %d: %v", i, err)
		}
	}
	health, gate := clients[0], clients[1]
	for _, name := range []string{"health", "gate"} {
		policy, _, err := admin.ACL().PolicyReadByName("microswarm-"+name, nil)
		if err != nil || policy == nil {
			t.Fatalf("the %s policy: %v %v", name, policy, err)
		}
		tokens, _, err := admin.ACL().TokenListFiltered(consulapi.ACLTokenFilterOptions{Policy: policy.ID}, nil)
		if err != nil || len(tokens) != 1 {
			t.Fatalf("the %s role's tokens: %d (%v), want 1 made once", name, len(tokens), err)
		}
	}

	if found, ok, err := FindToken(ctx, admin, "health"); err != nil || !ok {
		t.Errorf("FindToken (stale) did not find the health token: %v %v", ok, err)
	} else if c, _ := open(conn.ConsulConfig{Address: address, Scheme: "https", Token: found.SecretID}); c != nil {
		if _, err := c.KV().Put(&consulapi.KVPair{Key: HealthLedgerPrefix + "found", Value: []byte("{}")}, nil); err != nil {
			t.Errorf("the token FindToken found does not write the ledger: %v", err)
		}
	}
	if _, ok, err := FindToken(ctx, admin, "nobody"); err != nil || ok {
		t.Errorf("FindToken of a reader never made: %v %v, want not found", ok, err)
	}
	for name, c := range map[string]*consulapi.Client{"health": health, "gate": gate} {
		entries, _, err := c.Health().Service("web", "blue", false, nil)
		if err != nil || len(entries) != 1 {
			t.Errorf("the %s token reading the service's health: %d entries, %v; want 1", name, len(entries), err)
		}
		if err := c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "forged", Port: 80}); !isForbidden(err) {
			t.Errorf("the %s token registering a service: %v, want 403", name, err)
		}
		if _, err := c.KV().Put(&consulapi.KVPair{Key: "elsewhere", Value: []byte("x")}, nil); !isForbidden(err) {
			t.Errorf("the %s token writing outside the ledger: %v, want 403", name, err)
		}
	}
	ledger := &consulapi.KVPair{Key: HealthLedgerPrefix + "probe", Value: []byte("{}")}
	if _, err := health.KV().Put(ledger, nil); err != nil {
		t.Errorf("the health token writing its ledger: %v", err)
	}
	if _, err := gate.KV().Put(ledger, nil); !isForbidden(err) {
		t.Errorf("the gate token writing the ledger: %v, want 403", err)
	}
	anonymous, err := (&Access{CAPEM: m.CAPEM, CertPEM: m.CertPEM, KeyPEM: m.KeyPEM}).Client(ctx, open, cfg, "node-0", HealthReader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anonymous.KV().Put(ledger, nil); !isForbidden(err) {
		t.Errorf("a reader without a token writing the ledger: %v, want 403", err)
	}
	// A token given explicitly is used as it is.
	given := cfg
	given.Token = management
	if c, err := access.Client(ctx, open, given, "node-0", GateReader); err != nil {
		t.Fatal(err)
	} else if self, _, err := c.ACL().TokenReadSelf(nil); err != nil || self.SecretID != management {
		t.Errorf("the given token was not used: %v", err)
	}
}

func isForbidden(err error) bool { return err != nil && strings.Contains(err.Error(), "403") }

func TestAccessConfig(t *testing.T) {
	m := consultest.NewTLS(t)
	for name, tc := range map[string]struct {
		access  *Access
		scheme  string
		wantErr string
	}{
		"plain":              {access: &Access{}, scheme: "http"},
		"the CA alone":       {access: &Access{CAPEM: m.CAPEM}, scheme: "https"},
		"a client cert":      {access: &Access{CAPEM: m.CAPEM, CertPEM: m.CertPEM, KeyPEM: m.KeyPEM}, scheme: "https"},
		"a cert with no CA":  {access: &Access{CertPEM: m.CertPEM, KeyPEM: m.KeyPEM}, wantErr: "needs the CA"},
		"a cert with no key": {access: &Access{CAPEM: m.CAPEM, CertPEM: m.CertPEM}, wantErr: "both"},
	} {
		cfg, err := tc.access.Config("")
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %v, want %q", name, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case cfg.Scheme != tc.scheme || cfg.Address != conn.DefaultConsulAddr:
			t.Errorf("%s: %s://%s, want %s://%s", name, cfg.Scheme, cfg.Address, tc.scheme, conn.DefaultConsulAddr)
		}
	}
}
