package localcloud

import (
	"net/http"
	"time"
)

type dropletActionRequest struct {
	Type string `json:"type"`
	Name string `json:"name"` // rename
	Size string `json:"size"` // resize
	Disk bool   `json:"disk"` // resize
}

// actionsByTag are the action types DO allows on every droplet with a tag at once.
var actionsByTag = map[string]bool{
	"power_cycle": true, "power_on": true, "power_off": true, "shutdown": true,
	"enable_private_networking": true, "enable_ipv6": true, "enable_backups": true, "disable_backups": true,
}

func (c *Cloud) postDropletAction(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id")
	if err != nil {
		return err
	}
	var req dropletActionRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	c.mu.Lock()
	d := c.st.droplet(id)
	if d == nil {
		c.mu.Unlock()
		return errNotFound()
	}
	a, run, err := c.beginActionLocked(d, req)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	rendered := renderAction(a)
	c.saveLocked()
	c.mu.Unlock()

	if run != nil {
		c.tasks.Go(run)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"action": rendered})
	return nil
}

func (c *Cloud) postDropletActionByTag(w http.ResponseWriter, r *http.Request) error {
	tag := r.URL.Query().Get("tag_name")
	if tag == "" {
		return errNotFound()
	}
	var req dropletActionRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if !actionsByTag[req.Type] {
		return errUnprocessable("%q is not an action type that can be run by tag.", req.Type)
	}

	c.mu.Lock()
	var tagged []*droplet
	for _, d := range c.sortedDropletsLocked() {
		if d.hasTag(tag) {
			if c.st.pendingAction(d.ID) != nil {
				c.mu.Unlock()
				return errUnprocessable("Droplet %d already has a pending event.", d.ID)
			}
			tagged = append(tagged, d)
		}
	}
	rendered := []actionJSON{}
	var runs []func()
	for _, d := range tagged {
		a, run, err := c.beginActionLocked(d, req)
		if err != nil {
			c.saveLocked()
			c.mu.Unlock()
			return err
		}
		rendered = append(rendered, renderAction(a))
		if run != nil {
			runs = append(runs, run)
		}
	}
	c.saveLocked()
	c.mu.Unlock()

	for _, run := range runs {
		c.tasks.Go(run)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"actions": rendered})
	return nil
}

// beginActionLocked validates and records an action on d. Engine work, if any, is returned
// as run, for the caller to start once c.mu is released. c.mu must be held.
func (c *Cloud) beginActionLocked(d *droplet, req dropletActionRequest) (a *action, run func(), err error) {
	if c.st.pendingAction(d.ID) != nil {
		return nil, nil, errUnprocessable("Droplet already has a pending event.")
	}
	now := time.Now()
	completedAt := func() (*action, func(), error) {
		a := c.st.newAction(req.Type, d, now)
		a.finish(actionCompleted, now)
		return a, nil, nil
	}
	id, containerID := d.ID, d.ContainerID

	switch req.Type {
	case "power_off", "shutdown":
		if d.Status == statusOff {
			return completedAt()
		}
		if containerID == "" {
			return nil, nil, errUnprocessable("Droplet is still being created.")
		}
		a := c.st.newAction(req.Type, d, now)
		graceful := req.Type == "shutdown"
		return a, func() {
			err := c.nodes.stopNode(c.ctx, containerID, graceful)
			c.finishPowerOff(id, a, err)
		}, nil

	case "power_on", "reboot", "power_cycle":
		if req.Type == "power_on" && d.Status == statusActive {
			return completedAt()
		}
		if containerID == "" {
			return nil, nil, errUnprocessable("Droplet is still being created.")
		}
		a := c.st.newAction(req.Type, d, now)
		c.stopWaitingLocked(id)
		if d.Status == statusOff {
			return a, func() { c.finishBoot(id, a, c.nodes.startNode(c.ctx, containerID)) }, nil
		}
		graceful := req.Type == "reboot"
		if !graceful {
			d.Status = statusOff // a power cycle cuts the power: the droplet is off until it boots
		}
		return a, func() { c.finishBoot(id, a, c.nodes.restartNode(c.ctx, containerID, graceful)) }, nil

	case "rename":
		if err := validDropletName(req.Name); err != nil {
			return nil, nil, err
		}
		d.Name = req.Name // the hostname inside stays, as on DO
		return completedAt()

	case "resize":
		size, ok := lookupSize(req.Size)
		if !ok {
			return nil, nil, errUnprocessable("You specified an invalid size for Droplet resize.")
		}
		if d.Status != statusOff {
			return nil, nil, errUnprocessable("Droplet is currently on. Please power it off to run this event.")
		}
		if size.Disk < d.Disk {
			return nil, nil, errUnprocessable("This size is not available because it has a smaller disk.")
		}
		d.Size = size.Slug
		if req.Disk {
			d.Disk = size.Disk
		}
		return completedAt()

	case "enable_ipv6", "enable_private_networking", "enable_backups", "disable_backups":
		feature := map[string]string{
			"enable_ipv6": "ipv6", "enable_private_networking": "private_networking",
			"enable_backups": "backups", "disable_backups": "backups",
		}[req.Type]
		d.Features = removeString(d.Features, feature)
		if req.Type != "disable_backups" {
			d.Features = append(d.Features, feature)
		}
		return completedAt()
	}
	return nil, nil, errUnprocessable("%q is not a supported action type.", req.Type)
}

// finishPowerOff records the end of a power_off or shutdown.
func (c *Cloud) finishPowerOff(id int, a *action, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return // closing: the next Start settles the action from the container's state
	}
	if err != nil {
		c.logf("droplet %d: %s: %v", id, a.Type, err)
		a.finish(actionErrored, time.Now())
	} else {
		if d := c.st.droplet(id); d != nil {
			d.Status = statusOff
		}
		a.finish(actionCompleted, time.Now())
	}
	c.saveLocked()
}

// finishBoot follows a started or restarted node until it is ready, which completes a.
func (c *Cloud) finishBoot(id int, a *action, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	d := c.st.droplet(id)
	switch {
	case err != nil:
		c.logf("droplet %d: %s: %v", id, a.Type, err)
		a.finish(actionErrored, time.Now())
	case d == nil:
		a.finish(actionErrored, time.Now())
	default:
		c.awaitActiveLocked(d)
	}
	c.saveLocked()
}

func removeString(list []string, s string) []string {
	out := list[:0:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
