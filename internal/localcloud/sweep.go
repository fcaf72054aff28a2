package localcloud

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// Sweep removes what emulator instances left behind when their process died before
// Close (a test binary that panicked, a killed demo): every container, volume and network
// of each instance for which stale reports true, and its state directory. It returns the
// instances it removed.
func Sweep(ctx context.Context, stale func(instance string) bool) ([]string, error) {
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	defer docker.Close()
	byLabel := filters.NewArgs(filters.Arg("label", labelInstance))
	instances := map[string]bool{}
	containers, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: byLabel})
	if err != nil {
		return nil, err
	}
	for _, c := range containers {
		instances[c.Labels[labelInstance]] = true
	}
	networks, err := docker.NetworkList(ctx, network.ListOptions{Filters: byLabel})
	if err != nil {
		return nil, err
	}
	for _, nw := range networks {
		instances[nw.Labels[labelInstance]] = true
	}
	var swept []string
	var errs []error
	for instance := range instances {
		if instance == "" || !stale(instance) {
			continue
		}
		backend := &nodeBackend{docker: docker, instance: instance, logf: func(string, ...any) {}}
		if err := backend.removeEverything(ctx); err != nil {
			errs = append(errs, fmt.Errorf("sweeping local cloud %q: %w", instance, err))
			continue
		}
		// The state directory holds only what the emulator wrote for that instance.
		if err := os.RemoveAll(filepath.Join(DefaultCacheDir(), "localcloud", instance)); err != nil {
			errs = append(errs, err)
		}
		swept = append(swept, instance)
	}
	return swept, errors.Join(errs...)
}
