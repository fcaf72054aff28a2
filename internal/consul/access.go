package consul

import (
	"context"
	"errors"
	"fmt"
	"sync"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// Reader is a least-privilege token the provider makes for one of its own readers and
// uses only in memory, during one run.
type Reader struct {
	Name  string
	Rules string
}

// The provider's own readers.
var (
	// GateReader is the microservice's switch gate: it reads service health, nothing more.
	GateReader = Reader{Name: "gate", Rules: GateRules}
	// HealthReader is the health data source: it reads the catalog and health and writes
	// its failure ledger.
	HealthReader = Reader{Name: "health", Rules: HealthRules}
)

// GateRules let the switch gate read the catalog and health: no KV, no write.
var GateRules = `service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`

// Access is how the provider's readers (the switch gate, the health data source) reach
// a node's Consul agent: over HTTPS with the cluster's CA when CAPEM is set (presenting
// CertPEM and KeyPEM, if set, to an agent with verify_incoming), and, when
// ManagementToken is set, with a least-privilege token made from it for their Reader.
// The tokens it makes are kept in memory for the run and never returned to Terraform.
// The zero Access is plain HTTP without a token. Safe for concurrent use.
type Access struct {
	CAPEM, CertPEM, KeyPEM string
	ManagementToken        string

	mu     sync.Mutex
	tokens map[string]string // token secrets by cluster and reader
}

// Config is the connection to the agent at address (default 127.0.0.1:8500) with no
// token; the TLS material is checked here.
func (a *Access) Config(address string) (conn.ConsulConfig, error) {
	if address == "" {
		address = conn.DefaultConsulAddr
	}
	cfg := conn.ConsulConfig{Address: address, Scheme: "http"}
	if a.CAPEM == "" {
		if a.CertPEM != "" || a.KeyPEM != "" {
			return cfg, errors.New("a Consul client certificate needs the CA too (consul_ca_pem)")
		}
		return cfg, nil
	}
	t, err := conn.ConsulTLS([]byte(a.CAPEM), []byte(a.CertPEM), []byte(a.KeyPEM))
	if err != nil {
		return cfg, err
	}
	cfg.Scheme, cfg.TLS = "https", t
	return cfg, nil
}

// Client opens, through open (a node's Host.Consul), the agent at cfg for reader: with
// cfg.Token when it is set, else with reader's token made (or found again) with the
// management token, else with none. cluster names the Consul cluster behind the agent
// (the node's address will do): a token is made once per cluster and reader in a run.
func (a *Access) Client(ctx context.Context, open func(conn.ConsulConfig) (*consulapi.Client, error), cfg conn.ConsulConfig, cluster string, reader Reader) (*consulapi.Client, error) {
	if cfg.Token != "" || a.ManagementToken == "" {
		return open(cfg)
	}
	secret, err := a.readerToken(ctx, open, cfg, cluster, reader)
	if err != nil {
		return nil, err
	}
	cfg.Token = secret
	return open(cfg)
}

func (a *Access) readerToken(ctx context.Context, open func(conn.ConsulConfig) (*consulapi.Client, error), cfg conn.ConsulConfig, cluster string, reader Reader) (string, error) {
	// One reader at a time makes a token: two data sources read in parallel must not
	// both create the reader's policy (the second create would fail on the name).
	a.mu.Lock()
	defer a.mu.Unlock()
	key := cluster + "\x00" + reader.Name
	if s, ok := a.tokens[key]; ok {
		return s, nil
	}
	mgmt := cfg
	mgmt.Token = a.ManagementToken
	api, err := open(mgmt)
	if err != nil {
		return "", err
	}
	// Without a leader every write, and every read that is not stale, waits for Consul's
	// RPC hold (7 s) and fails: a plan after a lost quorum took 45 s on two such tries.
	// Then only the token made earlier can serve, found by stale reads.
	if leader, err := api.Status().LeaderWithQueryOptions((&consulapi.QueryOptions{}).WithContext(ctx)); err == nil && leader == "" {
		found, ok, err := FindToken(ctx, api, reader.Name)
		switch {
		case err != nil:
			return "", fmt.Errorf("finding the %s's Consul token while the cluster has no leader: %w", reader.Name, err)
		case !ok:
			return "", fmt.Errorf("the cluster has no leader, and the %s's Consul token was never made", reader.Name)
		}
		a.remember(key, found.SecretID)
		return found.SecretID, nil
	}
	tok, err := EnsureToken(ctx, api, reader.Name, reader.Rules)
	if err != nil {
		// Another run may have made the policy between the read and the create: the
		// second try finds it. Without a leader only a stale read can find it.
		if tok, err = EnsureToken(ctx, api, reader.Name, reader.Rules); err != nil {
			found, ok, findErr := FindToken(ctx, api, reader.Name)
			if findErr != nil || !ok {
				return "", fmt.Errorf("making the %s's least-privilege Consul token with the management token: %w", reader.Name, err)
			}
			tok = found
		}
	}
	a.remember(key, tok.SecretID)
	return tok.SecretID, nil
}

// remember keeps a reader's token secret for the run; a.mu is held.
func (a *Access) remember(key, secret string) {
	if a.tokens == nil {
		a.tokens = map[string]string{}
	}
	a.tokens[key] = secret
}
