package localcloud

import (
	"net/http"
	"regexp"
	"strconv"
)

var tagPattern = regexp.MustCompile(`^[a-zA-Z0-9_:-]{1,255}$`)

func validTagName(name string) error {
	if !tagPattern.MatchString(name) {
		return errUnprocessable("tag names must be 1 to 255 characters long and may only contain letters, numbers, colons, dashes and underscores")
	}
	return nil
}

type tagRequest struct {
	Name string `json:"name"`
}

type tagResourcesRequest struct {
	Resources []struct {
		ID   string `json:"resource_id"`
		Type string `json:"resource_type"`
	} `json:"resources"`
}

type tagJSON struct {
	Name      string           `json:"name"`
	Resources taggedCountsJSON `json:"resources"`
}

type taggedCountsJSON struct {
	Count           int                `json:"count"`
	LastTaggedURI   string             `json:"last_tagged_uri,omitempty"`
	Droplets        taggedDropletsJSON `json:"droplets"`
	Images          countJSON          `json:"images"`
	Volumes         countJSON          `json:"volumes"`
	VolumeSnapshots countJSON          `json:"volume_snapshots"`
	Databases       countJSON          `json:"databases"`
}

type taggedDropletsJSON struct {
	Count         int          `json:"count"`
	LastTagged    *dropletJSON `json:"last_tagged,omitempty"`
	LastTaggedURI string       `json:"last_tagged_uri,omitempty"`
}

type countJSON struct {
	Count int `json:"count"`
}

// renderTagLocked counts the droplets carrying name; c.mu must be held.
func (c *Cloud) renderTagLocked(r *http.Request, name string) tagJSON {
	t := tagJSON{Name: name}
	var last *droplet
	for _, d := range c.sortedDropletsLocked() {
		if d.hasTag(name) {
			t.Resources.Droplets.Count++
			last = d
		}
	}
	t.Resources.Count = t.Resources.Droplets.Count
	if last != nil {
		rendered := c.renderDroplet(last)
		uri := baseURL(r) + "v2/droplets/" + strconv.Itoa(last.ID)
		t.Resources.Droplets.LastTagged = &rendered
		t.Resources.Droplets.LastTaggedURI = uri
		t.Resources.LastTaggedURI = uri
	}
	return t
}

func (c *Cloud) listTags(w http.ResponseWriter, r *http.Request) error {
	c.mu.Lock()
	tags := make([]tagJSON, 0, len(c.st.Tags))
	for _, name := range c.st.Tags {
		tags = append(tags, c.renderTagLocked(r, name))
	}
	c.mu.Unlock()
	page, l, m := paginate(r, tags)
	writeJSON(w, http.StatusOK, map[string]any{"tags": page, "links": l, "meta": m})
	return nil
}

func (c *Cloud) createTag(w http.ResponseWriter, r *http.Request) error {
	var req tagRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := validTagName(req.Name); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.addTag(req.Name)
	c.saveLocked()
	writeJSON(w, http.StatusCreated, map[string]any{"tag": c.renderTagLocked(r, req.Name)})
	return nil
}

func (c *Cloud) getTag(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.st.hasTag(name) {
		return errNotFound()
	}
	writeJSON(w, http.StatusOK, map[string]any{"tag": c.renderTagLocked(r, name)})
	return nil
}

func (c *Cloud) deleteTag(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.st.hasTag(name) {
		return errNotFound()
	}
	c.st.Tags = removeString(c.st.Tags, name)
	for _, d := range c.st.Droplets {
		d.Tags = removeString(d.Tags, name)
	}
	c.saveLocked()
	c.enforceFirewalls()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *Cloud) tagResources(w http.ResponseWriter, r *http.Request) error {
	return c.changeTagging(w, r, func(d *droplet, tag string) {
		if !d.hasTag(tag) {
			d.Tags = append(d.Tags, tag)
		}
	})
}

func (c *Cloud) untagResources(w http.ResponseWriter, r *http.Request) error {
	return c.changeTagging(w, r, func(d *droplet, tag string) {
		d.Tags = removeString(d.Tags, tag)
	})
}

// changeTagging applies change to every droplet the request names, after checking them all.
func (c *Cloud) changeTagging(w http.ResponseWriter, r *http.Request, change func(*droplet, string)) error {
	name := r.PathValue("name")
	var req tagResourcesRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if len(req.Resources) == 0 {
		return errUnprocessable("resources is required")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.st.hasTag(name) {
		return errNotFound()
	}
	var targets []*droplet
	for _, res := range req.Resources {
		if res.Type != "droplet" {
			return errUnprocessable("resource_type %q is not supported here", res.Type)
		}
		id, err := strconv.Atoi(res.ID)
		if err != nil {
			return errUnprocessable("resource_id %q is not a droplet id", res.ID)
		}
		d := c.st.droplet(id)
		if d == nil {
			return errNotFound()
		}
		targets = append(targets, d)
	}
	for _, d := range targets {
		change(d, name)
	}
	c.saveLocked()
	c.enforceFirewalls()
	w.WriteHeader(http.StatusNoContent)
	return nil
}
