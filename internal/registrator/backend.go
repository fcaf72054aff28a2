package registrator

import (
	"fmt"
	"net/url"
	"os"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// ConsulConfig turns registrator's backend URI into a Consul client configuration:
// consul://HOST:PORT (http), consul-tls://HOST:PORT (https, CA and client certificate
// from CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY) or consul-unix:///PATH.
// The token comes from CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE, as for every
// Consul client.
func ConsulConfig(uri string) (*consulapi.Config, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("backend URI %q: %w", uri, err)
	}
	cfg := consulapi.DefaultConfig()
	switch u.Scheme {
	case "consul":
		cfg.Scheme = "http"
		cfg.Address = u.Host
	case "consul-tls":
		cfg.Scheme = "https"
		cfg.Address = u.Host
	case "consul-unix":
		cfg.Scheme = "http"
		cfg.Address = "unix://" + u.Path
		if u.Path == "" {
			return nil, fmt.Errorf("backend URI %q: consul-unix needs a socket path (consul-unix:///path)", uri)
		}
	default:
		return nil, fmt.Errorf("backend URI %q: want consul://, consul-tls:// or consul-unix://", uri)
	}
	if u.Scheme != "consul-unix" && u.Host == "" {
		return nil, fmt.Errorf("backend URI %q: no host:port", uri)
	}
	return cfg, nil
}

// ConnectAgent returns the agent API once the agent answers, trying attempts more times
// (negative: for ever) every interval, as registrator's -retry-attempts and
// -retry-interval do.
func ConnectAgent(cfg *consulapi.Config, attempts int, interval time.Duration, logf func(string, ...any)) (*consulapi.Agent, error) {
	client, err := consulapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	agent := client.Agent()
	for try := 0; ; try++ {
		_, err = agent.Self()
		if err == nil {
			return agent, nil
		}
		if attempts >= 0 && try >= attempts {
			return nil, fmt.Errorf("consul agent at %s: %w", cfg.Address, err)
		}
		logf("consul agent at %s not answering (%v); retrying in %s", cfg.Address, err, interval)
		time.Sleep(interval)
	}
}

// HealthFresh reports whether the health file was touched within maxAge: the running
// registrator touches it each time the agent answers.
func HealthFresh(file string, maxAge time.Duration) error {
	st, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("not synced with the consul agent yet: %w", err)
	}
	if age := time.Since(st.ModTime()); age > maxAge {
		return fmt.Errorf("last sync with the consul agent %s ago", age.Round(time.Second))
	}
	return nil
}
