package droplet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/godo"
)

// IdempotencyTagPrefix starts the tag that ties a droplet to the create that made it;
// droplets carry it besides ManagedTag for their whole life, and it is hidden like ManagedTag.
const IdempotencyTagPrefix = "microswarm-create:"

// IdempotencyTag is the tag for a per-create token.
func IdempotencyTag(token string) string { return IdempotencyTagPrefix + token }

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
