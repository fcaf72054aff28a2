package consul

import (
	"strings"
	"testing"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

func TestValidateJoinAddr(t *testing.T) {
	t.Parallel()
	cases := map[string]bool{ // entry: valid
		"10.99.0.5":         true,
		"10.99.0.5:8301":    true,
		"[fd00::5]:8301":    true,
		"consul-1.internal": true,
		"provider=digitalocean tag_name=consul api_token=x": true,
		"10.99.0.5:abc":   false,
		"10.99.0.5:70000": false,
		"999.1.1.1":       false,
		"0.0.0.0":         false,
		"host:":           false,
	}
	for entry, valid := range cases {
		if err := ValidateJoinAddr(entry); (err == nil) != valid {
			t.Errorf("ValidateJoinAddr(%q) = %v, want valid=%v", entry, err, valid)
		}
	}
}

func TestValidateAdvertiseIP(t *testing.T) {
	t.Parallel()
	for addr, valid := range map[string]bool{"10.10.0.5": true, "fd00::5": true, "0.0.0.0": false, "::": false, "999.1.1.1": false, "224.0.0.1": false} {
		if err := ValidateAdvertiseIP(addr); (err == nil) != valid {
			t.Errorf("ValidateAdvertiseIP(%q) = %v, want valid=%v", addr, err, valid)
		}
	}
}

func TestPortClashes(t *testing.T) {
	t.Parallel()
	p := DefaultPorts(RoleServer)
	if got := PortClashes(RoleServer, p); len(got) != 0 {
		t.Fatalf("Consul's defaults clash: %v", got)
	}
	p.DNS, p.SerfWAN = p.SerfLAN, PortDisabled
	p.GRPCTLS = PortDisabled
	got := PortClashes(RoleServer, p)
	if len(got) != 1 || got[0].Name != "serf_lan" || got[0].Other != "dns" {
		t.Fatalf("dns on serf_lan's port: clashes %v, want serf_lan with dns", got)
	}
}

func TestBootstrapExpectWarning(t *testing.T) {
	t.Parallel()
	for n, warn := range map[int]bool{1: false, 2: true, 3: false, 4: true, 5: false, 8: true} {
		if got := BootstrapExpectWarning(n); (got != "") != warn {
			t.Errorf("BootstrapExpectWarning(%d) = %q, want a warning: %v", n, got, warn)
		}
	}
}

func TestCheckTLS(t *testing.T) {
	t.Parallel()
	a, b := consultest.NewTLS(t), consultest.NewTLS(t)
	cases := map[string]struct {
		tls   TLS
		field string
	}{
		"a good set":           {TLS{CAPEM: a.CAPEM, CertPEM: a.CertPEM, KeyPEM: a.KeyPEM}, ""},
		"garbage ca":           {TLS{CAPEM: "garbage", CertPEM: a.CertPEM, KeyPEM: a.KeyPEM}, "ca_pem"},
		"a key as certificate": {TLS{CAPEM: a.CAPEM, CertPEM: a.KeyPEM, KeyPEM: a.KeyPEM}, "cert_pem"},
		"another cert's key":   {TLS{CAPEM: a.CAPEM, CertPEM: a.CertPEM, KeyPEM: b.KeyPEM}, "key_pem"},
		"signed by another CA": {TLS{CAPEM: b.CAPEM, CertPEM: a.CertPEM, KeyPEM: a.KeyPEM}, "cert_pem"},
	}
	for name, tc := range cases {
		err := CheckTLS(tc.tls)
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.field != "" && (err == nil || err.Field != tc.field || !strings.HasPrefix(err.Error(), tc.field)):
			t.Errorf("%s: CheckTLS = %v, want a fault in %s", name, err, tc.field)
		}
	}
}
