package droplet

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/digitalocean/godo"
)

// MaxUserData is the most user data DigitalOcean accepts (64 KiB).
const MaxUserData = 64 * 1024

// UserDataLimit is what a user's own user data may take: the rest of MaxUserData holds
// the host key the provider adds (WithHostKey), with room to spare.
const UserDataLimit = MaxUserData - 1024

// Catalog is what the account can create: region, size and image slugs and where each
// is offered. It is fetched once per provider run.
type Catalog struct {
	Regions map[string]godo.Region
	Sizes   map[string]godo.Size
	Images  map[string]godo.Image
}

// Catalog fetches the region, size and public image lists.
func (c *Client) Catalog(ctx context.Context) (*Catalog, error) {
	cat := &Catalog{Regions: map[string]godo.Region{}, Sizes: map[string]godo.Size{}, Images: map[string]godo.Image{}}
	err := c.listAll(ctx, "list regions", func(ctx context.Context, opt *godo.ListOptions) (*godo.Response, error) {
		page, resp, err := c.api.Regions.List(ctx, opt)
		for _, r := range page {
			cat.Regions[r.Slug] = r
		}
		return resp, err
	})
	if err == nil {
		err = c.listAll(ctx, "list sizes", func(ctx context.Context, opt *godo.ListOptions) (*godo.Response, error) {
			page, resp, err := c.api.Sizes.List(ctx, opt)
			for _, s := range page {
				cat.Sizes[s.Slug] = s
			}
			return resp, err
		})
	}
	if err == nil {
		err = c.listAll(ctx, "list images", func(ctx context.Context, opt *godo.ListOptions) (*godo.Response, error) {
			page, resp, err := c.api.Images.List(ctx, opt)
			for _, i := range page {
				if i.Slug != "" {
					cat.Images[i.Slug] = i
				}
			}
			return resp, err
		})
	}
	if err != nil {
		return nil, err
	}
	return cat, nil
}

// listAll pages through a list.
func (c *Client) listAll(ctx context.Context, op string, page func(context.Context, *godo.ListOptions) (*godo.Response, error)) error {
	opt := &godo.ListOptions{Page: 1, PerPage: 200}
	for {
		var resp *godo.Response
		if err := c.call(ctx, op, func(ctx context.Context) (r *godo.Response, err error) {
			resp, err = page(ctx, opt)
			return resp, err
		}); err != nil {
			return err
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return nil
		}
		current, err := resp.Links.CurrentPage()
		if err != nil {
			return fmt.Errorf("%s: reading the page number: %w", op, err)
		}
		opt.Page = current + 1
	}
}

// SlugError says which of region, size and image the catalog does not offer, and why.
type SlugError struct {
	Field string // "region", "size" or "image"
	Err   error
}

func (e SlugError) Error() string { return e.Field + ": " + e.Err.Error() }

// Check reports the slugs a droplet cannot be created with. An empty slug is not checked.
func (cat *Catalog) Check(region, size, image string) []SlugError {
	var errs []SlugError
	r, regionOK := cat.Regions[region]
	switch {
	case region == "":
	case !regionOK:
		errs = append(errs, SlugError{"region", fmt.Errorf("no region %q; the account has %s", region, keys(cat.Regions))})
	case !r.Available:
		errs = append(errs, SlugError{"region", fmt.Errorf("region %q takes no new droplets now", region)})
		regionOK = false
	}
	s, sizeOK := cat.Sizes[size]
	switch {
	case size == "":
	case !sizeOK:
		errs = append(errs, SlugError{"size", fmt.Errorf("no size %q; the account has %s", size, keys(cat.Sizes))})
	case !s.Available:
		errs = append(errs, SlugError{"size", fmt.Errorf("size %q is not available now", size)})
	case regionOK && len(s.Regions) > 0 && !slices.Contains(s.Regions, region):
		errs = append(errs, SlugError{"size", fmt.Errorf("size %q is not offered in %s (it is in %s)", size, region, strings.Join(s.Regions, ", "))})
	}
	i, imageOK := cat.Images[image]
	switch {
	case image == "":
	case !imageOK:
		errs = append(errs, SlugError{"image", fmt.Errorf("no public image %q", image)})
	case regionOK && len(i.Regions) > 0 && !slices.Contains(i.Regions, region):
		errs = append(errs, SlugError{"image", fmt.Errorf("image %q is not offered in %s", image, region)})
	}
	return errs
}

func keys[V any](m map[string]V) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	if len(out) > 12 {
		out = append(out[:12], "...")
	}
	return strings.Join(out, ", ")
}
