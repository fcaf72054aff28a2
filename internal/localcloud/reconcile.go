package localcloud

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
)

// reconcile makes the loaded state agree with the droplet containers that exist: droplets
// whose container is gone are dropped, labelled containers the state does not know are
// adopted, and every droplet's status follows its container. Runs once, before serving.
func (c *Cloud) reconcile(ctx context.Context) error {
	containers, err := c.nodes.listNodes(ctx)
	if err != nil {
		return err
	}
	byContainer := map[string]container.Summary{}
	byDroplet := map[int]container.Summary{}
	for _, s := range containers {
		byContainer[s.ID] = s
		if id, err := strconv.Atoi(s.Labels[labelID]); err == nil {
			byDroplet[id] = s
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	claimed := map[string]bool{}
	var kept []*droplet
	for _, d := range c.st.Droplets {
		s, ok := byContainer[d.ContainerID]
		if !ok {
			s, ok = byDroplet[d.ID]
		}
		if !ok || claimed[s.ID] {
			c.logf("droplet %d (%s): its container is gone; dropped", d.ID, d.Name)
			if a := c.st.pendingAction(d.ID); a != nil {
				a.finish(actionErrored, now)
			}
			continue
		}
		claimed[s.ID] = true
		d.ContainerID = s.ID
		kept = append(kept, d)
	}
	for _, s := range containers {
		if claimed[s.ID] {
			continue
		}
		d, ok := dropletFromLabels(s)
		if !ok {
			continue
		}
		if c.st.droplet(d.ID) != nil {
			continue // a second container claiming a known droplet id: leave it alone
		}
		c.logf("droplet %d (%s): adopted from container %s", d.ID, d.Name, shortID(s.ID))
		claimed[s.ID] = true
		kept = append(kept, d)
		c.st.NextDropletID = max(c.st.NextDropletID, d.ID+1)
	}
	c.st.Droplets = kept

	for _, d := range c.st.Droplets {
		node, err := c.nodes.inspectNode(ctx, d.ContainerID)
		if err != nil {
			return err
		}
		if node.publicIP != "" {
			d.PublicIP = node.publicIP
		}
		if node.privateIP != "" {
			d.PrivateIP = node.privateIP
		}
		pending := c.st.pendingAction(d.ID)
		if node.running {
			if pending != nil && !completesWhenActive(pending.Type) {
				pending.finish(actionErrored, now)
			}
			c.awaitActiveLocked(d)
			continue
		}
		d.Status = statusOff
		if pending != nil {
			if pending.Type == "power_off" || pending.Type == "shutdown" {
				pending.finish(actionCompleted, now)
			} else {
				pending.finish(actionErrored, now)
			}
		}
	}
	c.saveLocked()
	return nil
}

// dropletFromLabels rebuilds a droplet from what its container's labels recorded at create.
func dropletFromLabels(s container.Summary) (*droplet, bool) {
	id, err := strconv.Atoi(s.Labels[labelID])
	if err != nil {
		return nil, false
	}
	size, ok := lookupSize(s.Labels[labelSize])
	if !ok {
		size = sizeCatalog[0]
	}
	created, err := time.Parse(time.RFC3339, s.Labels[labelCreated])
	if err != nil {
		created = time.Unix(s.Created, 0).UTC()
	}
	var tags []string
	if t := s.Labels[labelTags]; t != "" {
		tags = strings.Split(t, ",")
	}
	return &droplet{
		ID:          id,
		Name:        s.Labels[labelName],
		Region:      s.Labels[labelRegion],
		Size:        size.Slug,
		Disk:        size.Disk,
		Image:       s.Labels[labelImage],
		Tags:        tags,
		VPCUUID:     s.Labels[labelVPC],
		Features:    []string{"private_networking"},
		Status:      statusNew,
		CreatedAt:   created,
		ContainerID: s.ID,
	}, true
}
