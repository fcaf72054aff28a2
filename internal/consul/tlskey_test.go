package consul

import (
	"context"
	"strings"
	"testing"
)

// A write-only TLS key: the plan (no key) and the apply (the key) hash alike, the
// container gets the key itself, and ReadTLSKey gives it back from the container, which
// is how the provider presents the agent's certificate after the apply.
func TestWriteOnlyTLSKeyIsReadBackFromTheContainer(t *testing.T) {
	t.Parallel()
	material := newTestTLS(t)
	planned := serverSpec()
	planned.TLS = &TLS{CAPEM: material.CAPEM, CertPEM: material.CertPEM, KeyWriteOnly: true}
	applied := serverSpec()
	applied.TLS = &TLS{CAPEM: material.CAPEM, CertPEM: material.CertPEM, KeyPEM: material.KeyPEM, KeyWriteOnly: true}
	if planned.Hash() != applied.Hash() {
		t.Error("the hash follows the write-only key: every plan would show the container changing")
	}
	stored := serverSpec()
	stored.TLS = &material
	if stored.Hash() == applied.Hash() {
		t.Error("a key moved to key_pem_wo hashes as in key_pem: the container would keep a config the provider did not write")
	}

	f := newFakeEngine()
	c, _, err := Ensure(context.Background(), f, applied)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ReadTLSKey(context.Background(), f, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if key != material.KeyPEM {
		t.Errorf("read back %q, want the key the container was made with", key)
	}
	if _, err := ReadTLSKey(context.Background(), f, "no-such-container"); err == nil || !strings.Contains(err.Error(), KeyFile) {
		t.Errorf("a missing container reads as %v, want an error naming %s", err, KeyFile)
	}
}
