package droplet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/digitalocean/godo"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

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
