package consul

import (
	"context"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

// TestTuneAutopilot: a real agent's autopilot stabilization time goes from Consul's
// default down to ServerStabilization, and a shorter one set by an operator stays.
func TestTuneAutopilot(t *testing.T) {
	agent := consultest.StartDevAgent(t)
	api, err := consulapi.NewClient(&consulapi.Config{Address: agent.Address()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := TuneAutopilot(ctx, api); err != nil {
		t.Fatal(err)
	}
	cfg, err := api.Operator().AutopilotGetConfiguration(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ServerStabilizationTime.Duration(); got != ServerStabilization {
		t.Fatalf("stabilization time %s, want %s", got, ServerStabilization)
	}
	cfg.ServerStabilizationTime = consulapi.NewReadableDuration(time.Second)
	if err := api.Operator().AutopilotSetConfiguration(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if err := TuneAutopilot(ctx, api); err != nil {
		t.Fatal(err)
	}
	if cfg, err = api.Operator().AutopilotGetConfiguration(nil); err != nil || cfg.ServerStabilizationTime.Duration() != time.Second {
		t.Fatalf("an operator's shorter time was changed: %v %v", cfg, err)
	}
}
