package droplet

import (
	"testing"

	"github.com/digitalocean/godo"
)

func TestCatalogCheck(t *testing.T) {
	t.Parallel()
	cat := &Catalog{
		Regions: map[string]godo.Region{"nyc3": {Slug: "nyc3", Available: true}, "ams2": {Slug: "ams2", Available: false}, "fra1": {Slug: "fra1", Available: true}},
		Sizes: map[string]godo.Size{
			"s-1vcpu-1gb": {Slug: "s-1vcpu-1gb", Available: true, Regions: []string{"nyc3", "fra1"}},
			"c-32":        {Slug: "c-32", Available: true, Regions: []string{"nyc3"}},
			"s-old":       {Slug: "s-old", Available: false},
		},
		Images: map[string]godo.Image{"docker-20-04": {Slug: "docker-20-04", Regions: []string{"nyc3", "fra1"}}, "nyc-only": {Slug: "nyc-only", Regions: []string{"nyc3"}}},
	}
	cases := map[string]struct {
		region, size, image string
		fields              []string
	}{
		"all offered":                  {"nyc3", "s-1vcpu-1gb", "docker-20-04", nil},
		"a region that looks right":    {"xyz9", "s-1vcpu-1gb", "docker-20-04", []string{"region"}},
		"a closed region":              {"ams2", "s-1vcpu-1gb", "docker-20-04", []string{"region"}},
		"a size that looks right":      {"nyc3", "s-64vcpu-1tb", "docker-20-04", []string{"size"}},
		"a retired size":               {"nyc3", "s-old", "docker-20-04", []string{"size"}},
		"a size not in the region":     {"fra1", "c-32", "docker-20-04", []string{"size"}},
		"an image that looks right":    {"nyc3", "s-1vcpu-1gb", "docker-99-04", []string{"image"}},
		"an image not in the region":   {"fra1", "s-1vcpu-1gb", "nyc-only", []string{"image"}},
		"unknown values are unchecked": {"", "", "", nil},
		"several at once":              {"nyc3", "nope", "nope", []string{"size", "image"}},
	}
	for name, tc := range cases {
		errs := cat.Check(tc.region, tc.size, tc.image)
		var fields []string
		for _, e := range errs {
			fields = append(fields, e.Field)
		}
		if len(fields) != len(tc.fields) || (len(fields) > 0 && fields[0] != tc.fields[0]) {
			t.Errorf("%s: Check(%q, %q, %q) = %v, want faults in %v", name, tc.region, tc.size, tc.image, errs, tc.fields)
		}
	}
}
