package droplet

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLivenessDown: an address of a managed droplet that is off or archived is down; an
// active one's, an unmanaged one's and an unknown address are not (the caller probes); a
// listing answers for MaxAge, then the API is asked again.
func TestLivenessDown(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	add := func(id int, status, public, private string, tags ...string) map[string]any {
		d := map[string]any{"id": id, "name": "n" + public, "status": status, "tags": tags,
			"networks": map[string]any{"v4": []any{
				map[string]any{"ip_address": public, "type": "public"},
				map[string]any{"ip_address": private, "type": "private"},
			}}}
		api.mu.Lock()
		api.droplets = append(api.droplets, d)
		api.mu.Unlock()
		return d
	}
	add(1, "active", "203.0.113.1", "10.0.0.1", ManagedTag)
	off := add(2, "off", "203.0.113.2", "10.0.0.2", ManagedTag)
	add(3, "archive", "203.0.113.3", "10.0.0.3", ManagedTag)
	add(4, "off", "203.0.113.4", "10.0.0.4") // not the provider's

	l := &Liveness{MaxAge: time.Hour}
	ctx := context.Background()
	for addr, down := range map[string]bool{
		"203.0.113.1": false, "10.0.0.1": false,
		"203.0.113.2": true, "10.0.0.2": true,
		"203.0.113.3": true,
		"203.0.113.4": false, "198.51.100.9": false,
	} {
		err := l.Down(ctx, c, addr)
		var de *DownError
		if got := errors.As(err, &de); got != down {
			t.Errorf("%s: down=%v (%v), want %v", addr, got, err, down)
		}
	}
	// A replacement takes the address of the droplet that was off a moment ago: "down" is
	// never answered from a shared listing.
	api.mu.Lock()
	off["status"] = "active"
	api.mu.Unlock()
	if err := l.Down(ctx, c, "203.0.113.2"); err != nil {
		t.Errorf("the address of a droplet powered on (or replaced) since the last listing: %v", err)
	}
	// "Up" may come from a shared listing: a node that went off since is probed, as before.
	api.mu.Lock()
	off["status"] = "off"
	api.mu.Unlock()
	if err := l.Down(ctx, c, "203.0.113.2"); err != nil {
		t.Errorf("a listing younger than MaxAge was not used for up: %v", err)
	}
	l.MaxAge = time.Nanosecond
	if l.Down(ctx, c, "203.0.113.2") == nil {
		t.Error("a droplet powered off, after the listing aged: not down")
	}
}
