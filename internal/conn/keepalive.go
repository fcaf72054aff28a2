package conn

import (
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultKeepaliveInterval: with the default connect timeout, a host that vanished in
// the middle of a step is given up on within 45 s.
const DefaultKeepaliveInterval = 15 * time.Second

// keepAlive asks c for a keepalive reply every KeepaliveInterval while it is open, and
// closes it when one goes unanswered for the connect timeout. A host that vanished
// without closing the connection (powered off, its network cut) would otherwise leave
// whatever waits on it (a command, a Docker or Consul call in flight) waiting until the
// kernel gives up on the TCP connection, some 15 minutes, or for ever where the caller
// set no deadline. Closed, c fails them at once, and the next use dials again.
func (h *Host) keepAlive(c *ssh.Client) {
	interval := h.pool.opts.KeepaliveInterval
	if interval < 0 {
		return
	}
	closed := make(chan struct{})
	go func() {
		_ = c.Wait()
		close(closed)
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			return
		case <-tick.C:
		}
		if !alive(c, h.pool.opts.ConnectTimeout) {
			h.drop(c)
			_ = c.Close()
			return
		}
	}
}

// alive asks the server for a keepalive reply. A peer that vanished without closing the
// connection never answers, so the wait is bounded.
func alive(c *ssh.Client, timeout time.Duration) bool {
	answered := make(chan error, 1)
	go func() {
		_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-answered:
		return err == nil
	case <-timer.C:
		return false
	}
}
