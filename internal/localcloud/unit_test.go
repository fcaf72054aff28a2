package localcloud

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// These tests need no Docker engine.

func TestSeedFilesFromCloudConfig(t *testing.T) {
	userData := "#cloud-config\nssh_keys:\n  ed25519_private: |\n    PRIVATE\n  ed25519_public: ssh-ed25519 AAAA host\nssh_authorized_keys:\n  - ssh-ed25519 BBBB extra\n"
	files, err := seedFiles([]string{"ssh-ed25519 CCCC account"}, "10.0.0.1:5000", userData)
	if err != nil {
		t.Fatal(err)
	}
	archive, err := seedTar(files)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got[hdr.Name] = string(data)
	}
	want := map[string]string{
		"microswarm/":                                   "",
		"microswarm/host-keys/":                         "",
		"microswarm/authorized_keys":                    "ssh-ed25519 CCCC account\nssh-ed25519 BBBB extra\n",
		"microswarm/daemon.json":                        `{"insecure-registries":["10.0.0.1:5000"],"registry-mirrors":["http://10.0.0.1:5000"]}` + "\n",
		"microswarm/user-data":                          userData,
		"microswarm/host-keys/ssh_host_ed25519_key":     "PRIVATE\n",
		"microswarm/host-keys/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA host\n",
	}
	for name, content := range want {
		if got[name] != content {
			t.Errorf("%s = %q, want %q", name, got[name], content)
		}
	}
	if len(got) != len(want) {
		t.Errorf("files %v", got)
	}

	if _, err := parseCloudConfig("#cloud-config\nssh_keys: [unclosed"); err == nil {
		t.Error("invalid YAML accepted")
	}
	if cc, err := parseCloudConfig("#!/bin/sh\necho hi\n"); err != nil || len(cc.SSHKeys) != 0 {
		t.Errorf("shell script: %+v %v", cc, err)
	}
}

func TestPaginate(t *testing.T) {
	items := []int{1, 2, 3, 4, 5}
	r := httptest.NewRequest("GET", "http://api.test/v2/droplets?tag_name=x&per_page=2&page=2", nil)
	page, l, m := paginate(r, items)
	if len(page) != 2 || page[0] != 3 || m.Total != 5 {
		t.Fatalf("page %v meta %+v", page, m)
	}
	if l.Pages.Next != "http://api.test/v2/droplets?page=3&per_page=2&tag_name=x" ||
		l.Pages.Prev != "http://api.test/v2/droplets?page=1&per_page=2&tag_name=x" ||
		l.Pages.Last != "http://api.test/v2/droplets?page=3&per_page=2&tag_name=x" {
		t.Fatalf("links %+v", l.Pages)
	}
	r = httptest.NewRequest("GET", "http://api.test/v2/droplets", nil)
	if _, l, _ := paginate(r, items); l.Pages != nil {
		t.Fatalf("a single page has page links: %+v", l.Pages)
	}
}

func TestRateLimiterWindow(t *testing.T) {
	l := &rateLimiter{limit: 2}
	now := time.Date(2026, 1, 1, 10, 0, 30, 0, time.UTC)
	for i, want := range []bool{true, true, false} {
		if ok, _, reset := l.take(now); ok != want || !reset.Equal(now.Truncate(time.Minute).Add(time.Minute)) {
			t.Fatalf("request %d: allowed %v, reset %v", i+1, ok, reset)
		}
	}
	if ok, remaining, _ := l.take(now.Add(30 * time.Second)); !ok || remaining != 1 {
		t.Fatalf("next minute: allowed %v remaining %d", ok, remaining)
	}
}

func TestFreeAddress(t *testing.T) {
	nw := bridgeNetwork{subnet: netip.MustParsePrefix("10.1.0.0/30"), gateway: netip.MustParseAddr("10.1.0.1")}
	addr, err := freeAddress(nw, map[netip.Addr]bool{})
	if err != nil || addr.String() != "10.1.0.2" {
		t.Fatalf("%v %v", addr, err)
	}
	if _, err := freeAddress(nw, map[netip.Addr]bool{addr: true}); err == nil {
		t.Fatal("the broadcast address was handed out")
	}
	if nw.netmask() != "255.255.255.252" {
		t.Fatal(nw.netmask())
	}
}

func TestDefaultVPCIDIsStable(t *testing.T) {
	first, again := defaultVPCID("nyc3"), defaultVPCID("nyc3")
	if first != again || first == defaultVPCID("ams3") {
		t.Fatal("default VPC ids must be stable per region and distinct across regions")
	}
	if region, ok := vpcRegion(defaultVPCID("fra1")); !ok || region != "fra1" {
		t.Fatal(region)
	}
}
