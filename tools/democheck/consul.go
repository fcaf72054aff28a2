package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/pki"
	"github.com/microswarm/terraform-provider-microswarm/internal/tfstate"
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
	if missing(tfstate.ConsulCAFile) || missing(tfstate.ConsulCertFile) || missing(tfstate.ConsulKeyFile) {
		m, err := pki.GenerateTLS(365 * 24 * time.Hour)
		if err != nil {
			return err
		}
		for name, body := range map[string]string{tfstate.ConsulCAFile: m.CAPEM, tfstate.ConsulCertFile: m.CertPEM, tfstate.ConsulKeyFile: m.KeyPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
				return err
			}
		}
	}
	if missing(tfstate.ConsulTokenFile) {
		token, err := consul.NewACLToken()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, tfstate.ConsulTokenFile), []byte(token), 0o600)
	}
	return nil
}
