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
