package consul

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Engine is the part of the Docker API this package uses; *client.Client implements it.
type Engine interface {
	ContainerInspect(ctx context.Context, container string) (container.InspectResponse, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, container string, options container.StartOptions) error
	ContainerStop(ctx context.Context, container string, options container.StopOptions) error
	ContainerRemove(ctx context.Context, container string, options container.RemoveOptions) error
	ContainerUpdate(ctx context.Context, container string, updateConfig container.UpdateConfig) (container.UpdateResponse, error)
	ContainerWait(ctx context.Context, container string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerLogs(ctx context.Context, container string, options container.LogsOptions) (io.ReadCloser, error)
	CopyToContainer(ctx context.Context, container, path string, content io.Reader, options container.CopyToContainerOptions) error
	FileReader
	ContainerExecCreate(ctx context.Context, container string, options container.ExecOptions) (container.ExecCreateResponse, error)
	ContainerExecAttach(ctx context.Context, execID string, options container.ExecAttachOptions) (types.HijackedResponse, error)
	ContainerExecInspect(ctx context.Context, execID string) (container.ExecInspect, error)
	ImageInspect(ctx context.Context, image string, _ ...client.ImageInspectOption) (image.InspectResponse, error)
	ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error)
	VolumeCreate(ctx context.Context, options volume.CreateOptions) (volume.Volume, error)
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
}

var _ Engine = (*client.Client)(nil)

// ErrNotFound says there is no container by that name.
var ErrNotFound = errors.New("container not found")

// NotManagedError says a container has the name but was not made by this provider, so it
// is never adopted, replaced or removed.
type NotManagedError struct {
	Name  string
	Image string
}

func (e *NotManagedError) Error() string {
	return fmt.Sprintf("a container named %q (image %s) exists but was not created by this provider (no %s=%s label); "+
		"rename or remove it, or choose another container_name", e.Name, e.Image, LabelManagedBy, ManagedByValue)
}

// Container is what the engine says about an agent container.
type Container struct {
	ID           string
	Name         string
	Image        string
	Running      bool
	State        string
	RestartCount int
	Role         Role
	ConfigHash   string
	// Spec is read back from the command line: no secrets, no TLS material.
	Spec Spec
	// HTTPS says the API is served over TLS.
	HTTPS bool
	// RootDir is the running container's merged root on its node (the engine's overlay
	// mount), "" when it does not run or the storage driver does not say.
	RootDir string
}

// Matches reports whether the container runs exactly spec.
func (c *Container) Matches(spec Spec) bool { return c.ConfigHash == spec.Hash() }

// Find inspects the container by name.
func Find(ctx context.Context, e Engine, name string) (*Container, error) {
	info, err := e.ContainerInspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("inspecting container %s: %w", name, err)
	}
	if info.Config == nil || info.Config.Labels[LabelManagedBy] != ManagedByValue {
		img := ""
		if info.Config != nil {
			img = info.Config.Image
		}
		return nil, &NotManagedError{Name: name, Image: img}
	}
	c := &Container{
		ID:           info.ID,
		Name:         strings.TrimPrefix(info.Name, "/"),
		Image:        info.Config.Image,
		Role:         Role(info.Config.Labels[LabelRole]),
		ConfigHash:   info.Config.Labels[LabelConfigHash],
		RestartCount: info.RestartCount,
	}
	if info.State != nil {
		c.Running = info.State.Running && !info.State.Restarting
		c.State = info.State.Status
	}
	if c.Running && info.GraphDriver.Data != nil {
		c.RootDir = info.GraphDriver.Data["MergedDir"]
	}
	spec, https, err := ParseArgs(info.Config.Cmd)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", name, err)
	}
	spec.Image, spec.ContainerName = c.Image, c.Name
	c.Spec, c.HTTPS = spec, https
	return c, nil
}

// Outcome says what Ensure did.
type Outcome string

const (
	Created   Outcome = "created"
	Adopted   Outcome = "adopted"
	Started   Outcome = "started"
	Recreated Outcome = "recreated"
)

// Ensure finds or creates the container for spec, so a create that failed half-way can
// simply run again: a container with the right config is adopted (and started if it is
// stopped); one with another config is recreated on the same data volume.
func Ensure(ctx context.Context, e Engine, spec Spec) (*Container, Outcome, error) {
	current, err := Find(ctx, e, spec.ContainerName)
	switch {
	case errors.Is(err, ErrNotFound):
		c, err := create(ctx, e, spec)
		return c, Created, err
	case err != nil:
		return nil, "", err
	case current.Matches(spec) && current.Running:
		return current, Adopted, nil
	case current.Matches(spec):
		if err := e.ContainerStart(ctx, current.ID, container.StartOptions{}); err != nil {
			return nil, "", fmt.Errorf("starting container %s: %w", spec.ContainerName, err)
		}
		c, err := Find(ctx, e, spec.ContainerName)
		return c, Started, err
	default:
		c, err := Replace(ctx, e, current, spec)
		return c, Recreated, err
	}
}

// StopTimeout is how long an agent gets to shut down before it is killed.
const StopTimeout = 30 * time.Second

// Replace stops and removes the current container and creates one for spec on the same
// data volume, so the agent keeps its node ID, raft log and keyring. The spec is checked
// and its image pulled first, while the old agent still runs: a mistyped image or a bad
// TLS pair must not take a server out of the quorum.
func Replace(ctx context.Context, e Engine, current *Container, spec Spec) (*Container, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := EnsureImage(ctx, e, spec.Image); err != nil {
		return nil, err
	}
	if err := removeContainer(ctx, e, current.ID); err != nil {
		return nil, err
	}
	return create(ctx, e, spec)
}

