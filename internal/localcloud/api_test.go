package localcloud

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
)

func apiStatus(t *testing.T, err error) (int, *godo.ErrorResponse) {
	t.Helper()
	var er *godo.ErrorResponse
	if !errors.As(err, &er) {
		t.Fatalf("want a godo.ErrorResponse, got %v", err)
	}
	return er.Response.StatusCode, er
}

func TestAuthAndErrors(t *testing.T) {
	cloud := startCloud(t, Config{})

	t.Run("401 without the token", func(t *testing.T) {
		_, _, err := godoClient(t, cloud, "wrong").Account.Get(t.Context())
		status, er := apiStatus(t, err)
		if status != http.StatusUnauthorized || er.Message != "Unable to authenticate you" {
			t.Fatalf("got %d %q", status, er.Message)
		}
		resp, err := http.Get(cloud.URL() + "v2/account")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if body["id"] != "Unauthorized" || body["request_id"] == "" {
			t.Fatalf("body %v", body)
		}
		if resp.Header.Get("ratelimit-limit") == "" || resp.Header.Get("ratelimit-remaining") == "" || resp.Header.Get("ratelimit-reset") == "" {
			t.Fatalf("rate limit headers missing: %v", resp.Header)
		}
	})

	do := godoClient(t, cloud, cloud.Token())

	t.Run("account", func(t *testing.T) {
		acct, _, err := do.Account.Get(t.Context())
		if err != nil || acct.Status != "active" || acct.DropletLimit == 0 {
			t.Fatalf("account %+v, %v", acct, err)
		}
	})

	t.Run("404", func(t *testing.T) {
		_, _, err := do.Droplets.Get(t.Context(), 12345)
		status, er := apiStatus(t, err)
		if status != http.StatusNotFound || er.Message != "The resource you were accessing could not be found." || er.RequestID == "" {
			t.Fatalf("got %d %+v", status, er)
		}
		req, _ := http.NewRequest(http.MethodGet, cloud.URL()+"v2/no/such/thing", nil)
		req.Header.Set("Authorization", "Bearer "+cloud.Token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"id":"not_found"`) {
			t.Fatalf("got %d %s", resp.StatusCode, body)
		}
	})

	t.Run("422", func(t *testing.T) {
		base := godo.DropletCreateRequest{
			Name: "ok-name", Region: "nyc3", Size: "s-1vcpu-1gb",
			Image: godo.DropletCreateImage{Slug: "docker-20-04"},
		}
		cases := map[string]func(*godo.DropletCreateRequest){
			"bad region":  func(r *godo.DropletCreateRequest) { r.Region = "mars1" },
			"bad name":    func(r *godo.DropletCreateRequest) { r.Name = "not_a_hostname!" },
			"no name":     func(r *godo.DropletCreateRequest) { r.Name = "" },
			"bad size":    func(r *godo.DropletCreateRequest) { r.Size = "s-64vcpu-1tb" },
			"bad image":   func(r *godo.DropletCreateRequest) { r.Image.Slug = "windows-11" },
			"bad ssh key": func(r *godo.DropletCreateRequest) { r.SSHKeys = []godo.DropletCreateSSHKey{{ID: 7}} },
			"bad vpc":     func(r *godo.DropletCreateRequest) { r.VPCUUID = "2a2b9c1e-0000-4000-8000-000000000000" },
		}
		for name, mutate := range cases {
			req := base
			mutate(&req)
			_, _, err := do.Droplets.Create(t.Context(), &req)
			if status, er := apiStatus(t, err); status != http.StatusUnprocessableEntity {
				t.Errorf("%s: got %d %q", name, status, er.Message)
			}
		}
		names := make([]string, 11)
		for i := range names {
			names[i] = "n" + string(rune('a'+i))
		}
		_, _, err := do.Droplets.CreateMultiple(t.Context(), &godo.DropletMultiCreateRequest{
			Names: names, Region: "nyc3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "docker-20-04"},
		})
		if status, _ := apiStatus(t, err); status != http.StatusUnprocessableEntity {
			t.Errorf("11 names: got %d", status)
		}
		_, _, err = do.Keys.Create(t.Context(), &godo.KeyCreateRequest{Name: "junk", PublicKey: "ssh-ed25519 nope"})
		if status, _ := apiStatus(t, err); status != http.StatusUnprocessableEntity {
			t.Errorf("invalid key: got %d", status)
		}
	})

	t.Run("keys", func(t *testing.T) {
		key := registerKey(t, do, "keys-test")
		authorized := key.godo.PublicKey
		_, _, err := do.Keys.Create(t.Context(), &godo.KeyCreateRequest{Name: "again", PublicKey: authorized})
		if status, er := apiStatus(t, err); status != http.StatusUnprocessableEntity || er.Message != "SSH Key is already in use on your account" {
			t.Fatalf("duplicate: %d %q", status, er.Message)
		}
		byFP, _, err := do.Keys.GetByFingerprint(t.Context(), key.godo.Fingerprint)
		if err != nil || byFP.ID != key.godo.ID {
			t.Fatalf("GetByFingerprint: %+v %v", byFP, err)
		}
		renamed, _, err := do.Keys.UpdateByID(t.Context(), key.godo.ID, &godo.KeyUpdateRequest{Name: "renamed"})
		if err != nil || renamed.Name != "renamed" {
			t.Fatalf("UpdateByID: %+v %v", renamed, err)
		}
		if _, err := do.Keys.DeleteByFingerprint(t.Context(), key.godo.Fingerprint); err != nil {
			t.Fatal(err)
		}
		if _, _, err := do.Keys.GetByID(t.Context(), key.godo.ID); err == nil {
			t.Fatal("deleted key still there")
		}
	})

	t.Run("catalog", func(t *testing.T) {
		regions, _, err := do.Regions.List(t.Context(), nil)
		if err != nil || len(regions) != 11 {
			t.Fatalf("regions: %d %v", len(regions), err)
		}
		sizes, _, err := do.Sizes.List(t.Context(), nil)
		if err != nil || len(sizes) != 7 {
			t.Fatalf("sizes: %d %v", len(sizes), err)
		}
		vpcs, _, err := do.VPCs.List(t.Context(), nil)
		if err != nil || len(vpcs) != 11 {
			t.Fatalf("vpcs: %d %v", len(vpcs), err)
		}
		vpc, _, err := do.VPCs.Get(t.Context(), vpcs[0].ID)
		if err != nil || !vpc.Default {
			t.Fatalf("vpc: %+v %v", vpc, err)
		}
	})

	t.Run("pagination by tag", func(t *testing.T) {
		_, _, err := do.Droplets.CreateMultiple(t.Context(), &godo.DropletMultiCreateRequest{
			Names: []string{"page-a", "page-b", "page-c"}, Region: "fra1", Size: "s-1vcpu-512mb-10gb",
			Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, Tags: []string{"paged"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := do.Droplets.Create(t.Context(), &godo.DropletCreateRequest{
			Name: "untagged", Region: "fra1", Size: "s-1vcpu-512mb-10gb", Image: godo.DropletCreateImage{Slug: "debian-12-x64"},
		}); err != nil {
			t.Fatal(err)
		}
		first, resp, err := do.Droplets.ListByTag(t.Context(), "paged", &godo.ListOptions{PerPage: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(first) != 2 || resp.Meta.Total != 3 || resp.Links.IsLastPage() {
			t.Fatalf("page 1: %d droplets, meta %+v, links %+v", len(first), resp.Meta, resp.Links.Pages)
		}
		if !strings.HasPrefix(resp.Links.Pages.Next, "http://") || !strings.Contains(resp.Links.Pages.Next, "tag_name=paged") {
			t.Fatalf("next link %q", resp.Links.Pages.Next)
		}
		page, err := resp.Links.CurrentPage()
		if err != nil || page != 1 {
			t.Fatalf("current page %d %v", page, err)
		}
		second, resp, err := do.Droplets.ListByTag(t.Context(), "paged", &godo.ListOptions{PerPage: 2, Page: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(second) != 1 || !resp.Links.IsLastPage() || second[0].Name != "page-c" {
			t.Fatalf("page 2: %+v links %+v", second, resp.Links.Pages)
		}
		tag, _, err := do.Tags.Get(t.Context(), "paged")
		if err != nil || tag.Resources.Droplets.Count != 3 {
			t.Fatalf("tag: %+v %v", tag, err)
		}
		if _, err := do.Droplets.DeleteByTag(t.Context(), "paged"); err != nil {
			t.Fatal(err)
		}
		all, _, err := do.Droplets.List(t.Context(), nil)
		if err != nil || len(all) != 1 || all[0].Name != "untagged" {
			t.Fatalf("after delete by tag: %+v %v", all, err)
		}
		if _, err := do.Droplets.Delete(t.Context(), all[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := do.Droplets.Delete(t.Context(), all[0].ID); err == nil {
			t.Fatal("second delete did not 404")
		}
	})
}

func TestRateLimit(t *testing.T) {
	cloud := startCloud(t, Config{RateLimitPerMinute: 3})
	do := godoClient(t, cloud, cloud.Token())
	// The window is the calendar minute: if it rolls over mid-sequence, try once more.
	for attempt := 0; attempt < 2; attempt++ {
		window := time.Now().Truncate(time.Minute)
		var last *godo.Response
		var err error
		for i := 0; i < 4 && err == nil; i++ {
			_, last, err = do.Regions.List(t.Context(), nil)
			if err == nil && (last.Limit != 3 || last.Reset.IsZero()) {
				t.Fatalf("rate %+v", last.Rate)
			}
		}
		if !time.Now().Truncate(time.Minute).Equal(window) {
			continue
		}
		status, er := apiStatus(t, err)
		if status != http.StatusTooManyRequests || er.Message != "API Rate limit exceeded." {
			t.Fatalf("got %d %q", status, er.Message)
		}
		if last.Remaining != 0 || last.Header.Get("Retry-After") == "" {
			t.Fatalf("429 headers: %v", last.Header)
		}
		return
	}
	t.Fatal("the minute rolled over twice")
}
