package consul

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/container"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// Rejoin makes the agent in c leave the cluster gracefully and join it again: the agent
// exits after its leave, the engine starts it again (its restart policy, or Rejoin
// itself), and it joins through its retry_join list with its node ID, keyring and token,
// which live on the data volume. The leader sees a member leave and join, and handles the
// join at once. On success *c is the container as it runs now (its restart count moved,
// so the caller's alive check, which reads *c, does not take the restart for a crash).
func Rejoin(ctx context.Context, e Engine, api *consulapi.Client, c *Container) error {
	exited, waitErr := e.ContainerWait(ctx, c.ID, container.WaitConditionNextExit)
	if _, err := api.Raw().Write("/v1/agent/leave", nil, nil, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("asking the agent to leave: %w", err)
	}
	select {
	case <-exited:
	case err := <-waitErr:
		return fmt.Errorf("waiting for the agent to exit after its leave: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	// The engine restarts an exited unless-stopped container about 100 ms later; one that
	// stays down past a few seconds is started here.
	deadline := time.Now().Add(3 * time.Second)
	return wait.Until(ctx, wait.Options{What: "the agent to run again after its leave", Interval: 100 * time.Millisecond, MaxInterval: 250 * time.Millisecond},
		func(ctx context.Context) (bool, string, error) {
			now, err := Find(ctx, e, c.Name)
			if err != nil {
				return false, "", err
			}
			if now.ID != c.ID {
				return false, "", fmt.Errorf("container %s was replaced while it rejoined", c.Name)
			}
			if now.Running {
				*c = *now
				return true, "", nil
			}
			if time.Now().After(deadline) && now.State == "exited" {
				if err := e.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
					return false, "", wait.Retryable(err)
				}
			}
			return false, now.State, nil
		})
}