func removeContainer(ctx context.Context, e Engine, id string) error {
	seconds := int(StopTimeout / time.Second)
	if err := e.ContainerStop(ctx, id, container.StopOptions{Timeout: &seconds}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stopping container %s: %w", shortID(id), err)
	}
	if err := e.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("removing container %s: %w", shortID(id), err)
	}
	return nil
}

func create(ctx context.Context, e Engine, spec Spec) (*Container, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := EnsureImage(ctx, e, spec.Image); err != nil {
		return nil, err
	}
	// VolumeCreate returns the existing volume of that name: the data survives replacements.
	if _, err := e.VolumeCreate(ctx, volume.CreateOptions{
		Name:   spec.VolumeName(),
		Labels: map[string]string{LabelManagedBy: ManagedByValue, LabelRole: string(spec.Role)},
	}); err != nil {
		return nil, fmt.Errorf("creating volume %s: %w", spec.VolumeName(), err)
	}
	created, err := e.ContainerCreate(ctx, spec.ContainerConfig(), spec.HostConfig(), nil, nil, spec.ContainerName)
	if err != nil {
		return nil, fmt.Errorf("creating container %s: %w", spec.ContainerName, err)
	}
	fail := func(step string, err error) (*Container, error) {
		_ = e.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
		return nil, fmt.Errorf("%s in container %s: %w", step, spec.ContainerName, err)
	}
	archive, err := tarFiles(spec.Files())
	if err != nil {
		return fail("packing the config", err)
	}
	if err := e.CopyToContainer(ctx, created.ID, "/", archive, container.CopyToContainerOptions{}); err != nil {
		return fail("copying the config", err)
	}
	if err := e.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fail("starting the agent", err)
	}
	return Find(ctx, e, spec.ContainerName)
}

// EnsureImage pulls ref unless the engine already has it.
func EnsureImage(ctx context.Context, e Engine, ref string) error {
	_, err := e.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspecting image %s: %w", ref, err)
	}
	progress, err := e.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return fmt.Errorf("pulling image %s: %w", ref, err)
	}
	defer progress.Close()
	// The pull reports failures in its stream, not in its status code.
	if err := jsonmessage.DisplayJSONMessagesStream(progress, io.Discard, 0, false, nil); err != nil {
		return fmt.Errorf("pulling image %s: %w", ref, err)
	}
	return nil
}

// Remove removes the container (name or ID, if set) and the data volume (if set).
// What is already gone is fine.
func Remove(ctx context.Context, e Engine, name, volumeName string) error {
	if name != "" {
		if err := e.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("removing container %s: %w", name, err)
		}
	}
	if volumeName == "" {
		return nil
	}
	if err := e.VolumeRemove(ctx, volumeName, false); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("removing volume %s: %w", volumeName, err)
	}
	return nil
}

// CrashedError says the agent container stopped or restarted while it was awaited.
type CrashedError struct {
	Name  string
	State string
	Logs  string
}

func (e *CrashedError) Error() string {
	msg := fmt.Sprintf("container %s stopped or restarted (state %s)", e.Name, e.State)
	if e.Logs != "" {
		msg += "; its last log lines:\n" + e.Logs
	}
	return msg
}

// CheckAlive fails with *CrashedError if the container is not running any more or has
// restarted since restartCount was seen: an agent that exits on a bad flag or key should
// fail the wait at once, with its logs, not at the timeout.
func CheckAlive(ctx context.Context, e Engine, c *Container) error {
	now, err := Find(ctx, e, c.Name)
	if errors.Is(err, ErrNotFound) {
		return &CrashedError{Name: c.Name, State: "removed"}
	}
	if err != nil {
		return err
	}
	if now.Running && now.ID == c.ID && now.RestartCount == c.RestartCount {
		return nil
	}
	state := now.State
	if now.RestartCount != c.RestartCount {
		state = fmt.Sprintf("%s, restarted %d times", state, now.RestartCount-c.RestartCount)
	}
	return &CrashedError{Name: c.Name, State: state, Logs: LogTail(ctx, e, now.ID, 20)}
}

// LogTail returns the last lines the container printed, or "" if they cannot be read.
func LogTail(ctx context.Context, e Engine, id string, lines int) string {
	rc, err := e.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(lines)})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 64<<10)); err != nil && out.Len() == 0 {
		return ""
	}
	return strings.TrimRight(out.String(), "\n")
}

// tarFiles packs files, with their parent directories, for CopyToContainer at "/". Every
// entry belongs to UID:GID, the user Consul runs as: the engine unpacks a tar with the
// owners it names, and the entrypoint only hands the two directories themselves over.
func tarFiles(files []File) (io.Reader, error) {
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.Path); d != "/" && d != "."; d = path.Dir(d) {
			dirs[strings.TrimPrefix(d, "/")] = true
		}
	}
	sortedDirs := make([]string, 0, len(dirs))
	for d := range dirs {
		sortedDirs = append(sortedDirs, d)
	}
	sort.Strings(sortedDirs) // parents sort before children
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range sortedDirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, Uid: UID, Gid: GID}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Size: int64(len(f.Content)), Uid: UID, Gid: GID}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
