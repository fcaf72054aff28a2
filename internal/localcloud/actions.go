package localcloud

import (
	"net/http"
	"time"
)

type actionJSON struct {
	ID           int         `json:"id"`
	Status       string      `json:"status"`
	Type         string      `json:"type"`
	StartedAt    string      `json:"started_at"`
	CompletedAt  *string     `json:"completed_at"`
	ResourceID   int         `json:"resource_id"`
	ResourceType string      `json:"resource_type"`
	Region       *regionJSON `json:"region"`
	RegionSlug   string      `json:"region_slug"`
}

func renderAction(a *action) actionJSON {
	out := actionJSON{
		ID: a.ID, Status: a.Status, Type: a.Type,
		StartedAt:  a.StartedAt.UTC().Format(time.RFC3339),
		ResourceID: a.ResourceID, ResourceType: a.ResourceType, RegionSlug: a.RegionSlug,
	}
	if a.CompletedAt != nil {
		s := a.CompletedAt.UTC().Format(time.RFC3339)
		out.CompletedAt = &s
	}
	if region, ok := lookupRegion(a.RegionSlug); ok {
		out.Region = &region
	}
	return out
}

// renderActionsLocked lists actions newest first, as DO does; keep filters them.
func (c *Cloud) renderActionsLocked(keep func(*action) bool) []actionJSON {
	out := []actionJSON{}
	for i := len(c.st.Actions) - 1; i >= 0; i-- {
		if a := c.st.Actions[i]; keep(a) {
			out = append(out, renderAction(a))
		}
	}
	return out
}

func (c *Cloud) listActions(w http.ResponseWriter, r *http.Request) error {
	c.mu.Lock()
	all := c.renderActionsLocked(func(*action) bool { return true })
	c.mu.Unlock()
	page, l, m := paginate(r, all)
	writeJSON(w, http.StatusOK, map[string]any{"actions": page, "links": l, "meta": m})
	return nil
}

func (c *Cloud) getAction(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "action")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.st.action(id)
	if a == nil {
		return errNotFound()
	}
	writeJSON(w, http.StatusOK, map[string]any{"action": renderAction(a)})
	return nil
}

func (c *Cloud) listDropletActions(w http.ResponseWriter, r *http.Request) error {
	dropletID, err := pathInt(r, "id")
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.st.droplet(dropletID) == nil {
		c.mu.Unlock()
		return errNotFound()
	}
	mine := c.renderActionsLocked(func(a *action) bool {
		return a.ResourceType == "droplet" && a.ResourceID == dropletID
	})
	c.mu.Unlock()
	page, l, m := paginate(r, mine)
	writeJSON(w, http.StatusOK, map[string]any{"actions": page, "links": l, "meta": m})
	return nil
}

func (c *Cloud) getDropletAction(w http.ResponseWriter, r *http.Request) error {
	dropletID, err := pathInt(r, "id")
	if err != nil {
		return err
	}
	actionID, err := pathInt(r, "action")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.st.action(actionID)
	if a == nil || a.ResourceType != "droplet" || a.ResourceID != dropletID {
		return errNotFound()
	}
	writeJSON(w, http.StatusOK, map[string]any{"action": renderAction(a)})
	return nil
}
