package consul

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/storage"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

// fakeEngine is an in-memory Docker engine holding just what this package touches.
type fakeEngine struct {
	mu         sync.Mutex
	nextID     int
	containers map[string]*fakeContainer // by name
	images     map[string]bool
	pullable   map[string]bool
	volumes    map[string]bool
	failCopy   bool
	// volumeRemoveErr makes VolumeRemove fail (a volume still in use).
	volumeRemoveErr error
	calls           []string
}

type fakeContainer struct {
	id            string
	config        *container.Config
	host          *container.HostConfig
	running       bool
	restartPolicy container.RestartPolicyMode
	files         map[string]string
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{
		containers: map[string]*fakeContainer{},
		images:     map[string]bool{},
		pullable:   map[string]bool{DefaultImage: true},
		volumes:    map[string]bool{},
	}
}

var _ Engine = (*fakeEngine)(nil)

func notFound(what string) error { return fmt.Errorf("no such %s: %w", what, cerrdefs.ErrNotFound) }

func (f *fakeEngine) record(call string) { f.calls = append(f.calls, call) }

func (f *fakeEngine) lookup(ref string) (string, *fakeContainer) {
	for name, c := range f.containers {
		if name == ref || c.id == ref {
			return name, c
		}
	}
	return "", nil
}

func (f *fakeEngine) ContainerInspect(_ context.Context, ref string) (container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name, c := f.lookup(ref)
	if c == nil {
		return container.InspectResponse{}, notFound("container")
	}
	status := "exited"
	if c.running {
		status = "running"
	}
	base := &container.ContainerJSONBase{ID: c.id, Name: "/" + name, State: &container.State{Running: c.running, Status: status}}
	if c.running {
		base.GraphDriver = storage.DriverData{Name: "overlay2", Data: map[string]string{"MergedDir": "/var/lib/docker/overlay2/" + c.id + "/merged"}}
	}
	return container.InspectResponse{ContainerJSONBase: base, Config: c.config}, nil
}

func (f *fakeEngine) ContainerCreate(_ context.Context, cfg *container.Config, host *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, name string) (container.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("create " + name)
	if _, exists := f.containers[name]; exists {
		return container.CreateResponse{}, errors.New("conflict: the name is in use")
	}
	if !f.images[cfg.Image] {
		return container.CreateResponse{}, notFound("image")
	}
	for _, m := range host.Mounts {
		if !f.volumes[m.Source] {
			return container.CreateResponse{}, notFound("volume")
		}
	}
	f.nextID++
	id := fmt.Sprintf("c%063d", f.nextID)
	f.containers[name] = &fakeContainer{id: id, config: cfg, host: host, restartPolicy: host.RestartPolicy.Name, files: map[string]string{}}
	return container.CreateResponse{ID: id}, nil
}

func (f *fakeEngine) ContainerStart(_ context.Context, ref string, _ container.StartOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name, c := f.lookup(ref)
	if c == nil {
		return notFound("container")
	}
	f.record("start " + name)
	c.running = true
	return nil
}

func (f *fakeEngine) ContainerStop(_ context.Context, ref string, _ container.StopOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name, c := f.lookup(ref)
	if c == nil {
		return notFound("container")
	}
	f.record("stop " + name)
	c.running = false
	return nil
}

func (f *fakeEngine) ContainerRemove(_ context.Context, ref string, _ container.RemoveOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name, c := f.lookup(ref)
	if c == nil {
		return notFound("container")
	}
	f.record("remove " + name)
	delete(f.containers, name)
	return nil
}

func (f *fakeEngine) ContainerUpdate(_ context.Context, ref string, u container.UpdateConfig) (container.UpdateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, c := f.lookup(ref)
	if c == nil {
		return container.UpdateResponse{}, notFound("container")
	}
	c.restartPolicy = u.RestartPolicy.Name
	return container.UpdateResponse{}, nil
}

func (f *fakeEngine) ContainerWait(context.Context, string, container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	done := make(chan container.WaitResponse, 1)
	done <- container.WaitResponse{}
	return done, make(chan error)
}

func (f *fakeEngine) ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("")), nil
}

// CopyFromContainer returns one file copied in before, as the engine does: a tar of it.
func (f *fakeEngine) CopyFromContainer(_ context.Context, ref, src string) (io.ReadCloser, container.PathStat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, c := f.lookup(ref)
	if c == nil {
		return nil, container.PathStat{}, notFound("container")
	}
	body, ok := c.files[src]
	if !ok {
		return nil, container.PathStat{}, notFound("file " + src)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path.Base(src), Mode: 0o600, Size: int64(len(body))})
	_, _ = tw.Write([]byte(body))
	_ = tw.Close()
	return io.NopCloser(&buf), container.PathStat{Name: path.Base(src), Size: int64(len(body))}, nil
}

