package testkit

import (
	"context"
	"os"
	"testing"

	"github.com/docker/docker/client"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// Pool returns a connection pool holding the provider's test SSH key, closed with the test.
func Pool(t *testing.T) *conn.Pool {
	t.Helper()
	return PoolWith(t, conn.Options{})
}

// PoolWith is Pool with other options (timeouts, keepalive); the key is the test key.
func PoolWith(t *testing.T, opts conn.Options) *conn.Pool {
	t.Helper()
	opts.PrivateKey = []byte(os.Getenv("MICROSWARM_SSH_PRIVATE_KEY"))
	if file := os.Getenv("MICROSWARM_SSH_PRIVATE_KEY_FILE"); len(opts.PrivateKey) == 0 && file != "" {
		key, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		opts.PrivateKey = key
	}
	p, err := conn.NewPool(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// HostEngine is this machine's Docker engine, with the given images on it, for tests
// that run real containers locally; without them the test is skipped, except in CI,
// where `make images` provides them and their absence fails the test.
func HostEngine(t *testing.T, images ...string) *client.Client {
	t.Helper()
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		SkipOrFailInCI(t, "no docker engine: %v", err)
	}
	t.Cleanup(func() { _ = docker.Close() })
	ctx := context.Background()
	if _, err := docker.Ping(ctx); err != nil {
		SkipOrFailInCI(t, "no docker engine: %v", err)
	}
	for _, ref := range images {
		if _, err := docker.ImageInspect(ctx, ref); err != nil {
			SkipOrFailInCI(t, "%s is not built (make images): %v", ref, err)
		}
	}
	return docker
}
