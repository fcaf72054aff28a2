package provider

import (
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

// The health data source asks the agent where the Consul resources serve it (HTTPS on
// the same port with tls), with the provider's TLS material and the client certificate;
// its own consul_ca_pem overrides the provider's CA; its token wins over the one the
// provider would make.
func TestHealthConsulConfig(t *testing.T) {
	ours, theirs := consultest.NewTLS(t), consultest.NewTLS(t)
	provider := &consul.Access{CAPEM: ours.CAPEM, CertPEM: ours.CertPEM, KeyPEM: ours.KeyPEM, ManagementToken: "0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"}
	null := healthModel{ConsulAddress: types.StringNull(), ConsulCAPEM: types.StringNull(), ConsulToken: types.StringNull()}
	t.Setenv("CONSUL_HTTP_TOKEN", "")

	plain, err := healthConsulConfig(null, nil)
	if err != nil || plain.Scheme != "http" || plain.Address != conn.DefaultConsulAddr || plain.Token != "" {
		t.Errorf("no TLS anywhere: %+v %v, want http to %s with no token", plain, err, conn.DefaultConsulAddr)
	}
	secure, err := healthConsulConfig(null, provider)
	if err != nil || secure.Scheme != "https" || secure.Address != conn.DefaultConsulAddr || len(secure.TLS.Certificates) != 1 || secure.Token != "" {
		t.Errorf("the provider's TLS: %+v %v, want https to %s with the client certificate and no token (made later)", secure, err, conn.DefaultConsulAddr)
	}
	own := null
	own.ConsulCAPEM, own.ConsulAddress, own.ConsulToken = types.StringValue(theirs.CAPEM), types.StringValue("127.0.0.1:8501"), types.StringValue("given")
	cfg, err := healthConsulConfig(own, provider)
	if err != nil || cfg.Address != "127.0.0.1:8501" || cfg.Token != "given" || len(cfg.TLS.Certificates) != 1 || cfg.TLS.RootCAs.Equal(secure.TLS.RootCAs) {
		t.Errorf("the data source's own settings: %+v %v, want its CA, address and token, and the provider's client certificate", cfg, err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN", "from-env")
	if cfg, _ := healthConsulConfig(null, provider); cfg.Token != "from-env" {
		t.Errorf("token %q, want CONSUL_HTTP_TOKEN's", cfg.Token)
	}
	bad := null
	bad.ConsulCAPEM = types.StringValue("not a pem")
	if _, err := healthConsulConfig(bad, provider); err == nil {
		t.Error("a CA that is no PEM was taken")
	}
}
