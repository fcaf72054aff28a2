package tfstate

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

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
