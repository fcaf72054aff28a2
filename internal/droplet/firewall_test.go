package droplet

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shellNode runs firewall scripts in a real shell whose `ip` and `ufw` are stubs: `ip`
// lists two interfaces (eth0 public, eth1 private), `ufw` logs its arguments and answers
// `status` with ufwStatus. An empty ufwStatus means UFW is not installed.
func shellNode(t *testing.T, ufwStatus string) (RunFunc, func() []string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "ufw.log")
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("ip", `echo "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever"
echo "40: eth0    inet 172.18.0.2/16 brd 172.18.255.255 scope global eth0\\       valid_lft forever"
echo "42: eth1    inet 10.116.0.3/20 brd 10.116.15.255 scope global eth1\\       valid_lft forever"
`)
	if ufwStatus != "" {
		// Like UFW, `status numbered` lists rules only while UFW is active.
		write("ufw", `if [ "$1" = status ]; then echo "Status: `+ufwStatus+`"
  if [ "$2" = numbered ] && [ "`+ufwStatus+`" = active ]; then echo "[ 1] 22/tcp                     LIMIT IN    Anywhere"; fi
  exit 0
fi
echo "$*" >>`+log+"\n")
	}
	run := func(ctx context.Context, script string) (string, error) {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
		// Only the stubs and what the script needs besides them (awk, grep).
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
		out, err := cmd.Output()
		return string(out), err
	}
	calls := func() []string {
		data, err := os.ReadFile(log)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	return run, calls
}

func TestOpenStackPortsAllowsTheStackOnThePrivateInterfaceOnly(t *testing.T) {
	t.Parallel()
	for _, status := range []string{"active", "inactive"} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			run, calls := shellNode(t, status)
			got, err := OpenStackPorts(context.Background(), run, "172.18.0.2", "10.116.0.3")
			if err != nil {
				t.Fatal(err)
			}
			if got.UFW != status || got.Interface != "eth1" {
				t.Errorf("result %+v, want ufw %s on eth1", got, status)
			}
			ssh := "allow in on eth0 to any port 22 proto tcp comment microswarm stack"
			if status == "active" {
				// Before DigitalOcean's `limit ssh`, so that it is matched first.
				ssh = "insert 1 " + ssh
			}
			want := []string{
				ssh,
				// One rule, and one run of ufw, per protocol.
				"allow in on eth1 to any port 8300:8302,2377,7946 proto tcp comment microswarm stack",
				"allow in on eth1 to any port 8301:8302,7946,4789 proto udp comment microswarm stack",
			}
			if c := calls(); strings.Join(c, "\n") != strings.Join(want, "\n") {
				t.Errorf("ufw ran\n%s\nwant\n%s", strings.Join(c, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestCloseStackPortsDeletesTheSameRules(t *testing.T) {
	t.Parallel()
	run, calls := shellNode(t, "active")
	if _, err := CloseStackPorts(context.Background(), run, "172.18.0.2", "10.116.0.3"); err != nil {
		t.Fatal(err)
	}
	c := calls()
	// The grouped rules, then the one-per-port rules of nodes made before they were grouped.
	if len(c) != 1+2+len(StackPorts) || c[0] != "delete allow in on eth0 to any port 22 proto tcp" ||
		c[1] != "delete allow in on eth1 to any port 8300:8302,2377,7946 proto tcp" ||
		c[2] != "delete allow in on eth1 to any port 8301:8302,7946,4789 proto udp" ||
		c[3] != "delete allow in on eth1 to any port 8300:8302 proto tcp" {
		t.Errorf("ufw ran %q", c)
	}
}

func TestFirewallWithoutUFWChangesNothing(t *testing.T) {
	t.Parallel()
	run, calls := shellNode(t, "")
	got, err := OpenStackPorts(context.Background(), run, "172.18.0.2", "10.116.0.3")
	if err != nil || got.UFW != "absent" || len(calls()) != 0 {
		t.Errorf("result %+v, %v, ufw ran %q", got, err, calls())
	}
}

func TestFirewallNeedsThePrivateAddressOnTheNode(t *testing.T) {
	t.Parallel()
	run, calls := shellNode(t, "active")
	cases := map[string]struct{ public, private string }{
		"no private address":               {"172.18.0.2", ""},
		"not an address":                   {"172.18.0.2", "10.116.0.3; reboot"},
		"a private address the node lacks": {"172.18.0.2", "10.116.0.99"},
		"a public address the node lacks":  {"172.18.0.99", "10.116.0.3"},
		"an IPv6 public address only":      {"2001:db8::1", "10.116.0.3"},
	}
	for name, tc := range cases {
		if _, err := OpenStackPorts(context.Background(), run, tc.public, tc.private); err == nil {
			t.Errorf("%s (%+v): no error", name, tc)
		}
	}
	if len(calls()) != 0 {
		t.Errorf("ufw ran %q", calls())
	}
}
