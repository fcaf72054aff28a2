package haproxy

import (
	"context"
	"fmt"
	"strconv"
)

// Routing is where a proxy sends requests: Active takes the traffic but CanaryPercent
// per cent, which goes to the other color.
type Routing struct {
	Active        Color
	CanaryPercent int
}

// ReadRouting reads the routing map of a running proxy.
func (c *Client) ReadRouting(ctx context.Context, mapPath string) (Routing, error) {
	entries, err := c.ShowMap(ctx, mapPath)
	if err != nil {
		return Routing{}, err
	}
	return routingFromEntries(mapPath, entries)
}

// routingFromEntries applies the frontend's rules: the first entry of a key wins, a
// missing active key means blue and a missing canary key 0.
func routingFromEntries(mapPath string, entries []MapEntry) (Routing, error) {
	routing := Routing{Active: Blue}
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.Key] {
			continue
		}
		seen[e.Key] = true
		switch e.Key {
		case MapKeyActive:
			routing.Active = Color(e.Value)
			if !routing.Active.Valid() {
				return Routing{}, fmt.Errorf("haproxy map %s: %s is %q, want blue or green", mapPath, MapKeyActive, e.Value)
			}
		case MapKeyCanary:
			n, err := strconv.Atoi(e.Value)
			if err != nil || n < 0 || n > 100 {
				return Routing{}, fmt.Errorf("haproxy map %s: %s is %q, want 0-100", mapPath, MapKeyCanary, e.Value)
			}
			routing.CanaryPercent = n
		}
	}
	return routing, nil
}

// SetActive sends every following request to color (one `set map`, which HAProxy
// applies before it reads the next request). It does not touch the map file.
func (c *Client) SetActive(ctx context.Context, mapPath string, color Color) error {
	if !color.Valid() {
		return fmt.Errorf("active color %q: want blue or green", color)
	}
	return c.PutMap(ctx, mapPath, MapKeyActive, string(color))
}

// SetCanary sends percent per cent of the following requests to the inactive color.
func (c *Client) SetCanary(ctx context.Context, mapPath string, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("canary %d%%: want 0-100", percent)
	}
	return c.PutMap(ctx, mapPath, MapKeyCanary, strconv.Itoa(percent))
}

// WriteMapFile stores the routing map file's content where the proxy loads it at start
// (through the node's SSH connection, a volume, ...).
type WriteMapFile func(ctx context.Context, content string) error

// ApplyRouting makes a running proxy route as want, and its map file say so, so a
// restart or reload keeps it. The file is written first: a reload between the two steps
// then already loads the new routing, where the other order would silently revert it.
// If the proxy refuses the change, the file is put back as the proxy still routes.
// Active changes before the canary share, so a switch is one write; in between, at most
// the old canary share goes to the other color, which is healthy either way.
func (c *Client) ApplyRouting(ctx context.Context, mapPath string, want Routing, writeFile WriteMapFile) error {
	content, err := RenderMap(want.Active, want.CanaryPercent)
	if err != nil {
		return err
	}
	current, err := c.ReadRouting(ctx, mapPath)
	if err != nil {
		return err
	}
	if err := writeFile(ctx, content); err != nil {
		return fmt.Errorf("writing the routing map file: %w", err)
	}
	err = c.SetActive(ctx, mapPath, want.Active)
	if err == nil {
		err = c.SetCanary(ctx, mapPath, want.CanaryPercent)
	}
	if err == nil {
		return nil
	}
	// Put the file back as the proxy routes now (its active write may have happened).
	now, readErr := c.ReadRouting(ctx, mapPath)
	if readErr != nil {
		now = current
	}
	if restore, renderErr := RenderMap(now.Active, now.CanaryPercent); renderErr == nil {
		if writeErr := writeFile(ctx, restore); writeErr != nil {
			return fmt.Errorf("%w; and restoring the map file failed: %v", err, writeErr)
		}
	}
	return err
}
