package localcloud

import (
	"crypto/sha1"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// The fixed catalog: what DO offers that the provider may ask for. Every image is backed by
// the same node image; the slug only changes what the API reports.

type regionJSON struct {
	Slug      string   `json:"slug"`
	Name      string   `json:"name"`
	Sizes     []string `json:"sizes"`
	Available bool     `json:"available"`
	Features  []string `json:"features"`
}

type sizeJSON struct {
	Slug         string   `json:"slug"`
	Memory       int      `json:"memory"`
	Vcpus        int      `json:"vcpus"`
	Disk         int      `json:"disk"`
	Transfer     float64  `json:"transfer"`
	PriceMonthly float64  `json:"price_monthly"`
	PriceHourly  float64  `json:"price_hourly"`
	Regions      []string `json:"regions"`
	Available    bool     `json:"available"`
	Description  string   `json:"description"`
}

type imageJSON struct {
	ID            int      `json:"id"`
	Name          string   `json:"name"`
	Distribution  string   `json:"distribution"`
	Slug          string   `json:"slug"`
	Public        bool     `json:"public"`
	Regions       []string `json:"regions"`
	CreatedAt     string   `json:"created_at"`
	Type          string   `json:"type"`
	MinDiskSize   int      `json:"min_disk_size"`
	SizeGigabytes float64  `json:"size_gigabytes"`
	Description   string   `json:"description"`
	Tags          []string `json:"tags"`
	Status        string   `json:"status"`
}

type vpcJSON struct {
	ID          string `json:"id"`
	URN         string `json:"urn"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Region      string `json:"region"`
	IPRange     string `json:"ip_range"`
	Default     bool   `json:"default"`
	CreatedAt   string `json:"created_at"`
}

var regionNames = []struct{ slug, name string }{
	{"nyc1", "New York 1"}, {"nyc3", "New York 3"}, {"sfo2", "San Francisco 2"},
	{"sfo3", "San Francisco 3"}, {"ams3", "Amsterdam 3"}, {"sgp1", "Singapore 1"},
	{"lon1", "London 1"}, {"fra1", "Frankfurt 1"}, {"tor1", "Toronto 1"},
	{"blr1", "Bangalore 1"}, {"syd1", "Sydney 1"},
}

var sizeCatalog = []sizeJSON{
	{Slug: "s-1vcpu-512mb-10gb", Memory: 512, Vcpus: 1, Disk: 10, Transfer: 0.5, PriceMonthly: 4},
	{Slug: "s-1vcpu-1gb", Memory: 1024, Vcpus: 1, Disk: 25, Transfer: 1, PriceMonthly: 6},
	{Slug: "s-1vcpu-2gb", Memory: 2048, Vcpus: 1, Disk: 50, Transfer: 2, PriceMonthly: 12},
	{Slug: "s-2vcpu-2gb", Memory: 2048, Vcpus: 2, Disk: 60, Transfer: 3, PriceMonthly: 18},
	{Slug: "s-2vcpu-4gb", Memory: 4096, Vcpus: 2, Disk: 80, Transfer: 4, PriceMonthly: 24},
	{Slug: "s-4vcpu-8gb", Memory: 8192, Vcpus: 4, Disk: 160, Transfer: 5, PriceMonthly: 48},
	{Slug: "s-8vcpu-16gb", Memory: 16384, Vcpus: 8, Disk: 320, Transfer: 6, PriceMonthly: 96},
}

var imageCatalog = []imageJSON{
	{ID: 112929408, Slug: "docker-20-04", Name: "Docker on Ubuntu 20.04", Distribution: "Ubuntu", MinDiskSize: 10, SizeGigabytes: 2.36},
	{ID: 129211873, Slug: "ubuntu-22-04-x64", Name: "22.04 (LTS) x64", Distribution: "Ubuntu", MinDiskSize: 7, SizeGigabytes: 2.2},
	{ID: 155929720, Slug: "ubuntu-24-04-x64", Name: "24.04 (LTS) x64", Distribution: "Ubuntu", MinDiskSize: 7, SizeGigabytes: 2.4},
	{ID: 152889563, Slug: "debian-12-x64", Name: "12 x64", Distribution: "Debian", MinDiskSize: 7, SizeGigabytes: 1.4},
}

// catalogEpoch is when the catalog "was created": fixed, so responses are stable.
var catalogEpoch = time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)

func init() {
	for i := range sizeCatalog {
		s := &sizeCatalog[i]
		s.PriceHourly = float64(int(s.PriceMonthly/672*100000+0.5)) / 100000
		s.Regions = regionSlugs()
		s.Available = true
		s.Description = "Basic"
	}
	for i := range imageCatalog {
		img := &imageCatalog[i]
		img.Public = true
		img.Regions = regionSlugs()
		img.CreatedAt = catalogEpoch.Format(time.RFC3339)
		img.Type = "base"
		img.Tags = []string{}
		img.Status = "available"
	}
}

func regionSlugs() []string {
	slugs := make([]string, len(regionNames))
	for i, r := range regionNames {
		slugs[i] = r.slug
	}
	return slugs
}

func sizeSlugs() []string {
	slugs := make([]string, len(sizeCatalog))
	for i, s := range sizeCatalog {
		slugs[i] = s.Slug
	}
	return slugs
}

func lookupRegion(slug string) (regionJSON, bool) {
	for _, r := range regionNames {
		if r.slug == slug {
			return regionJSON{
				Slug: r.slug, Name: r.name, Sizes: sizeSlugs(), Available: true,
				Features: []string{"backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"},
			}, true
		}
	}
	return regionJSON{}, false
}

func lookupSize(slug string) (sizeJSON, bool) {
	for _, s := range sizeCatalog {
		if s.Slug == slug {
			return s, true
		}
	}
	return sizeJSON{}, false
}

// lookupImage accepts a slug or a numeric image id, as droplet create does.
func lookupImage(slugOrID string) (imageJSON, bool) {
	for _, img := range imageCatalog {
		if img.Slug == slugOrID || strconv.Itoa(img.ID) == slugOrID {
			return img, true
		}
	}
	return imageJSON{}, false
}

// defaultVPCID is stable per region (and the same for every emulator instance), like the
// default VPC a DO account keeps for the region.
func defaultVPCID(region string) string {
	return stableUUID("localcloud-default-vpc/" + region)
}

// stableUUID derives a version-5-style UUID from seed, so ids survive restarts.
func stableUUID(seed string) string {
	sum := sha1.Sum([]byte(seed))
	sum[6] = (sum[6] & 0x0f) | 0x50
	sum[8] = (sum[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}

func (c *Cloud) vpcFor(region string) vpcJSON {
	id := defaultVPCID(region)
	return vpcJSON{
		ID: id, URN: "do:vpc:" + id, Name: "default-" + region, Region: region,
		IPRange: c.nodes.vpc.subnet.String(), Default: true,
		CreatedAt: catalogEpoch.Format(time.RFC3339),
	}
}

func (c *Cloud) getAccount(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"account": map[string]any{
		"droplet_limit":     c.cfg.DropletLimit,
		"floating_ip_limit": 3,
		"reserved_ip_limit": 3,
		"volume_limit":      100,
		"email":             "developer@localcloud.invalid",
		"name":              "Local Cloud",
		"uuid":              stableUUID("localcloud-account/" + c.cfg.Name),
		"email_verified":    true,
		"status":            "active",
		"status_message":    "",
		"team":              map[string]string{"uuid": stableUUID("localcloud-team/" + c.cfg.Name), "name": "My Team"},
	}})
	return nil
}

func (c *Cloud) listRegions(w http.ResponseWriter, r *http.Request) error {
	all := make([]regionJSON, 0, len(regionNames))
	for _, rn := range regionNames {
		region, _ := lookupRegion(rn.slug)
		all = append(all, region)
	}
	page, l, m := paginate(r, all)
	writeJSON(w, http.StatusOK, map[string]any{"regions": page, "links": l, "meta": m})
	return nil
}

func (c *Cloud) listSizes(w http.ResponseWriter, r *http.Request) error {
	page, l, m := paginate(r, sizeCatalog)
	writeJSON(w, http.StatusOK, map[string]any{"sizes": page, "links": l, "meta": m})
	return nil
}

func (c *Cloud) listImages(w http.ResponseWriter, r *http.Request) error {
	images := imageCatalog
	// Only distribution/application images exist: a private listing is empty.
	if r.URL.Query().Get("private") == "true" {
		images = nil
	}
	page, l, m := paginate(r, images)
	writeJSON(w, http.StatusOK, map[string]any{"images": page, "links": l, "meta": m})
	return nil
}

func (c *Cloud) getImage(w http.ResponseWriter, r *http.Request) error {
	img, ok := lookupImage(r.PathValue("image"))
	if !ok {
		return errNotFound()
	}
	writeJSON(w, http.StatusOK, map[string]any{"image": img})
	return nil
}

// vpcRegion returns the region of a default VPC id.
func vpcRegion(id string) (string, bool) {
	for _, rn := range regionNames {
		if defaultVPCID(rn.slug) == id {
			return rn.slug, true
		}
	}
	return "", false
}
