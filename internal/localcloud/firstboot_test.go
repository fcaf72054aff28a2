package localcloud

import (
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
)

// What Terraform's remote-exec provisioner and cloud-init users rely on: /tmp runs
// uploaded scripts, and write_files, runcmd and shell-script user data run at first boot.
func TestFirstBootRunsUserData(t *testing.T) {
	cloud := startCloud(t, Config{})
	do := godoClient(t, cloud, cloud.Token())
	key := registerKey(t, do, "firstboot")
	userData := map[string]string{
		"cloud-config": `#cloud-config
write_files:
  - path: /etc/app/config.env
    content: |
      GREETING=hello
    permissions: "0640"
  - path: /opt/app/run.sh
    encoding: b64
    content: IyEvYmluL3NoCmVjaG8gcmFuID4gL3Jvb3QvYXBwLXJhbgo=
    permissions: "0755"
runcmd:
  - /opt/app/run.sh
  - [sh, -c, "echo $((40 + 2)) > /root/answer"]
  - echo "runcmd saw $(cat /etc/app/config.env)" > /root/runcmd-ran
`,
		"script": "#!/bin/sh\necho \"script ran as $(id -un)\" > /root/script-ran\n",
	}
	want := map[string]string{
		"cloud-config": "cat /root/app-ran /root/answer /root/runcmd-ran; stat -c %a /etc/app/config.env",
		"script":       "cat /root/script-ran",
	}
	wantOut := map[string]string{
		"cloud-config": "ran\n42\nruncmd saw GREETING=hello\n640\n",
		"script":       "script ran as root\n",
	}
	ips := map[string]string{}
	for kind, ud := range userData {
		d, _, err := do.Droplets.Create(t.Context(), &godo.DropletCreateRequest{
			Name: "boot-" + kind, Region: "nyc3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "docker-20-04"},
			SSHKeys: []godo.DropletCreateSSHKey{{Fingerprint: key.godo.Fingerprint}}, UserData: ud,
		})
		if err != nil {
			t.Fatal(err)
		}
		d, _ = waitActive(t, do, d.ID, time.Now())
		ips[kind] = publicIP(t, d)
	}
	for kind, ip := range ips {
		// cloud-init writes boot-finished when its last stage is done; allow it a while.
		deadline := time.Now().Add(time.Minute)
		for {
			out, _ := sshRun(t, ip, key.signer, nil, "cat /var/lib/cloud/instance/boot-finished 2>/dev/null || echo pending")
			if !strings.Contains(out, "pending") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: first boot never finished (no /var/lib/cloud/instance/boot-finished)", kind)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if out, _ := sshRun(t, ip, key.signer, nil, want[kind]+" 2>&1"); out != wantOut[kind] {
			t.Errorf("%s user data: %q printed %q, want %q", kind, want[kind], out, wantOut[kind])
		}
	}
	// remote-exec uploads its script to /tmp and runs it there.
	if out, _ := sshRun(t, ips["script"], key.signer, nil,
		`printf '#!/bin/sh\necho tmp runs scripts\n' > /tmp/remote-exec.sh && chmod +x /tmp/remote-exec.sh && /tmp/remote-exec.sh`); out != "tmp runs scripts\n" {
		t.Errorf("a script in /tmp printed %q", out)
	}
}
