package droplet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
			return out, nil // no such tag: no droplet carries it
		}
		if err != nil {
			return nil, err
		}
		for i := range page {
			if d := fromGodo(&page[i]); d.Name == name && d.Region == region {
				out = append(out, d)
			}
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return out, nil
		}
		next, err := resp.Links.CurrentPage()
		if err != nil {
			return nil, fmt.Errorf("list droplets: reading the page number: %w", err)
		}
		opt.Page = next + 1
	}
}

// UnclaimedError says that droplets an earlier run of the same create left pending
// cannot be adopted: with no stack id, a dead run of this configuration may have been
// this workspace's or another's, and the other's state may hold them.
type UnclaimedError struct {
	Droplets []*Droplet
}

func (e *UnclaimedError) Error() string {
	ids := make([]string, 0, len(e.Droplets))
	for _, d := range e.Droplets {
		ids = append(ids, strconv.Itoa(d.ID))
	}
	return fmt.Sprintf("droplet(s) %s, named %s, were left pending by a run of an identical create (same name, settings "+
		"and SSH key, no stack id) that is no longer going; without a stack id nothing tells whether that run was this "+
		"workspace's or another workspace's", strings.Join(ids, ", "), e.Droplets[0].Name)
}

// Create creates a droplet, or adopts one a dead earlier run of the same create left:
// it carries spec.PendingTag (no state is known to hold it), the same name and region,
// an idempotency token (the key to the host keys that create handed it), and the tag of
// a run whose lease lapsed (see RunTagPrefix). A droplet of a run still going (another
// workspace applying right now) is never adopted, and neither is one a Read claimed. With
// no stack id (spec.StackID) a dead run's droplet is not adopted either: Create fails
// with *UnclaimedError before making anything (see Unclaimed). Within this Client's run,
// creates that share a pending tag (count = 3 with one name) take turns, and no droplet
// is handed to two of them. An adopted droplet is retagged with this run.
//
// POST /v2/droplets is not idempotent: a 5xx or a lost answer can hide a droplet that was
// made. So before each retry the droplets carrying the idempotency tag are listed again
// (for up to the API's list lag), and one that appeared is the one this call made
// (adopted is false: it carries this call's user data).
func (c *Client) Create(ctx context.Context, spec Spec) (d *Droplet, adopted bool, err error) {
	tags := []string{ManagedTag}
	if spec.PendingTag != "" {
		unlock := c.adopt.lock(spec.PendingTag)
		defer unlock()
		release, err := c.lease.acquire(ctx)
		if err != nil {
			return nil, false, err
		}
		defer release()
		existing, err := c.adoptable(ctx, spec)
		if err != nil {
			return nil, false, err
		}
		if existing != nil {
			c.adopt.hold(existing.ID)
			if err := c.retagRun(ctx, existing); err != nil {
				return nil, false, err
			}
			return existing, true, nil
		}
		tags = append(tags, spec.PendingTag, RunTagPrefix+c.lease.run)
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
		if status == http.StatusTooManyRequests {
			return false, nil // a rate limit: the request was not processed
		}
		if spec.IdempotencyTag == "" {
			return true, nil // nothing to re-check by: do not risk a duplicate
		}
		found, err := c.findCreated(ctx, spec)
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

// findCreated looks for the droplet a create whose answer was lost may have made, by its
// idempotency tag, for as long as the API may take to list a new droplet by tag.
func (c *Client) findCreated(ctx context.Context, spec Spec) (*Droplet, error) {
	deadline := time.Now().Add(c.listLag)
	for {
		found, err := c.findTagged(ctx, spec.IdempotencyTag, spec.Name, spec.Region, nil)
		if err != nil || found != nil || !time.Now().Before(deadline) {
			return found, err
		}
		timer := time.NewTimer(min(time.Until(deadline), time.Second))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// adoptable finds the droplet Create may adopt for spec: pending with spec's tag, a
// token, not held by this run, made by a dead run. With no stack id a dead run's
// droplet is an *UnclaimedError instead.
func (c *Client) adoptable(ctx context.Context, spec Spec) (*Droplet, error) {
	candidates, err := c.listTagged(ctx, spec.PendingTag, spec.Name, spec.Region)
	if err != nil {
		return nil, err
	}
	var unclaimed []*Droplet
	for _, d := range candidates {
		if d.IdempotencyToken == "" || c.adopt.held(d.ID) {
			continue
		}
		state, err := c.runState(ctx, d.RunID)
		if err != nil {
			return nil, err
		}
		if state != RunDead {
			continue // another run's create in flight, or in a state a run saved
		}
		if spec.StackID == "" {
			unclaimed = append(unclaimed, d)
			continue
		}
		return d, nil
	}
	if len(unclaimed) > 0 {
		return nil, &UnclaimedError{Droplets: unclaimed}
	}
	return nil, nil
}

// Unclaimed returns the droplets that a create of spec would find pending with its tag
// and that no live run holds, without waiting for a lease to lapse: for a plan, which
// must refuse (with no stack id) before anything is created.
func (c *Client) Unclaimed(ctx context.Context, spec Spec) ([]*Droplet, error) {
	candidates, err := c.listTagged(ctx, spec.PendingTag, spec.Name, spec.Region)
	if err != nil {
		return nil, err
	}
	var out []*Droplet
	for _, d := range candidates {
		if d.IdempotencyToken == "" {
			continue
		}
		live, err := c.runLiveNow(ctx, d.RunID)
		if err != nil {
			return nil, err
		}
		if !live {
			out = append(out, d)
		}
	}
	return out, nil
}

// retagRun moves an adopted droplet to this run, so this run's lease covers it.
func (c *Client) retagRun(ctx context.Context, d *Droplet) error {
	resource := []godo.Resource{{ID: strconv.Itoa(d.ID), Type: godo.DropletResourceType}}
	tag := RunTagPrefix + c.lease.run
	if err := c.createTag(ctx, tag); err != nil {
		return err
	}
	if err := c.call(ctx, fmt.Sprintf("tag droplet %d with %s", d.ID, tag), func(ctx context.Context) (*godo.Response, error) {
		return c.api.Tags.TagResources(ctx, tag, &godo.TagResourcesRequest{Resources: resource})
	}); err != nil {
		return err
	}
	if d.RunID != "" && d.RunID != c.lease.run {
		old := RunTagPrefix + d.RunID
		err := c.call(ctx, fmt.Sprintf("untag droplet %d from %s", d.ID, old), func(ctx context.Context) (*godo.Response, error) {
			return c.api.Tags.UntagResources(ctx, old, &godo.UntagResourcesRequest{Resources: resource})
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	d.RunID = c.lease.run
	return nil
}

// Claim marks a droplet as held by a state (call it from a Read, which only runs for
// resources in state, never at the end of a create: terraform may die before it saves
// the state): the droplet loses its pending and run tags, so no later create adopts it,
// and each tag, once no droplet carries it, is deleted (tags outlive their droplets). A
// droplet already gone, or not pending, is success.
func (c *Client) Claim(ctx context.Context, d *Droplet) error {
	if !d.Pending && d.RunID == "" {
		return nil
	}
	var tags []string
	if d.Pending {
		tags = append(tags, d.PendingTag)
	}
	if d.RunID != "" {
		tags = append(tags, RunTagPrefix+d.RunID)
	}
	if d.Pending {
		unlock := c.adopt.lock(d.PendingTag)
		defer unlock()
	}
	resource := []godo.Resource{{ID: strconv.Itoa(d.ID), Type: godo.DropletResourceType}}
	for _, tag := range tags {
		err := c.call(ctx, fmt.Sprintf("claim droplet %d (untag %s)", d.ID, tag), func(ctx context.Context) (*godo.Response, error) {
			return c.api.Tags.UntagResources(ctx, tag, &godo.UntagResourcesRequest{Resources: resource})
		})
		if errors.Is(err, ErrNotFound) {
			continue // the droplet, or the tag, is gone
		}
		if err != nil {
			return err
		}
	}
	// Tidying only: the droplet is claimed whatever happens here.
	for _, tag := range tags {
		if left, err := c.hasDroplets(ctx, tag); err == nil && !left {
			_ = c.deleteTag(ctx, tag)
			if run, isRun := strings.CutPrefix(tag, RunTagPrefix); isRun {
				_ = c.deleteTag(ctx, LeaseTagPrefix+run+":"+leaseDone) // the run's last droplet is in a state
			}
		}
	}
	d.Pending, d.PendingTag, d.RunID = false, "", ""
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

// RemoveIdempotencyTag deletes the account's tag of a create token once no droplet
// carries it (deleting a tag would untag whatever still does): the tag names one node's
// create, and without this every node ever made would leave one behind in the account.
// A tag already gone is fine.
func (c *Client) RemoveIdempotencyTag(ctx context.Context, token string) error {
	tag := IdempotencyTag(token)
	busy, err := c.hasDroplets(ctx, tag)
	if err != nil || busy {
		return err
	}
	return c.deleteTag(ctx, tag)
}

// TagExists reports whether the account has the tag.
func (c *Client) TagExists(ctx context.Context, name string) (bool, error) {
	err := c.call(ctx, "get tag "+name, func(ctx context.Context) (r *godo.Response, err error) {
		_, r, err = c.api.Tags.Get(ctx, name)
		return r, err
	})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
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