func (f *fakeEngine) CopyToContainer(_ context.Context, ref, dst string, content io.Reader, _ container.CopyToContainerOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failCopy {
		return errors.New("copy failed")
	}
	_, c := f.lookup(ref)
	if c == nil {
		return notFound("container")
	}
	tr := tar.NewReader(content)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(tr)
		if hdr.Typeflag == tar.TypeReg {
			c.files[dst+hdr.Name] = string(body)
		}
	}
}

func (f *fakeEngine) ContainerExecCreate(context.Context, string, container.ExecOptions) (container.ExecCreateResponse, error) {
	return container.ExecCreateResponse{}, errors.New("exec is not faked")
}

func (f *fakeEngine) ContainerExecAttach(context.Context, string, container.ExecAttachOptions) (types.HijackedResponse, error) {
	return types.HijackedResponse{}, errors.New("exec is not faked")
}

func (f *fakeEngine) ContainerExecInspect(context.Context, string) (container.ExecInspect, error) {
	return container.ExecInspect{}, errors.New("exec is not faked")
}

func (f *fakeEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.images[ref] {
		return image.InspectResponse{}, notFound("image")
	}
	return image.InspectResponse{ID: "sha256:" + ref}, nil
}

func (f *fakeEngine) ImagePull(_ context.Context, ref string, _ image.PullOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("pull " + ref)
	if !f.pullable[ref] {
		// The engine reports a failed pull inside a 200 stream.
		return io.NopCloser(strings.NewReader(`{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}` + "\n")), nil
	}
	f.images[ref] = true
	return io.NopCloser(strings.NewReader(`{"status":"Pulling from hashicorp/consul"}` + "\n" + `{"status":"Downloaded newer image"}` + "\n")), nil
}

func (f *fakeEngine) VolumeCreate(_ context.Context, opts volume.CreateOptions) (volume.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.volumes[opts.Name] = true
	return volume.Volume{Name: opts.Name}, nil
}

func (f *fakeEngine) VolumeRemove(_ context.Context, name string, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.volumeRemoveErr != nil {
		return f.volumeRemoveErr
	}
	if !f.volumes[name] {
		return notFound("volume")
	}
	f.record("remove volume " + name)
	delete(f.volumes, name)
	return nil
}

