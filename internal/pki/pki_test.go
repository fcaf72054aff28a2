package pki_test

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/pki"
)

// The demo's material: the certificate is the key's, signed by the CA, for every name an
// agent and the provider use; the token is a UUID the provider accepts.
func TestGeneratedTLSAndToken(t *testing.T) {
	t.Parallel()
	m, err := pki.GenerateTLS(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := consul.CheckTLS(consul.TLS{CAPEM: m.CAPEM, CertPEM: m.CertPEM, KeyPEM: m.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(m.CertPEM))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"server.dc1.consul", "localhost", "127.0.0.1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Error(err)
		}
	}
	if leaf.NotAfter.After(time.Now().Add(2 * time.Hour)) {
		t.Errorf("valid until %s, want about an hour", leaf.NotAfter)
	}
	token, err := consul.NewACLToken()
	if err != nil || consul.ValidateACLToken(token) != nil {
		t.Errorf("token %q: %v %v", token, err, consul.ValidateACLToken(token))
	}
	if other, _ := consul.NewACLToken(); other == token {
		t.Error("two tokens are the same")
	}
}
