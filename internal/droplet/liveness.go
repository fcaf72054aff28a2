package droplet

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// DownError says the API reports the droplet at an address powered off or archived: what
// ran there cannot answer, so there is no point in waiting for it to.
type DownError struct {
	Address string
	Droplet *Droplet
}

func (e *DownError) Error() string {
	return fmt.Sprintf("droplet %d (%s) at %s is %s, says the DigitalOcean API", e.Droplet.ID, e.Droplet.Name, e.Address, e.Droplet.Status)
}

// Liveness tells whether the droplet at an address is down. A refresh or a delete asks it
// before probing a node over SSH, so a node the API reports off costs no connect timeout.
// A listing of the droplets this provider manages is shared for MaxAge to say a node is
// up; a node is said down only from a listing made for the question, since an apply that
// replaces a droplet may hand its address to the new one a moment later. The zero value is
// ready.
type Liveness struct {
	// MaxAge is how long a listing may say an address is up (default 5 s).
	MaxAge time.Duration

	mu     sync.Mutex
	at     time.Time
	byAddr map[string]*Droplet
}

// Down returns a *DownError when addr (a public or private IPv4 address) belongs to a
// managed droplet that is off or archived; nil when it is up, is not a managed droplet's,
// or the API could not say (the caller probes then, as before).
func (l *Liveness) Down(ctx context.Context, c *Client, addr string) error {
	if l == nil || c == nil || addr == "" {
		return nil
	}
	for _, fresh := range []bool{false, true} {
		byAddr, err := l.listing(ctx, c, fresh)
		if err != nil {
			return nil
		}
		d, ok := byAddr[addr]
		if !ok || (d.Status != "off" && d.Status != "archive") {
			return nil
		}
		if fresh {
			return &DownError{Address: addr, Droplet: d}
		}
	}
	return nil
}

func (l *Liveness) listing(ctx context.Context, c *Client, fresh bool) (map[string]*Droplet, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	maxAge := l.MaxAge
	if maxAge <= 0 {
		maxAge = 5 * time.Second
	}
	if !fresh && l.byAddr != nil && time.Since(l.at) < maxAge {
		return l.byAddr, nil
	}
	byAddr := map[string]*Droplet{}
	err := c.eachTagged(ctx, ManagedTag, func(d *Droplet) {
		for _, a := range []string{d.PublicIPv4, d.PrivateIPv4} {
			if a != "" {
				byAddr[a] = d
			}
		}
	})
	if err != nil {
		return nil, err
	}
	l.byAddr, l.at = byAddr, time.Now()
	return byAddr, nil
}