func TestEnsureFindsOrCreates(t *testing.T) {
	t.Parallel()
	changedSpec := serverSpec()
	changedSpec.UI = true
	cases := map[string]struct {
		before      func(*fakeEngine)
		spec        Spec
		wantOutcome Outcome
		wantCalls   []string
	}{
		"nothing there: pull, create, start": {
			before:      func(*fakeEngine) {},
			spec:        serverSpec(),
			wantOutcome: Created,
			wantCalls:   []string{"pull " + DefaultImage, "create consul-server", "start consul-server"},
		},
		"a rerun after success adopts": {
			before:      func(f *fakeEngine) { mustEnsure(t, f, serverSpec()) },
			spec:        serverSpec(),
			wantOutcome: Adopted,
		},
		"a stopped container with the same config is started": {
			before: func(f *fakeEngine) {
				mustEnsure(t, f, serverSpec())
				f.containers["consul-server"].running = false
			},
			spec:        serverSpec(),
			wantOutcome: Started,
			wantCalls:   []string{"start consul-server"},
		},
		"another config is recreated on the same volume": {
			before:      func(f *fakeEngine) { mustEnsure(t, f, serverSpec()) },
			spec:        changedSpec,
			wantOutcome: Recreated,
			wantCalls:   []string{"stop consul-server", "remove consul-server", "create consul-server", "start consul-server"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine()
			tc.before(f)
			f.calls = nil
			c, outcome, err := Ensure(context.Background(), f, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if outcome != tc.wantOutcome {
				t.Errorf("outcome %s, want %s", outcome, tc.wantOutcome)
			}
			if strings.Join(f.calls, "; ") != strings.Join(tc.wantCalls, "; ") {
				t.Errorf("engine calls\n got %q\nwant %q", f.calls, tc.wantCalls)
			}
			if !c.Running || !c.Matches(tc.spec) || c.Role != RoleServer {
				t.Errorf("container %+v does not run the spec", c)
			}
			if !f.volumes["consul-server-data"] {
				t.Error("the data volume is missing")
			}
			if got := f.containers["consul-server"].files[ConfigFile]; got == "" {
				t.Error("the config file was not copied in")
			}
		})
	}
}

func mustEnsure(t *testing.T, f *fakeEngine, spec Spec) *Container {
	t.Helper()
	c, _, err := Ensure(context.Background(), f, spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureNeverTouchesForeignContainers(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	f.images["nginx"] = true
	f.containers["consul-server"] = &fakeContainer{id: "foreign", config: &container.Config{Image: "nginx", Labels: map[string]string{}}, running: true}
	_, _, err := Ensure(context.Background(), f, serverSpec())
	var notManaged *NotManagedError
	if !errors.As(err, &notManaged) {
		t.Fatalf("Ensure over a foreign container: %v, want *NotManagedError", err)
	}
	if f.containers["consul-server"].id != "foreign" || len(f.calls) != 0 {
		t.Errorf("the foreign container was touched: %q", f.calls)
	}
}

func TestFindReadsTheSpecBack(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	spec := serverSpec()
	spec.Encrypt = testGossipKey
	mustEnsure(t, f, spec)
	c, err := Find(context.Background(), f, "consul-server")
	if err != nil {
		t.Fatal(err)
	}
	want := spec
	want.Encrypt = ""
	if c.Spec.Image != want.Image || c.Spec.ContainerName != want.ContainerName || c.Spec.BootstrapExpect != 3 ||
		strings.Join(c.Spec.RetryJoin, ",") != strings.Join(want.RetryJoin, ",") || c.Spec.Encrypt != "" {
		t.Errorf("read back %+v, want %+v", c.Spec, want)
	}
	if !c.Matches(spec) {
		t.Error("the container does not match the spec it was made from")
	}
	if _, err := Find(context.Background(), f, "consul-agent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find of a missing container: %v, want ErrNotFound", err)
	}
}

func TestFailedCreateLeavesNoHalfMadeContainer(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	f.failCopy = true
	if _, _, err := Ensure(context.Background(), f, serverSpec()); err == nil {
		t.Fatal("Ensure succeeded although the config could not be copied")
	}
	if _, exists := f.containers["consul-server"]; exists {
		t.Error("a container without its config was left behind")
	}
	f.failCopy = false
	if _, outcome, err := Ensure(context.Background(), f, serverSpec()); err != nil || outcome != Created {
		t.Errorf("the rerun: %s, %v", outcome, err)
	}
}

func TestEnsureImageReportsPullErrorsFromTheStream(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	err := EnsureImage(context.Background(), f, "hashicorp/consul:0.0.0")
	if err == nil || !strings.Contains(err.Error(), "manifest unknown") {
		t.Errorf("EnsureImage of a missing image: %v, want the engine's message", err)
	}
	if err := EnsureImage(context.Background(), f, DefaultImage); err != nil {
		t.Fatal(err)
	}
	f.calls = nil
	if err := EnsureImage(context.Background(), f, DefaultImage); err != nil || len(f.calls) != 0 {
		t.Errorf("a present image was pulled again: %q, %v", f.calls, err)
	}
}

func TestRemoveToleratesWhatIsGone(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	mustEnsure(t, f, agentSpec())
	for i := range 2 {
		if err := Remove(context.Background(), f, "consul-agent", "consul-agent-data"); err != nil {
			t.Fatalf("remove #%d: %v", i+1, err)
		}
	}
	if len(f.containers) != 0 || len(f.volumes) != 0 {
		t.Errorf("left behind: %d containers, %d volumes", len(f.containers), len(f.volumes))
	}
}

func TestCheckAliveSeesACrash(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	c := mustEnsure(t, f, agentSpec())
	if err := CheckAlive(context.Background(), f, c); err != nil {
		t.Fatalf("a running agent: %v", err)
	}
	f.containers["consul-agent"].running = false
	if err := CheckAlive(context.Background(), f, c); !IsCrashed(err) {
		t.Errorf("a stopped agent: %v, want *CrashedError", err)
	}
}

// A rolling restart must not take a server out of the quorum for a spec that cannot run:
// the new image is pulled and the spec checked while the old agent still runs.
func TestReplaceKeepsTheAgentWhenTheNewSpecCannotRun(t *testing.T) {
	t.Parallel()
	a, b := consultest.NewTLS(t), consultest.NewTLS(t)
	withTLS := func(m, key consultest.Material) Spec {
		s := serverSpec()
		s.TLS = &TLS{CAPEM: m.CAPEM, CertPEM: m.CertPEM, KeyPEM: key.KeyPEM, VerifyIncoming: true, VerifyOutgoing: true}
		return s
	}
	mistyped := serverSpec()
	mistyped.Image = "hashicorp/consul:1.20.55"
	cases := map[string]struct {
		running, next Spec
		wantErr       string
	}{
		"a mistyped image":      {running: serverSpec(), next: mistyped, wantErr: "manifest unknown"},
		"a key of another cert": {running: withTLS(a, a), next: withTLS(a, b), wantErr: "key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine()
			before := mustEnsure(t, f, tc.running)
			f.calls = nil
			_, _, err := Ensure(context.Background(), f, tc.next)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Ensure with a spec that cannot run: %v, want an error about %q", err, tc.wantErr)
			}
			c, ok := f.containers[tc.running.ContainerName]
			if !ok || c.id != before.ID || !c.running {
				t.Fatalf("the running agent was stopped or removed (engine calls %q) for a spec that could not run", f.calls)
			}
		})
	}
}
