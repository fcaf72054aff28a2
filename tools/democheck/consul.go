package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/pki"
)

// The demo's Consul secrets, one file each in the directory -consul-secrets makes. The
// key and the token are secrets: mode 0600, and Terraform gets them as ephemeral
// variables, so they are in no state.
const (
	consulCAFile    = "ca.pem"
	consulCertFile  = "cert.pem"
	consulKeyFile   = "key.pem"
	consulTokenFile = "management.token"
)

// writeConsulSecrets makes what dir lacks: the CA, the agents' certificate and key (one
// pair for every agent, valid a year) and the ACL management token. Material already
// there is kept, so the running cluster keeps matching it.
func writeConsulSecrets(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	missing := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return errors.Is(err, fs.ErrNotExist)
	}
	if missing(consulCAFile) || missing(consulCertFile) || missing(consulKeyFile) {
		m, err := pki.GenerateTLS(365 * 24 * time.Hour)
		if err != nil {
			return err
		}
		for name, body := range map[string]string{consulCAFile: m.CAPEM, consulCertFile: m.CertPEM, consulKeyFile: m.KeyPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
				return err
			}
		}
	}
	if missing(consulTokenFile) {
		token, err := consul.NewACLToken()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, consulTokenFile), []byte(token), 0o600)
	}
	return nil
}

// consulClientConfig is how democheck talks to Consul: plain HTTP without dir, else
// HTTPS with the demo's CA and certificate and the management token.
func consulClientConfig(dir string) (conn.ConsulConfig, error) {
	if dir == "" {
		return conn.ConsulConfig{}, nil
	}
	read := func(name string) []byte {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return b
	}
	ca, cert, key, token := read(consulCAFile), read(consulCertFile), read(consulKeyFile), read(consulTokenFile)
	if len(ca) == 0 || len(cert) == 0 || len(key) == 0 || len(token) == 0 {
		return conn.ConsulConfig{}, fmt.Errorf("%s lacks the Consul CA, certificate, key or token (democheck -consul-secrets %s makes them)", dir, dir)
	}
	tlsCfg, err := conn.ConsulTLS(ca, cert, key)
	if err != nil {
		return conn.ConsulConfig{}, err
	}
	return conn.ConsulConfig{Scheme: "https", TLS: tlsCfg, Token: string(token)}, nil
}
