package localcloud

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/docker/docker/api/types/container"
)

// A tag added in the registry reaches a droplet by the ordinary pull path.
func TestTagImageReachesTheNodes(t *testing.T) {
	cloud := startCloud(t, Config{})
	do := godoClient(t, cloud, cloud.Token())
	const tag = "1.20.5-tagtest"
	if err := cloud.TagImage(t.Context(), "hashicorp/consul", "1.20.5", tag); err != nil {
		t.Fatalf("TagImage: %v", err)
	}
	// Only the tag goes (the registry's API would delete the manifest, 1.20.5 with it).
	t.Cleanup(func() {
		_ = os.RemoveAll(filepath.Join(cloud.cfg.RegistryDataDir, "docker/registry/v2/repositories/hashicorp/consul/_manifests/tags", tag))
	})
	if err := cloud.TagImage(t.Context(), "hashicorp/consul", "no-such-tag", "x"); err == nil {
		t.Fatal("tagging a tag the registry lacks succeeded")
	}
	d, _, err := do.Droplets.Create(t.Context(), &godo.DropletCreateRequest{
		Name: "tagged", Region: "nyc3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "docker-20-04"},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, do, d.ID, time.Now())
	cloud.mu.Lock()
	containerID := cloud.st.droplet(d.ID).ContainerID
	cloud.mu.Unlock()
	docker := dockerClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	exec, err := docker.ContainerExecCreate(ctx, containerID, container.ExecOptions{
		Cmd: []string{"docker", "pull", "hashicorp/consul:" + tag}, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	attached, err := docker.ContainerExecAttach(ctx, exec.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(attached.Reader)
	attached.Close()
	result, err := docker.ContainerExecInspect(ctx, exec.ID)
	if err != nil || result.ExitCode != 0 || !strings.Contains(string(out), tag) {
		t.Fatalf("the node could not pull the new tag (exit %d, %v):\n%s", result.ExitCode, err, out)
	}
}
