package localcloud

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"github.com/digitalocean/godo"
)

// These tests need no Docker engine: the API over fake VPC networks.

// fakeVPCNetworks hands out 10.<n>.0.0/20 ranges and refuses to remove a network marked busy.
type fakeVPCNetworks struct {
	made    map[string]bridgeNetwork
	busy    map[string]bool
	removed []string
}

func (f *fakeVPCNetworks) createVPCNetwork(_ context.Context, id string, ipRange netip.Prefix) (bridgeNetwork, error) {
	if !ipRange.IsValid() {
		ipRange = netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/20", 100+len(f.made)))
	}
	nw := bridgeNetwork{name: "fake-vpc-" + id[:8], subnet: ipRange, gateway: ipRange.Addr().Next()}
	f.made[nw.name] = nw
	return nw, nil
}

func (f *fakeVPCNetworks) removeVPCNetwork(_ context.Context, name string) error {
	if f.busy[name] {
		return fmt.Errorf("network %s has active endpoints", name)
	}
	f.removed = append(f.removed, name)
	return nil
}

// apiWithNetworks is the API over an empty account whose default VPC network is
// 172.30.0.0/16, with fake networks for custom VPCs, and a godo client for it.
func apiWithNetworks(t *testing.T) (*Cloud, *godo.Client, *fakeVPCNetworks) {
	t.Helper()
	c, srv := apiOnly(t, Manners{})
	c.nodes = &nodeBackend{
		public: bridgeNetwork{name: "pub", subnet: netip.MustParsePrefix("172.29.0.0/16"), gateway: netip.MustParseAddr("172.29.0.1")},
		vpc:    bridgeNetwork{name: "vpc", subnet: netip.MustParsePrefix("172.30.0.0/16"), gateway: netip.MustParseAddr("172.30.0.1")},
	}
	nets := &fakeVPCNetworks{made: map[string]bridgeNetwork{}, busy: map[string]bool{}}
	c.vpcNets = nets
	do, err := godo.New(&http.Client{Transport: bearerTransport{"tok"}}, godo.SetBaseURL(srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	return c, do, nets
}

func TestVPCLifecycle(t *testing.T) {
	t.Parallel()
	c, do, nets := apiWithNetworks(t)
	ctx := t.Context()

	vpc, _, err := do.VPCs.Create(ctx, &godo.VPCCreateRequest{Name: "stack", RegionSlug: "fra1", Description: "nodes"})
	if err != nil {
		t.Fatal(err)
	}
	if vpc.ID == "" || vpc.URN != "do:vpc:"+vpc.ID || vpc.Name != "stack" || vpc.RegionSlug != "fra1" ||
		vpc.Description != "nodes" || vpc.IPRange != "10.100.0.0/20" || vpc.Default || vpc.CreatedAt.IsZero() {
		t.Fatalf("created %+v", vpc)
	}
	if len(nets.made) != 1 {
		t.Fatalf("networks made: %v", nets.made)
	}
	got, _, err := do.VPCs.Get(ctx, vpc.ID)
	if err != nil || got.IPRange != vpc.IPRange || got.Name != "stack" {
		t.Fatalf("get %+v %v", got, err)
	}
	all, _, err := do.VPCs.List(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil || len(all) != len(regionNames)+1 {
		t.Fatalf("list: %d VPCs, %v", len(all), err)
	}

	// The names and ranges DO refuses.
	for name, req := range map[string]*godo.VPCCreateRequest{
		"same name":            {Name: "stack", RegionSlug: "fra1"},
		"default's name":       {Name: "default-fra1", RegionSlug: "fra1"},
		"bad name":             {Name: "no spaces", RegionSlug: "fra1"},
		"bad region":           {Name: "x", RegionSlug: "mars1"},
		"public range":         {Name: "x", RegionSlug: "fra1", IPRange: "8.8.0.0/20"},
		"too big":              {Name: "x", RegionSlug: "fra1", IPRange: "10.0.0.0/8"},
		"too small":            {Name: "x", RegionSlug: "fra1", IPRange: "10.201.0.0/29"},
		"overlaps a VPC":       {Name: "x", RegionSlug: "fra1", IPRange: "10.100.8.0/24"},
		"overlaps the default": {Name: "x", RegionSlug: "fra1", IPRange: "172.30.4.0/24"},
	} {
		if _, _, err := do.VPCs.Create(ctx, req); err == nil {
			t.Errorf("%s: created", name)
		} else if status, _ := apiStatus(t, err); status != http.StatusUnprocessableEntity {
			t.Errorf("%s: status %d", name, status)
		}
	}
	chosen, _, err := do.VPCs.Create(ctx, &godo.VPCCreateRequest{Name: "chosen", RegionSlug: "ams3", IPRange: "10.200.16.0/20"})
	if err != nil || chosen.IPRange != "10.200.16.0/20" {
		t.Fatalf("with ip_range: %+v %v", chosen, err)
	}
	if small, _, err := do.VPCs.Create(ctx, &godo.VPCCreateRequest{Name: "small", RegionSlug: "ams3", IPRange: "10.202.0.0/28"}); err != nil || small.IPRange != "10.202.0.0/28" {
		t.Fatalf("a /28: %+v %v", small, err)
	}

	updated, _, err := do.VPCs.Update(ctx, vpc.ID, &godo.VPCUpdateRequest{Name: "stack2", Description: "renamed"})
	if err != nil || updated.Name != "stack2" || updated.Description != "renamed" || updated.IPRange != vpc.IPRange {
		t.Fatalf("update %+v %v", updated, err)
	}
	patched, _, err := do.VPCs.Set(ctx, vpc.ID, godo.VPCSetDescription("patched"))
	if err != nil || patched.Name != "stack2" || patched.Description != "patched" {
		t.Fatalf("patch %+v %v", patched, err)
	}
	if _, err := do.VPCs.Delete(ctx, defaultVPCID("fra1")); err == nil {
		t.Error("deleted a default VPC")
	}

	// A VPC with a droplet in it is not deleted (403, which clients retry), nor one
	// whose network is still in use (409).
	c.mu.Lock()
	c.st.Droplets = append(c.st.Droplets, &droplet{ID: 7, Name: "member", Region: "fra1", VPCUUID: vpc.ID})
	c.mu.Unlock()
	if _, err := do.VPCs.Delete(ctx, vpc.ID); err == nil {
		t.Fatal("deleted a VPC with members")
	} else if status, _ := apiStatus(t, err); status != http.StatusForbidden {
		t.Fatalf("with members: status %d", status)
	}
	c.mu.Lock()
	c.st.removeDroplet(7)
	c.mu.Unlock()
	network := c.st.vpc(vpc.ID).Network
	nets.busy[network] = true
	if _, err := do.VPCs.Delete(ctx, vpc.ID); err == nil {
		t.Fatal("deleted a VPC whose network is in use")
	} else if status, _ := apiStatus(t, err); status != http.StatusConflict {
		t.Fatalf("network in use: status %d", status)
	}
	nets.busy[network] = false
	if _, err := do.VPCs.Delete(ctx, vpc.ID); err != nil {
		t.Fatal(err)
	}
	if len(nets.removed) != 1 || nets.removed[0] != network {
		t.Fatalf("networks removed: %v", nets.removed)
	}
	if _, resp, err := do.VPCs.Get(ctx, vpc.ID); err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("deleted VPC: %v", err)
	}
}

// A droplet asked for in a custom VPC is in that VPC, and one in another region's VPC is
// refused; the create is checked without making a node.
func TestDropletPlanTakesItsVPC(t *testing.T) {
	t.Parallel()
	c, do, _ := apiWithNetworks(t)
	vpc, _, err := do.VPCs.Create(t.Context(), &godo.VPCCreateRequest{Name: "stack", RegionSlug: "fra1"})
	if err != nil {
		t.Fatal(err)
	}
	req := dropletCreateRequest{Name: "n", Region: "fra1", Size: "s-1vcpu-1gb", Image: []byte(`"docker-20-04"`), VPCUUID: vpc.ID}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.planCreateLocked(req)
	if err != nil || p.vpcUUID != vpc.ID {
		t.Fatalf("plan %+v %v", p, err)
	}
	if nw := c.vpcNetworkLocked(vpc.ID); nw.subnet.String() != vpc.IPRange {
		t.Fatalf("network %+v for %s", nw, vpc.IPRange)
	}
	req.Region = "nyc3"
	if _, err := c.planCreateLocked(req); err == nil {
		t.Fatal("a droplet in nyc3 was planned into a fra1 VPC")
	}
	req.Region, req.VPCUUID = "nyc3", ""
	if p, err := c.planCreateLocked(req); err != nil || p.vpcUUID != defaultVPCID("nyc3") {
		t.Fatalf("default VPC: %+v %v", p, err)
	}
}
