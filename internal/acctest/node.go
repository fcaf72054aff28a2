package acctest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// Pool returns a connection pool holding the provider's test SSH key, closed with the test.
func Pool(t *testing.T) *conn.Pool {
	t.Helper()
	opts := conn.Options{PrivateKey: []byte(os.Getenv("MICROSWARM_SSH_PRIVATE_KEY"))}
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

// RunContainer runs a command in a fresh container on a Docker host (pulling the image
// as the engine would) and returns what it printed. It proves the host is a working
// Docker host, reached the way the provider reaches it.
func RunContainer(ctx context.Context, pool *conn.Pool, target conn.Target, ref string, cmd ...string) (string, error) {
	h, err := pool.Open(ctx, target)
	if err != nil {
		return "", err
	}
	docker, err := h.Docker()
	if err != nil {
		return "", err
	}
	pull, err := docker.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", ref, err)
	}
	_, _ = io.Copy(io.Discard, pull)
	_ = pull.Close()
	created, err := docker.ContainerCreate(ctx, &container.Config{Image: ref, Cmd: cmd}, nil, nil, nil, "")
	if err != nil {
		return "", fmt.Errorf("create container from %s: %w", ref, err)
	}
	defer func() {
		_ = docker.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
	}()
	waitC, errC := docker.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return "", fmt.Errorf("start container: %w", err)
	}
	select {
	case res := <-waitC:
		if res.StatusCode != 0 {
			return "", fmt.Errorf("%v exited %d", cmd, res.StatusCode)
		}
	case err := <-errC:
		return "", err
	}
	logs, err := docker.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", err
	}
	defer logs.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, logs); err != nil {
		return "", err
	}
	return out.String(), nil
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
