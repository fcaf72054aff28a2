package consul

import (
	"context"
	"fmt"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// ServerStabilization is how long autopilot lets a new server be healthy before it
// promotes it to voter. Consul's default (10 s) comes on top of autopilot's 10 s
// reconcile tick, so a replacement server waited 10-20 s to vote; a server this provider
// starts is healthy or not within a couple of health updates (2 s each).
const ServerStabilization = 2 * time.Second

// TuneAutopilot lowers the cluster's autopilot server stabilization time to
// ServerStabilization when it is longer. The setting lives in the raft state, so a
// cluster made by an earlier version is tuned by the next server that joins it (before it
// waits to be promoted). It waits, within ctx, for a leader to answer; an operator who
// set a shorter value keeps it.
func TuneAutopilot(ctx context.Context, api *consulapi.Client) error {
	op := api.Operator()
	return wait.Until(ctx, wait.Options{What: "autopilot's configuration", Interval: 250 * time.Millisecond, MaxInterval: time.Second},
		func(ctx context.Context) (bool, string, error) {
			cfg, err := op.AutopilotGetConfiguration(query(ctx))
			if err != nil {
				return false, "no leader answers yet", wait.Retryable(err)
			}
			if cfg.ServerStabilizationTime != nil && cfg.ServerStabilizationTime.Duration() <= ServerStabilization {
				return true, "", nil
			}
			cfg.ServerStabilizationTime = consulapi.NewReadableDuration(ServerStabilization)
			ok, err := op.AutopilotCASConfiguration(cfg, (&consulapi.WriteOptions{}).WithContext(ctx))
			if err != nil {
				return false, "", wait.Retryable(fmt.Errorf("setting autopilot's server stabilization time: %w", err))
			}
			return ok, "changed under the write", nil
		})
}
