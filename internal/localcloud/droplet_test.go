package localcloud

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	cerrdefs "github.com/containerd/errdefs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

const (
	consulImage = "hashicorp/consul:1.20.5"
	proxyImage  = "haproxy:2.6"
)

// TestDropletLifecycle is the whole path the provider takes: key, droplets, SSH, an image
// pulled through the mirror, a power cycle, delete by tag, and nothing left behind.
func TestDropletLifecycle(t *testing.T) {
	cloud := startCloud(t, Config{})
	do := godoClient(t, cloud, cloud.Token())
	docker := dockerClient(t)
	key := registerKey(t, do, "lifecycle")

	start := time.Now()
	droplets, resp, err := do.Droplets.CreateMultiple(t.Context(), &godo.DropletMultiCreateRequest{
		Names: []string{"node-1", "node-2", "node-3"}, Region: "ams3", Size: "s-1vcpu-2gb",
		Image:   godo.DropletCreateImage{Slug: "docker-20-04"},
		SSHKeys: []godo.DropletCreateSSHKey{{ID: key.godo.ID}},
		Tags:    []string{"lifecycle", "swarm"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(droplets) != 3 || len(resp.Links.Actions) != 3 || droplets[0].Status != "new" {
		t.Fatalf("created %+v, links %+v", droplets, resp.Links)
	}

	active := make([]*godo.Droplet, len(droplets))
	var wg sync.WaitGroup
	for i, d := range droplets {
		wg.Go(func() {
			var err error
			if active[i], err = pollStatus(t.Context(), do, d.ID, "active", 3*time.Minute); err != nil {
				t.Error(err)
				return
			}
			t.Logf("droplet %s active %s after create", d.Name, time.Since(start).Round(10*time.Millisecond))
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("all 3 droplets active after %s", time.Since(start).Round(10*time.Millisecond))
	for _, link := range resp.Links.Actions {
		a, _, err := do.Actions.Get(t.Context(), link.ID)
		if err != nil || a.Status != "completed" || a.Type != "create" {
			t.Fatalf("create action %+v %v", a, err)
		}
	}
	private, err := active[0].PrivateIPv4()
	if err != nil || private == "" || active[0].VPCUUID == "" || active[0].Size.Slug != "s-1vcpu-2gb" {
		t.Fatalf("droplet %+v", active[0])
	}

	hostKeys := map[int]ssh.PublicKey{}
	for _, d := range active {
		ip := publicIP(t, d)
		pullStart := time.Now()
		out, seen := sshRun(t, ip, key.signer, nil,
			"hostname && docker pull -q "+consulImage+" && docker image inspect --format '{{.Id}}' "+consulImage)
		t.Logf("%s (%s): pulled %s in %s: %s", d.Name, ip, consulImage,
			time.Since(pullStart).Round(10*time.Millisecond), strings.ReplaceAll(strings.TrimSpace(out), "\n", " | "))
		if !strings.HasPrefix(out, d.Name+"\n") || !strings.Contains(out, "sha256:") {
			t.Fatalf("unexpected output %q", out)
		}
		hostKeys[d.ID] = seen
	}
	if string(hostKeys[active[0].ID].Marshal()) == string(hostKeys[active[1].ID].Marshal()) {
		t.Fatal("two droplets share a host key")
	}

	// The proxy image pulls through the mirror too, and runs as the official one: its
	// entrypoint turns options into a haproxy command line (it ships no config).
	out, _ := sshRun(t, publicIP(t, active[0]), key.signer, hostKeys[active[0].ID], "docker run --rm "+proxyImage+" -v 2>&1")
	if !strings.Contains(out, "HAProxy version 2.6") {
		t.Fatalf("%s -v printed %q", proxyImage, out)
	}

	// Power cycle: the action completes once the node answers again, with the same host key.
	cycled := active[0]
	cycleStart := time.Now()
	a, _, err := do.DropletActions.PowerCycle(t.Context(), cycled.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != "in-progress" || a.Type != "power_cycle" {
		t.Fatalf("action %+v", a)
	}
	if status := waitAction(t, do, cycled.ID, a.ID); status != "completed" {
		t.Fatalf("power_cycle %s", status)
	}
	after, took := waitActive(t, do, cycled.ID, cycleStart)
	t.Logf("power cycle of %s: active again after %s", cycled.Name, took.Round(10*time.Millisecond))
	if publicIP(t, after) != publicIP(t, cycled) {
		t.Fatalf("address changed across power cycle: %s -> %s", publicIP(t, cycled), publicIP(t, after))
	}
	out, _ = sshRun(t, publicIP(t, after), key.signer, hostKeys[cycled.ID], "docker image inspect --format '{{.Id}}' "+consulImage)
	if !strings.Contains(out, "sha256:") {
		t.Fatalf("image gone after power cycle: %q", out)
	}

	// Delete by tag removes the containers and their volumes.
	volumes := dropletVolumes(t, docker, cloud.Name())
	if len(volumes) != 3 {
		t.Fatalf("volumes %v", volumes)
	}
	if _, err := do.Droplets.DeleteByTag(t.Context(), "lifecycle"); err != nil {
		t.Fatal(err)
	}
	if left, _, err := do.Droplets.List(t.Context(), nil); err != nil || len(left) != 0 {
		t.Fatalf("droplets left: %+v %v", left, err)
	}
	if containers, _ := instanceObjects(t.Context(), t, docker, cloud.Name()); containers != 0 {
		t.Fatalf("%d containers left", containers)
	}
	for _, v := range volumes {
		if _, err := docker.VolumeInspect(t.Context(), v); !cerrdefs.IsNotFound(err) {
			t.Fatalf("volume %s left: %v", v, err)
		}
	}

	if err := cloud.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if containers, networks := instanceObjects(t.Context(), t, docker, cloud.Name()); containers+networks != 0 {
		t.Fatalf("after Close: %d containers, %d networks", containers, networks)
	}
}

// dropletVolumes lists the volumes mounted by the instance's droplet containers.
func dropletVolumes(t *testing.T, docker *client.Client, name string) []string {
	t.Helper()
	cs, err := docker.ContainerList(t.Context(), container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", labelInstance+"="+name)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		for _, m := range c.Mounts {
			if m.Type == "volume" {
				names = append(names, m.Name)
			}
		}
	}
	return names
}

// TestHostKeyFromCloudInit checks the host key handed over in user_data is the one sshd
// presents, so the provider can pin it before the droplet exists.
func TestHostKeyFromCloudInit(t *testing.T) {
	cloud := startCloud(t, Config{})
	do := godoClient(t, cloud, cloud.Token())
	key := registerKey(t, do, "pinning")

	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := yaml.Marshal(map[string]any{"ssh_keys": map[string]string{
		"ed25519_private": string(pem.EncodeToMemory(block)),
		"ed25519_public":  strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pinned))) + " root@pinned",
	}})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	d, _, err := do.Droplets.Create(t.Context(), &godo.DropletCreateRequest{
		Name: "pinned", Region: "lon1", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"},
		SSHKeys:  []godo.DropletCreateSSHKey{{Fingerprint: key.godo.Fingerprint}},
		UserData: "#cloud-config\n" + string(doc),
	})
	if err != nil {
		t.Fatal(err)
	}
	d, took := waitActive(t, do, d.ID, start)
	t.Logf("droplet active after %s", took.Round(10*time.Millisecond))
	out, seen := sshRun(t, publicIP(t, d), key.signer, pinned, "cat /etc/ssh/ssh_host_ed25519_key.pub")
	if string(seen.Marshal()) != string(pinned.Marshal()) || !strings.Contains(out, "root@pinned") {
		t.Fatalf("host key %s, want the pinned one; file: %q", ssh.FingerprintSHA256(seen), out)
	}

	// A reboot re-runs the entrypoint; the host key must survive it.
	a, _, err := do.DropletActions.Reboot(t.Context(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if status := waitAction(t, do, d.ID, a.ID); status != "completed" {
		t.Fatalf("reboot %s", status)
	}
	sshRun(t, publicIP(t, d), key.signer, pinned, "true")
}

// TestRestartKeepsDroplets stops an emulator with its droplets kept, starts it again with
// the same name (from its state, then from container labels alone), then removes it all.
func TestRestartKeepsDroplets(t *testing.T) {
	requireLocalCloud(t)
	name, stateDir := uniqueName(), t.TempDir()
	docker := dockerClient(t)
	cfg := Config{Name: name, StateDir: stateDir, Logf: t.Logf}
	t.Cleanup(func() { // whatever a failure left behind
		leftovers := &nodeBackend{docker: docker, instance: name, logf: t.Logf}
		_ = leftovers.removeEverything(context.Background())
	})

	first, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	do := godoClient(t, first, first.Token())
	created, _, err := do.Droplets.Create(t.Context(), &godo.DropletCreateRequest{
		Name: "survivor", Region: "sfo3", Size: "s-2vcpu-4gb", Image: godo.DropletCreateImage{Slug: "docker-20-04"},
		Tags: []string{"kept"},
	})
	if err != nil {
		_ = first.Close(context.Background())
		t.Fatal(err)
	}
	waitActive(t, do, created.ID, time.Now())
	first.Detach()
	if err := first.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if containers, networks := instanceObjects(t.Context(), t, docker, name); containers != 1 || networks != 2 {
		t.Fatalf("kept: %d containers, %d networks", containers, networks)
	}

	restart := func(stage string) {
		cloud, err := Start(t.Context(), Config{Name: name, StateDir: stateDir, Logf: t.Logf, KeepOnClose: true})
		if err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		defer cloud.Close(context.Background())
		do := godoClient(t, cloud, cloud.Token())
		list, _, err := do.Droplets.ListByTag(t.Context(), "kept", nil)
		if err != nil || len(list) != 1 || list[0].ID != created.ID || list[0].Name != "survivor" {
			t.Fatalf("%s: droplets %+v %v", stage, list, err)
		}
		waitActive(t, do, created.ID, time.Now())
		// Ids keep counting from where the previous run stopped.
		next, _, err := do.Droplets.Create(t.Context(), &godo.DropletCreateRequest{
			Name: "second-" + strconv.Itoa(len(stage)), Region: "sfo3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "docker-20-04"},
		})
		if err != nil || next.ID <= created.ID {
			t.Fatalf("%s: new droplet %+v %v", stage, next, err)
		}
		if _, err := do.Droplets.Delete(t.Context(), next.ID); err != nil {
			t.Fatal(err)
		}
	}
	restart("from state")
	if err := os.Remove(filepath.Join(stateDir, "state.json")); err != nil {
		t.Fatal(err)
	}
	restart("from labels")

	last, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := last.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if containers, networks := instanceObjects(t.Context(), t, docker, name); containers+networks != 0 {
		t.Fatalf("after Close: %d containers, %d networks", containers, networks)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "state.json")); !os.IsNotExist(err) {
		t.Fatalf("state file left: %v", err)
	}
}

// A power_off cuts the power, as DigitalOcean's does: a connection open to the droplet is
// not closed (no FIN, no reset reaches its peer), it just goes quiet. A killed container
// alone would have its kernel close it, which no real droplet does, and which hid from
// every test that something in flight on a dead node waits until a keepalive or the
// kernel gives up.
func TestPowerOffSendsNothingOnOpenConnections(t *testing.T) {
	cloud := startCloud(t, Config{})
	do := godoClient(t, cloud, cloud.Token())
	d, _, err := do.Droplets.Create(t.Context(), &godo.DropletCreateRequest{
		Name: "quiet", Region: "tor1", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "ubuntu-22-04-x64"},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, do, d.ID, time.Now())
	got, _, err := do.Droplets.Get(t.Context(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := got.PublicIPv4()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "22"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	banner := make([]byte, 64)
	if n, err := c.Read(banner); err != nil || !strings.HasPrefix(string(banner[:n]), "SSH-") {
		t.Fatalf("the droplet's sshd: %q, %v", banner[:n], err)
	}
	a, _, err := do.DropletActions.PowerOff(t.Context(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := waitAction(t, do, d.ID, a.ID); got != "completed" {
		t.Fatalf("power_off: %s", got)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := c.Read(banner)
	var timeout net.Error
	if !errors.As(err, &timeout) || !timeout.Timeout() {
		t.Fatalf("reading a connection to a droplet whose power was cut = %d bytes, %v; want nothing until the deadline", n, err)
	}
}

// TestPowerActions walks a droplet through the power and sizing actions, and through its
// container being stopped and started behind the API's back.
func TestPowerActions(t *testing.T) {
	cloud := startCloud(t, Config{})
	do := godoClient(t, cloud, cloud.Token())
	docker := dockerClient(t)

	d, _, err := do.Droplets.Create(t.Context(), &godo.DropletCreateRequest{
		Name: "power", Region: "tor1", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "ubuntu-22-04-x64"},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, do, d.ID, time.Now())
	status := func() string {
		t.Helper()
		got, _, err := do.Droplets.Get(t.Context(), d.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Status
	}
	run := func(name string, act func() (*godo.Action, *godo.Response, error)) {
		t.Helper()
		a, _, err := act()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := waitAction(t, do, d.ID, a.ID); got != "completed" {
			t.Fatalf("%s: %s", name, got)
		}
	}

	_, _, err = do.DropletActions.Resize(t.Context(), d.ID, "s-2vcpu-4gb", true)
	if code, er := apiStatus(t, err); code != 422 || er.Message != "Droplet is currently on. Please power it off to run this event." {
		t.Fatalf("resize while on: %d %q", code, er.Message)
	}
	run("power_off", func() (*godo.Action, *godo.Response, error) { return do.DropletActions.PowerOff(t.Context(), d.ID) })
	if s := status(); s != "off" {
		t.Fatalf("after power_off: %s", s)
	}
	run("resize", func() (*godo.Action, *godo.Response, error) {
		return do.DropletActions.Resize(t.Context(), d.ID, "s-2vcpu-4gb", true)
	})
	run("rename", func() (*godo.Action, *godo.Response, error) {
		return do.DropletActions.Rename(t.Context(), d.ID, "renamed")
	})
	got, _, err := do.Droplets.Get(t.Context(), d.ID)
	if err != nil || got.Name != "renamed" || got.Size.Slug != "s-2vcpu-4gb" || got.Disk != 80 || got.Vcpus != 2 {
		t.Fatalf("after resize and rename: %+v %v", got, err)
	}
	run("power_on", func() (*godo.Action, *godo.Response, error) { return do.DropletActions.PowerOn(t.Context(), d.ID) })
	if s := status(); s != "active" {
		t.Fatalf("after power_on: %s", s)
	}
	run("power_on again", func() (*godo.Action, *godo.Response, error) { return do.DropletActions.PowerOn(t.Context(), d.ID) })

	reboot, _, err := do.DropletActions.Reboot(t.Context(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = do.DropletActions.PowerCycle(t.Context(), d.ID)
	if code, _ := apiStatus(t, err); code != 422 {
		t.Fatalf("second action while one is pending: %d", code)
	}
	// A reboot leaves the droplet active, as on DO: its action says when the host is back.
	if got := waitAction(t, do, d.ID, reboot.ID); got != "completed" {
		t.Fatalf("reboot: %s", got)
	}

	// Behind the API's back: the droplet follows its container.
	containerName := cloud.Name() + "-droplet-" + strconv.Itoa(d.ID)
	timeout := 1
	if err := docker.ContainerStop(t.Context(), containerName, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, do, d.ID, "off")
	if err := docker.ContainerStart(t.Context(), containerName, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, do, d.ID, time.Now())
}

func waitStatus(t *testing.T, do *godo.Client, id int, want string) {
	t.Helper()
	if _, err := pollStatus(t.Context(), do, id, want, time.Minute); err != nil {
		t.Fatal(err)
	}
}
