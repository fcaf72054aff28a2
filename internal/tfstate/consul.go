package tfstate

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// The demo's Consul secrets, one file each in the directory `democheck -consul-secrets`
// makes. The key and the token are secrets: mode 0600, and Terraform gets them as
// ephemeral variables, so they are in no state.
const (
	ConsulCAFile    = "ca.pem"
	ConsulCertFile  = "cert.pem"
	ConsulKeyFile   = "key.pem"
	ConsulTokenFile = "management.token"
)

// ConsulConfig is how the demo's checks and the benchmarks talk to its Consul agents:
// plain HTTP without dir, else HTTPS with the CA and certificate in dir and the
// management token.
func ConsulConfig(dir string) (conn.ConsulConfig, error) {
	if dir == "" {
		return conn.ConsulConfig{}, nil
	}
	read := func(name string) []byte {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return b
	}
	ca, cert, key, token := read(ConsulCAFile), read(ConsulCertFile), read(ConsulKeyFile), read(ConsulTokenFile)
	if len(ca) == 0 || len(cert) == 0 || len(key) == 0 || len(token) == 0 {
		return conn.ConsulConfig{}, fmt.Errorf("%s lacks the Consul CA, certificate, key or token (democheck -consul-secrets %s makes them)", dir, dir)
	}
	tlsCfg, err := conn.ConsulTLS(ca, cert, key)
	if err != nil {
		return conn.ConsulConfig{}, err
	}
	return conn.ConsulConfig{Scheme: "https", TLS: tlsCfg, Token: string(token)}, nil
}
