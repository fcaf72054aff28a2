package droplet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/digitalocean/godo"
)

// Polling a droplet or action: quick at first (a local cloud is ready in seconds), then
// every few seconds, well inside the API's rate limit.
const (
	pollInterval    = 500 * time.Millisecond
	maxPollInterval = 3 * time.Second
)

// Spec is what a droplet is created from.
type Spec struct {
	Name       string
	Region     string
	Size       string
	Image      string
	SSHKeys    []string // key ids or fingerprints
	VPCUUID    string
	Tags       []string // the user's tags; ManagedTag is added
	Monitoring bool
	UserData   string
	// IdempotencyTag is unique to this create (see IdempotencyTag): when the API fails the
	// request, Create looks for a droplet carrying it before retrying. Empty: a failed
	// create request is not retried.
	IdempotencyTag string
	// PendingTag (see Stack.PendingTag) is written with the droplet until Claim removes
	// it; Create adopts a droplet that still carries it, the one an interrupted earlier
	// run of the same create left. Empty: nothing is adopted.
	PendingTag string
	// StackID, if set, is written as a StackTagPrefix tag.
	StackID string
}

// Droplet is the provider's view of a droplet.
type Droplet struct {
	ID          int
	Name        string
	Region      string
	Size        string
	Image       string
	Status      string
	PublicIPv4  string
	PrivateIPv4 string
	VPCUUID     string
	Tags        []string // without the provider's own tags (IsProviderTag)
	Monitoring  bool
	// IdempotencyToken is the token of the droplet's idempotency tag, if it has one.
	IdempotencyToken string
	// Pending says the droplet carries a pending tag (PendingTag): no state is known to
	// hold it yet.
	Pending    bool
	PendingTag string
	// RunID is the run that created or adopted it (see RunTagPrefix), while it is pending.
	RunID string
	// StackID is the id of the stack that created it, if that stack had one.
	StackID string
}

func fromGodo(d *godo.Droplet) *Droplet {
	out := &Droplet{ID: d.ID, Name: d.Name, Status: d.Status, Size: d.SizeSlug, VPCUUID: d.VPCUUID}
	if d.Region != nil {
		out.Region = d.Region.Slug
	}
	if d.Image != nil {
		out.Image = d.Image.Slug
	}
	if out.Size == "" && d.Size != nil {
		out.Size = d.Size.Slug
	}
	out.PublicIPv4, _ = d.PublicIPv4()
	out.PrivateIPv4, _ = d.PrivateIPv4()
	out.Monitoring = slices.Contains(d.Features, "monitoring")
	for _, t := range d.Tags {
		switch {
		case t == ManagedTag:
		case strings.HasPrefix(t, IdempotencyTagPrefix):
			out.IdempotencyToken = strings.TrimPrefix(t, IdempotencyTagPrefix)
		case strings.HasPrefix(t, PendingTagPrefix):
			out.Pending, out.PendingTag = true, t
		case strings.HasPrefix(t, RunTagPrefix):
			out.RunID = strings.TrimPrefix(t, RunTagPrefix)
		case strings.HasPrefix(t, StackTagPrefix):
			out.StackID = strings.TrimPrefix(t, StackTagPrefix)
		default:
			out.Tags = append(out.Tags, t)
		}
	}
	return out
}

// Get returns a droplet, or an error wrapping ErrNotFound.
func (c *Client) Get(ctx context.Context, id int) (*Droplet, error) {
	var d *godo.Droplet
	err := c.call(ctx, fmt.Sprintf("get droplet %d", id), func(ctx context.Context) (r *godo.Response, err error) {
		d, r, err = c.api.Droplets.Get(ctx, id)
		return r, err
	})
	if err != nil {
		return nil, err
	}
	return fromGodo(d), nil
}

// FindManaged returns a droplet this provider created with the given name and region,
// or nil when there is none. Names are not unique across stacks: this is for tests and
// tools, never for adoption (see Create).
func (c *Client) FindManaged(ctx context.Context, name, region string) (*Droplet, error) {
	return c.findTagged(ctx, ManagedTag, name, region, nil)
}

// findTagged returns the first droplet carrying tag with the given name and region that
// accept (if set) accepts.
func (c *Client) findTagged(ctx context.Context, tag, name, region string, accept func(*Droplet) bool) (*Droplet, error) {
	all, err := c.listTagged(ctx, tag, name, region)
	if err != nil {
		return nil, err
	}
	for _, d := range all {
		if accept == nil || accept(d) {
			return d, nil
		}
	}
	return nil, nil
}

// listTagged returns every droplet carrying tag with the given name and region.
func (c *Client) listTagged(ctx context.Context, tag, name, region string) ([]*Droplet, error) {
	var out []*Droplet
	err := c.eachTagged(ctx, tag, func(d *Droplet) {
		if d.Name == name && d.Region == region {
			out = append(out, d)
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachTagged calls each for every droplet carrying tag, page by page; a tag that does
// not exist is no droplet.
func (c *Client) eachTagged(ctx context.Context, tag string, each func(*Droplet)) error {
	opt := &godo.ListOptions{Page: 1, PerPage: 200}
	for {
		var page []godo.Droplet
		var resp *godo.Response
		err := c.call(ctx, "list droplets tagged "+tag, func(ctx context.Context) (r *godo.Response, err error) {
			page, r, err = c.api.Droplets.ListByTag(ctx, tag, opt)
			resp = r
			return r, err
		})
		if errors.Is(err, ErrNotFound) {
			return nil // no such tag: no droplet carries it
		}
		if err != nil {
			return err
		}
		for i := range page {
			each(fromGodo(&page[i]))
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return nil
		}
		next, err := resp.Links.CurrentPage()
		if err != nil {
			return fmt.Errorf("list droplets: reading the page number: %w", err)
		}
		opt.Page = next + 1
	}
}

// ByAddress returns the droplet with the given public or private IPv4 address, or nil
// when the account has none: for a delete that cannot reach a node and must know whether
// the node is gone for good.
func (c *Client) ByAddress(ctx context.Context, ip string) (*Droplet, error) {
	opt := &godo.ListOptions{Page: 1, PerPage: 200}
	for {
		var page []godo.Droplet
		var resp *godo.Response
		err := c.call(ctx, "list droplets", func(ctx context.Context) (r *godo.Response, err error) {
			page, r, err = c.api.Droplets.List(ctx, opt)
			resp = r
			return r, err
		})
		if err != nil {
			return nil, err
		}
		for i := range page {
			if d := fromGodo(&page[i]); d.PublicIPv4 == ip || d.PrivateIPv4 == ip {
				return d, nil
			}
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return nil, nil
		}
		next, err := resp.Links.CurrentPage()
		if err != nil {
			return nil, fmt.Errorf("list droplets: reading the page number: %w", err)
		}
		opt.Page = next + 1
	}
}
