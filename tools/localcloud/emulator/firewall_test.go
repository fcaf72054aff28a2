package emulator

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// TestFirewallAsDigitalOceanShipsEachImage: docker-20-04 droplets have UFW on with
// DigitalOcean's rules (limit ssh, 2375-2376/tcp, forwarding accepted), also after a
// reboot; ubuntu droplets have UFW off; debian droplets have none. Read inside the node.
func TestFirewallAsDigitalOceanShipsEachImage(t *testing.T) {
	cloud := startCloud(t, Config{})
	do := godoClient(t, cloud, cloud.Token())
	key := registerKey(t, do, "firewall")
	docker := dockerClient(t)

	inNode := func(d *godo.Droplet, cmd string) string {
		t.Helper()
		id := cloud.nodes.containerName(d.ID)
		exec, err := docker.ContainerExecCreate(t.Context(), id, container.ExecOptions{Cmd: []string{"sh", "-c", cmd}, AttachStdout: true, AttachStderr: true})
		if err != nil {
			t.Fatal(err)
		}
		attached, err := docker.ContainerExecAttach(t.Context(), exec.ID, container.ExecAttachOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer attached.Close()
		var out bytes.Buffer
		_, _ = stdcopy.StdCopy(&out, &out, attached.Reader)
		return out.String()
	}
	create := func(slug string) *godo.Droplet {
		t.Helper()
		start := time.Now()
		d, _, err := do.Droplets.Create(t.Context(), &godo.DropletCreateRequest{
			Name: "fw-" + slug, Region: "nyc3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: slug},
			SSHKeys: []godo.DropletCreateSSHKey{{Fingerprint: key.godo.Fingerprint}},
		})
		if err != nil {
			t.Fatal(err)
		}
		d, _ = waitActive(t, do, d.ID, start)
		return d
	}

	docker2004 := create("docker-20-04")
	ubuntu := create("ubuntu-24-04-x64")
	debian := create("debian-12-x64")

	want := []string{"Status: active", "Default: deny (incoming), allow (outgoing), allow (routed)",
		"22/tcp                     LIMIT IN", "2375/tcp                   ALLOW IN", "2376/tcp                   ALLOW IN"}
	check := func(when string) {
		t.Helper()
		status := inNode(docker2004, "ufw status verbose")
		for _, w := range want {
			if !strings.Contains(status, w) {
				t.Errorf("docker-20-04 %s: ufw status lacks %q:\n%s", when, w, status)
			}
		}
	}
	check("at first boot")
	if got := inNode(ubuntu, "ufw status"); !strings.Contains(got, "Status: inactive") {
		t.Errorf("ubuntu-24-04-x64: ufw status %q, want inactive", got)
	}
	if got := inNode(debian, "command -v ufw || echo absent"); strings.TrimSpace(got) != "absent" {
		t.Errorf("debian-12-x64: ufw is there (%q), want none", got)
	}

	// UFW's rules live in the kernel: a reboot must load them again, as ufw.service does.
	a, _, err := do.DropletActions.Reboot(t.Context(), docker2004.ID)
	if err != nil {
		t.Fatal(err)
	}
	if status := waitAction(t, do, docker2004.ID, a.ID); status != "completed" {
		t.Fatalf("reboot %s", status)
	}
	check("after a reboot")
	if rules := inNode(docker2004, "iptables -S ufw-user-input"); !strings.Contains(rules, "--dport 2375") {
		t.Errorf("after a reboot, the kernel lacks UFW's rules:\n%s", rules)
	}
}
