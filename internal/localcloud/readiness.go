package localcloud

import (
	"context"
	"errors"
	"time"
)

const (
	// readyTimeout bounds how long a node may take to answer before its action errors.
	readyTimeout = 5 * time.Minute
	readyPoll    = 250 * time.Millisecond
)

// readinessWaiter watches one droplet until its node is ready; the droplet then turns
// active and its pending create/power_on/reboot/power_cycle action completes.
type readinessWaiter struct {
	cancel context.CancelFunc
}

// awaitActiveLocked (re)starts watching d; c.mu must be held and d.ContainerID set.
func (c *Cloud) awaitActiveLocked(d *droplet) {
	c.stopWaitingLocked(d.ID)
	ctx, cancel := context.WithTimeout(c.ctx, readyTimeout)
	w := &readinessWaiter{cancel: cancel}
	c.waiters[d.ID] = w
	id, containerID, ip, userData := d.ID, d.ContainerID, d.PublicIP, d.UserData

	c.tasks.Go(func() {
		defer cancel()
		started := time.Now()
		ready, reason := c.pollReady(ctx, id, containerID)

		c.mu.Lock()
		defer c.mu.Unlock()
		if c.waiters[id] != w {
			return // superseded or stopped: someone else owns this droplet's status now
		}
		delete(c.waiters, id)
		d := c.st.droplet(id)
		if d == nil {
			return
		}
		pending := c.st.pendingAction(id)
		if pending != nil && !completesWhenActive(pending.Type) {
			pending = nil
		}
		switch {
		case ready:
			d.Status = statusActive
			c.enforceFirewalls() // a firewall that changed while the rules went in
			if pending != nil && pending.Type == "create" {
				c.startFirstBoot(id, containerID, userData)
			}
			if pending != nil {
				pending.finish(actionCompleted, time.Now())
			}
			c.logf("droplet %d (%s) active at %s after %s", id, d.Name, ip, time.Since(started).Round(10*time.Millisecond))
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			if pending != nil {
				pending.finish(actionErrored, time.Now())
			}
			c.logf("droplet %d (%s) not ready after %s: %s", id, d.Name, readyTimeout, reason)
		default:
			return // the emulator is closing; a kept droplet resumes waiting on the next Start
		}
		c.saveLocked()
	})
}

// startFirstBoot plays cloud-init's last stages on a new droplet, in the background: the
// droplet is active already, as on DigitalOcean, while its user data still runs.
func (c *Cloud) startFirstBoot(id int, containerID, userData string) {
	plan, err := planFirstBoot(userData)
	if err != nil {
		c.logf("droplet %d: first boot: %v", id, err)
		return
	}
	c.tasks.Go(func() {
		if err := c.nodes.firstBoot(context.WithoutCancel(c.ctx), containerID, plan); err != nil {
			c.logf("droplet %d: first boot: %v", id, err)
		}
	})
}

// stopWaitingLocked cancels the droplet's waiter, if any; c.mu must be held.
func (c *Cloud) stopWaitingLocked(id int) {
	if w, ok := c.waiters[id]; ok {
		w.cancel()
		delete(c.waiters, id)
	}
}

// pollReady checks the node until it is ready or ctx ends; reason says what was missing last.
// A ready node gets its cloud firewall rules before it counts as ready: on DO a firewall
// covers a droplet from its first boot, and a restarted node has lost its rules.
func (c *Cloud) pollReady(ctx context.Context, id int, containerID string) (bool, string) {
	ticker := time.NewTicker(readyPoll)
	defer ticker.Stop()
	for {
		ready, reason := c.nodes.nodeReady(ctx, containerID)
		if ready {
			err := c.applyNodeFirewall(ctx, id, true)
			if err == nil {
				return true, ""
			}
			reason = err.Error()
		}
		select {
		case <-ctx.Done():
			return false, reason
		case <-ticker.C:
		}
	}
}

func completesWhenActive(actionType string) bool {
	switch actionType {
	case "create", "power_on", "reboot", "power_cycle":
		return true
	}
	return false
}
