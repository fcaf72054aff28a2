package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/docker/docker/client"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
)

// unreachableProbeTimeout bounds reaching a node whose absence is only a warning (a refresh,
// a delete): a dead node must not hold every plan up for the whole connect timeout.
const unreachableProbeTimeout = 10 * time.Second

// openTolerant opens a connection; with tolerateUnreachable, within unreachableProbeTimeout,
// at once with the same error for a host such a probe already found dead in this run, and
// without probing at all a node whose droplet the API reports off (a *droplet.DownError).
func (d *providerData) openTolerant(ctx context.Context, t conn.Target, tolerateUnreachable bool) (*conn.Host, error) {
	if !tolerateUnreachable {
		return d.pool.Open(ctx, t)
	}
	d.unreachableMu.Lock()
	known := d.unreachable[t.Host]
	d.unreachableMu.Unlock()
	if known != nil {
		return nil, known
	}
	// Not remembered in unreachable: a replacement droplet may take the address later in
	// the run, and the API is asked again each time.
	if down := d.nodeDown(ctx, t.Host); down != nil {
		return nil, down
	}
	probeCtx, cancel := context.WithTimeout(ctx, unreachableProbeTimeout)
	h, err := d.pool.Open(probeCtx, t)
	cancel()
	if err != nil && nodeUnreachable(err) {
		d.unreachableMu.Lock()
		if d.unreachable == nil {
			d.unreachable = map[string]error{}
		}
		d.unreachable[t.Host] = err
		d.unreachableMu.Unlock()
	}
	return h, err
}

// nodeDown asks the DigitalOcean API (briefly; no answer is no verdict) whether host is a
// managed droplet that is off or archived.
func (d *providerData) nodeDown(ctx context.Context, host string) error {
	if d.cloud == nil {
		return nil
	}
	ep, err := conn.ParseEndpoint(host)
	if err != nil || ep.Scheme != conn.SchemeSSH {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, nodeDownTimeout)
	defer cancel()
	return d.liveness.Down(ctx, d.cloud, ep.Host)
}

// nodeDownTimeout bounds asking the API about a node before probing it.
const nodeDownTimeout = 5 * time.Second

// nodeUnreachable tells a node that does not answer (or whose droplet the API reports
// off) from one that answered wrongly (a changed host key, a refused login).
func nodeUnreachable(err error) bool {
	var opErr *net.OpError
	var down *droplet.DownError
	return errors.As(err, &opErr) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &down)
}

// nodeReach is what a step does about a node that does not answer.
type nodeReach int

const (
	// mustReach (create, update, import, a data source's read): a node that does not
	// answer is an error, with what the next apply does about it (nodeNextStep).
	mustReach nodeReach = iota
	// mayBeUnreachable (delete, an update's proxy nodes): a node that does not answer, or
	// whose droplet the API reports off (then without a probe), is a warning and nil, so
	// a dead node does not block the plan that replaces it. A wrong host key is an error
	// all the same.
	mayBeUnreachable
	// refreshing (a refresh): as mayBeUnreachable, and a host that presents another key
	// than the state's is a warning and nil too, the state kept. That is a droplet replaced
	// at the same address by an apply that failed before this resource recorded the new
	// key: the plan's update or replacement reaches it with the key the configuration now
	// gives (and fails there if that one does not match either). Failing the refresh
	// instead would fail every plan, the one that finishes the heal included. Nothing is
	// sent to such a host: the SSH handshake stops at its key.
	refreshing
)

// reachOf is refreshing when the state has something to refresh, mustReach when not (an
// import: the node must answer for anything to be read).
func reachOf(tolerate bool) nodeReach {
	if tolerate {
		return refreshing
	}
	return mustReach
}

// reachNode reaches the node whose host the attribute at names, the one way every
// resource does. It records in hostKey (when not nil) the key that known_hosts or
// host_key_policy accepted for a host with none pinned (strict refuses an unpinned key,
// accept-new trusts and records it). what names what on the node a skipped check is
// about, for the warning.
func (d *providerData) reachNode(ctx context.Context, at path.Path, host string, hostKey *types.String, reach nodeReach, what string, diags *diag.Diagnostics) *conn.Host {
	if _, err := conn.ParseEndpoint(host); err != nil {
		attrError(diags, at, "Invalid Host", err.Error())
		return nil
	}
	pinned := ""
	if hostKey != nil && !hostKey.IsUnknown() {
		pinned = hostKey.ValueString()
	}
	h, err := d.openTolerant(ctx, conn.Target{Host: host, HostKey: pinned}, reach != mustReach)
	if err != nil {
		if reach != mustReach && nodeUnreachable(err) {
			diags.AddWarning("Node Unreachable", fmt.Sprintf(
				"%s does not answer (%s), so %s could not be checked; Terraform keeps what it last knew.", host, err, what))
			return nil
		}
		var changed *conn.HostKeyMismatchError
		if reach == refreshing && errors.As(err, &changed) {
			diags.AddWarning("Host Key Changed", fmt.Sprintf(
				"%s: %s.\n\nSo %s could not be checked; Terraform keeps what it last knew. A droplet replaced at this address by an "+
					"apply that failed before this resource was updated shows this: the plan updates it with the host key the "+
					"configuration gives now. Otherwise, find out who answers at this address before you apply.", host, err, what))
			return nil
		}
		detail := fmt.Sprintf("%s: %s", host, err)
		if nodeUnreachable(err) {
			if next := d.nodeNextStep(ctx, host, pinned, err); next != "" {
				detail += "\n\n" + next
			}
		}
		attrError(diags, at, "Could Not Reach Host", detail)
		return nil
	}
	if hostKey == nil {
		return h
	}
	if key := h.HostKey(); key != "" && pinned == "" {
		tflog.Warn(ctx, "recorded the host key that known_hosts or host_key_policy accepted; set host_key in the config to pin it",
			map[string]any{"host": host, "fingerprint": fingerprintOf(key)})
		*hostKey = types.StringValue(key)
	} else if hostKey.IsUnknown() {
		*hostKey = types.StringNull()
	}
	return h
}

// reachDocker is reachNode, then the node's Docker API.
func (d *providerData) reachDocker(ctx context.Context, at path.Path, host string, hostKey *types.String, reach nodeReach, what string, diags *diag.Diagnostics) *client.Client {
	h := d.reachNode(ctx, at, host, hostKey, reach, what, diags)
	if h == nil {
		return nil
	}
	return dockerOf(h, at, host, diags)
}

// dockerOf is the Docker API of a node reachNode reached.
func dockerOf(h *conn.Host, at path.Path, host string, diags *diag.Diagnostics) *client.Client {
	docker, err := h.Docker()
	if err != nil {
		attrError(diags, at, "Could Not Reach the Docker API", fmt.Sprintf("%s: %s", host, err))
		return nil
	}
	return docker
}
