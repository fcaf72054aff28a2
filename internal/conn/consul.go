package conn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ConsulTLS is the TLS config for a Consul HTTPS API: caPEM verifies the agent's
// certificate; certPEM and keyPEM (both or neither) are the client certificate an agent
// with verify_incoming asks for. With ConsulConfig{Scheme: "https", TLS: it, Token: ...}
// Host.Consul gives a client that speaks TLS and presents an ACL token, through the node.
func ConsulTLS(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the Consul CA holds no PEM certificate")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	switch {
	case len(certPEM) > 0 && len(keyPEM) > 0:
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("the Consul client certificate and key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case len(certPEM) > 0 || len(keyPEM) > 0:
		return nil, errors.New("a Consul client certificate needs both the certificate and its key")
	}
	return cfg, nil
}
