// Package consultest holds helpers for tests that run Consul agents.
package consultest

import (
	"testing"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/pki"
)

// Material is PEM-encoded TLS material.
type Material struct {
	CAPEM, CertPEM, KeyPEM string
}

// NewTLS makes a CA and a certificate signed by it, valid for a day (pki.GenerateTLS):
// SANs server.dc1.consul, localhost and 127.0.0.1, for server and client auth.
func NewTLS(t testing.TB) Material {
	t.Helper()
	m, err := pki.GenerateTLS(24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return Material{CAPEM: m.CAPEM, CertPEM: m.CertPEM, KeyPEM: m.KeyPEM}
}
