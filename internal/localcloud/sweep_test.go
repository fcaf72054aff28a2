package localcloud

import (
	"context"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

func TestSweepRemovesOnlyStaleInstances(t *testing.T) {
	requireLocalCloud(t)
	ctx := t.Context()
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer docker.Close()
	stale, live := uniqueName(), uniqueName()
	made := map[string]string{}
	for _, instance := range []string{stale, live} {
		created, err := docker.NetworkCreate(ctx, instance+"-public", network.CreateOptions{
			Labels: map[string]string{labelInstance: instance, labelRole: "public"}})
		if err != nil {
			t.Fatal(err)
		}
		made[instance] = created.ID
		// t.Context() is already cancelled when cleanups run.
		t.Cleanup(func() { _ = docker.NetworkRemove(context.Background(), created.ID) })
	}

	swept, err := Sweep(ctx, func(instance string) bool { return instance == stale })
	if err != nil {
		t.Fatal(err)
	}
	if len(swept) != 1 || swept[0] != stale {
		t.Fatalf("Sweep removed %v, want only %s", swept, stale)
	}
	if _, err := docker.NetworkInspect(ctx, made[stale], network.InspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("the stale instance's network is still there (inspect err = %v)", err)
	}
	if _, err := docker.NetworkInspect(ctx, made[live], network.InspectOptions{}); err != nil {
		t.Fatalf("the live instance's network was removed: %v", err)
	}
}
