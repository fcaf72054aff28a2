package droplet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/godo"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
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

// IdempotencyTagPrefix starts the tag that ties a droplet to the create that made it;
// droplets carry it besides ManagedTag for their whole life, and it is hidden like ManagedTag.
const IdempotencyTagPrefix = "microswarm-create:"

// IdempotencyTag is the tag for a per-create token.
func IdempotencyTag(token string) string { return IdempotencyTagPrefix + token }

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
	// Pending says the droplet carries a pending tag: its create has not finished.
	Pending bool
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
			out.Pending = true
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
			return nil, nil // no such tag: no droplet carries it
		}
		if err != nil {
			return nil, err
		}
		for i := range page {
			d := fromGodo(&page[i])
			if d.Name == name && d.Region == region && (accept == nil || accept(d)) {
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

// Create creates a droplet, or adopts one an interrupted earlier run of the same create
// left: it carries spec.PendingTag (still unclaimed), the same name and region, and an
// idempotency token (the key to the host key that create handed it). A droplet another
// stack made, or one whose create finished (Claim), is never adopted. Within this
// Client's run, creates that share a pending tag (resources with identical inputs, such
// as count = 3 with one name) take turns, and no droplet is handed to two of them.
//
// POST /v2/droplets is not idempotent: a 5xx can hide a droplet that was made. So before
// each retry the droplets carrying the idempotency tag are listed again, and one that
// appeared is the one this call made (adopted is false: it carries this call's user data).
func (c *Client) Create(ctx context.Context, spec Spec) (d *Droplet, adopted bool, err error) {
	tags := []string{ManagedTag}
	if spec.PendingTag != "" {
		unlock := c.adopt.lock(spec.PendingTag)
		defer unlock()
		existing, err := c.findTagged(ctx, spec.PendingTag, spec.Name, spec.Region, func(d *Droplet) bool {
			return d.IdempotencyToken != "" && !c.adopt.held(d.ID)
		})
		if err != nil {
			return nil, false, err
		}
		if existing != nil {
			c.adopt.hold(existing.ID)
			return existing, true, nil
		}
		tags = append(tags, spec.PendingTag)
		defer func() {
			if d != nil {
				c.adopt.hold(d.ID)
			}
		}()
	}
	if spec.IdempotencyTag != "" {
		tags = append(tags, spec.IdempotencyTag)
	}
	if spec.StackID != "" {
		tags = append(tags, StackTagPrefix+spec.StackID)
	}
	req := &godo.DropletCreateRequest{
		Name:       spec.Name,
		Region:     spec.Region,
		Size:       spec.Size,
		Image:      godo.DropletCreateImage{Slug: spec.Image},
		VPCUUID:    spec.VPCUUID,
		Tags:       append(tags, spec.Tags...),
		Monitoring: spec.Monitoring,
		UserData:   spec.UserData,
	}
	for _, k := range spec.SSHKeys {
		if id, err := strconv.Atoi(k); err == nil {
			req.SSHKeys = append(req.SSHKeys, godo.DropletCreateSSHKey{ID: id})
		} else {
			req.SSHKeys = append(req.SSHKeys, godo.DropletCreateSSHKey{Fingerprint: k})
		}
	}
	var created *godo.Droplet
	var made *Droplet
	recheck := func(ctx context.Context, status int) (bool, error) {
		if status < 500 {
			return false, nil // a rate limit (429): the request was not processed
		}
		if spec.IdempotencyTag == "" {
			return true, nil // nothing to re-check by: do not risk a duplicate
		}
		found, err := c.findTagged(ctx, spec.IdempotencyTag, spec.Name, spec.Region, nil)
		made = found
		return found != nil, err
	}
	err = c.callRechecking(ctx, "create droplet "+spec.Name, func(ctx context.Context) (r *godo.Response, err error) {
		created, r, err = c.api.Droplets.Create(ctx, req)
		return r, err
	}, recheck)
	if made != nil {
		return made, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return fromGodo(created), false, nil
}

// Claim marks a droplet's create as finished: the droplet loses its pending tag, so no
// later create adopts it, and the tag, once no droplet carries it, is deleted (tags
// outlive their droplets). A droplet already gone is success.
func (c *Client) Claim(ctx context.Context, id int, pendingTag string) error {
	unlock := c.adopt.lock(pendingTag)
	defer unlock()
	resource := []godo.Resource{{ID: strconv.Itoa(id), Type: godo.DropletResourceType}}
	err := c.call(ctx, fmt.Sprintf("claim droplet %d (untag %s)", id, pendingTag), func(ctx context.Context) (*godo.Response, error) {
		return c.api.Tags.UntagResources(ctx, pendingTag, &godo.UntagResourcesRequest{Resources: resource})
	})
	if errors.Is(err, ErrNotFound) {
		return nil // the droplet, or the tag, is gone
	}
	if err != nil {
		return err
	}
	// Tidying only: the droplet is claimed whatever happens here.
	var left []godo.Droplet
	if c.call(ctx, "list droplets tagged "+pendingTag, func(ctx context.Context) (r *godo.Response, err error) {
		left, r, err = c.api.Droplets.ListByTag(ctx, pendingTag, &godo.ListOptions{PerPage: 1})
		return r, err
	}) == nil && len(left) == 0 {
		_ = c.call(ctx, "delete tag "+pendingTag, func(ctx context.Context) (*godo.Response, error) {
			return c.api.Tags.Delete(ctx, pendingTag)
		})
	}
	return nil
}

// WaitStatus waits until the droplet reports the given status ("active", "off").
func (c *Client) WaitStatus(ctx context.Context, id int, status string) (*Droplet, error) {
	var last *Droplet
	err := wait.Until(ctx, wait.Options{What: fmt.Sprintf("droplet %d to become %s", id, status), Interval: pollInterval, MaxInterval: maxPollInterval},
		func(ctx context.Context) (bool, string, error) {
			d, err := c.Get(ctx, id)
			if err != nil {
				return false, "", err
			}
			last = d
			return d.Status == status, "status " + d.Status, nil
		})
	return last, err
}

// WaitGone waits until the droplet no longer exists.
func (c *Client) WaitGone(ctx context.Context, id int) error {
	return wait.Until(ctx, wait.Options{What: fmt.Sprintf("droplet %d to be deleted", id), Interval: pollInterval, MaxInterval: maxPollInterval},
		func(ctx context.Context) (bool, string, error) {
			d, err := c.Get(ctx, id)
			if errors.Is(err, ErrNotFound) {
				return true, "", nil
			}
			if err != nil {
				return false, "", err
			}
			return false, "status " + d.Status, nil
		})
}

// Delete deletes a droplet and waits until it is gone; one already gone is success.
func (c *Client) Delete(ctx context.Context, id int) error {
	err := c.call(ctx, fmt.Sprintf("delete droplet %d", id), func(ctx context.Context) (*godo.Response, error) {
		return c.api.Droplets.Delete(ctx, id)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return c.WaitGone(ctx, id)
}

// action runs a droplet action and waits until it completes.
func (c *Client) action(ctx context.Context, id int, name string, start func(context.Context) (*godo.Action, *godo.Response, error)) error {
	var a *godo.Action
	err := c.call(ctx, fmt.Sprintf("%s droplet %d", name, id), func(ctx context.Context) (r *godo.Response, err error) {
		a, r, err = start(ctx)
		return r, err
	})
	if err != nil {
		return err
	}
	return wait.Until(ctx, wait.Options{What: fmt.Sprintf("%s of droplet %d (action %d) to complete", name, id, a.ID), Interval: pollInterval, MaxInterval: maxPollInterval},
		func(ctx context.Context) (bool, string, error) {
			var got *godo.Action
			err := c.call(ctx, fmt.Sprintf("get action %d", a.ID), func(ctx context.Context) (r *godo.Response, err error) {
				got, r, err = c.api.DropletActions.Get(ctx, id, a.ID)
				return r, err
			})
			if err != nil {
				return false, "", err
			}
			switch got.Status {
			case godo.ActionCompleted:
				return true, "", nil
			case "errored":
				return false, "", fmt.Errorf("%s of droplet %d failed (action %d errored)", name, id, a.ID)
			}
			return false, "action " + got.Status, nil
		})
}

// Rename renames a droplet in place.
func (c *Client) Rename(ctx context.Context, id int, name string) error {
	return c.action(ctx, id, "rename", func(ctx context.Context) (*godo.Action, *godo.Response, error) {
		return c.api.DropletActions.Rename(ctx, id, name)
	})
}

// Resize changes a droplet's size in place (CPU and memory only, so it stays
// reversible): power off, resize, power on, as DigitalOcean requires.
func (c *Client) Resize(ctx context.Context, id int, size string) error {
	d, err := c.Get(ctx, id)
	if err != nil {
		return err
	}
	if d.Status != "off" {
		if err := c.action(ctx, id, "power_off", func(ctx context.Context) (*godo.Action, *godo.Response, error) {
			return c.api.DropletActions.PowerOff(ctx, id)
		}); err != nil {
			return err
		}
	}
	if err := c.action(ctx, id, "resize", func(ctx context.Context) (*godo.Action, *godo.Response, error) {
		return c.api.DropletActions.Resize(ctx, id, size, false)
	}); err != nil {
		return err
	}
	return c.PowerOn(ctx, id)
}

// PowerOn powers a droplet on and waits for the action.
func (c *Client) PowerOn(ctx context.Context, id int) error {
	return c.action(ctx, id, "power_on", func(ctx context.Context) (*godo.Action, *godo.Response, error) {
		return c.api.DropletActions.PowerOn(ctx, id)
	})
}

// SetTags moves a droplet from its current user tags to the wanted ones.
func (c *Client) SetTags(ctx context.Context, id int, current, wanted []string) error {
	resource := []godo.Resource{{ID: strconv.Itoa(id), Type: godo.DropletResourceType}}
	for _, t := range wanted {
		if slices.Contains(current, t) {
			continue
		}
		err := c.call(ctx, "create tag "+t, func(ctx context.Context) (r *godo.Response, err error) {
			_, r, err = c.api.Tags.Create(ctx, &godo.TagCreateRequest{Name: t})
			return r, err
		})
		if err != nil && !IsInvalid(err) { // 422: the tag exists already
			return err
		}
		if err := c.call(ctx, fmt.Sprintf("tag droplet %d with %s", id, t), func(ctx context.Context) (*godo.Response, error) {
			return c.api.Tags.TagResources(ctx, t, &godo.TagResourcesRequest{Resources: resource})
		}); err != nil {
			return err
		}
	}
	for _, t := range current {
		if slices.Contains(wanted, t) || t == ManagedTag {
			continue
		}
		err := c.call(ctx, fmt.Sprintf("untag droplet %d from %s", id, t), func(ctx context.Context) (*godo.Response, error) {
			return c.api.Tags.UntagResources(ctx, t, &godo.UntagResourcesRequest{Resources: resource})
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// EnsureSSHKey registers a public key with the account unless it is there already, and
// returns its fingerprint.
func (c *Client) EnsureSSHKey(ctx context.Context, name, publicKey, fingerprint string) (string, error) {
	err := c.call(ctx, "get ssh key "+fingerprint, func(ctx context.Context) (r *godo.Response, err error) {
		_, r, err = c.api.Keys.GetByFingerprint(ctx, fingerprint)
		return r, err
	})
	if err == nil {
		return fingerprint, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	var key *godo.Key
	err = c.call(ctx, "register ssh key "+name, func(ctx context.Context) (r *godo.Response, err error) {
		key, r, err = c.api.Keys.Create(ctx, &godo.KeyCreateRequest{Name: name, PublicKey: publicKey})
		return r, err
	})
	if IsInvalid(err) {
		// Another run registered the same key in the meantime: that is what we wanted.
		if _, _, getErr := c.api.Keys.GetByFingerprint(ctx, fingerprint); getErr == nil {
			return fingerprint, nil
		}
	}
	if err != nil {
		return "", err
	}
	return key.Fingerprint, nil
}
