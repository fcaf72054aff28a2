package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/client"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
)

// providerDataFrom unpacks what Configure handed a resource or data source. It returns
// nil (and no error) before the provider is configured, as during validation.
func providerDataFrom(data any, diags *diag.Diagnostics) *providerData {
	if data == nil {
		return nil
	}
	pd, ok := data.(*providerData)
	if !ok {
		diags.AddError("Unexpected Provider Data Type", fmt.Sprintf(
			"Expected *providerData, got %T. Please report this issue to the provider developers.", data))
		return nil
	}
	return pd
}

// openHost reaches a node by its host string and pinned host key, reporting failures
// against the attribute that named the host; for a node that does not answer, with what
// the next apply does about it (nodeNextStep).
func (d *providerData) openHost(ctx context.Context, at path.Path, host, hostKey string, diags *diag.Diagnostics) *conn.Host {
	h, err := d.pool.Open(ctx, conn.Target{Host: host, HostKey: hostKey})
	if err != nil {
		detail := fmt.Sprintf("%s: %s", host, err)
		if consulUnreachable(err) {
			if next := d.nodeNextStep(ctx, host, hostKey, err); next != "" {
				detail += "\n\n" + next
			}
		}
		diags.AddAttributeError(at, "Could Not Reach Host", detail)
		return nil
	}
	return h
}

// dropletCatalog is the account's regions, sizes and images, fetched on first use; a
// failed fetch is not kept, so the next resource tries again.
func (d *providerData) dropletCatalog(ctx context.Context) (*droplet.Catalog, error) {
	d.catalogMu.Lock()
	defer d.catalogMu.Unlock()
	if d.catalog != nil {
		return d.catalog, nil
	}
	cat, err := d.cloud.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	d.catalog = cat
	return cat, nil
}

// checkTCPHost fails a plan whose host is tcp:// when the provider has no TLS material:
// a plain tcp:// Docker API is root on the node for anyone who can reach the port.
func (d *providerData) checkTCPHost(at path.Path, host types.String, diags *diag.Diagnostics) {
	if d == nil || host.IsNull() || host.IsUnknown() {
		return
	}
	ep, err := conn.ParseEndpoint(host.ValueString())
	if err == nil && ep.Scheme == conn.SchemeTCP && !d.dockerTLS {
		attrError(diags, at, "Docker Host Without TLS", fmt.Sprintf("%s is a tcp:// Docker host, but the provider has no docker_cert_path "+
			"(or DOCKER_CERT_PATH) with ca.pem, cert.pem and key.pem: the Docker API would be reached without TLS. "+
			"Set docker_cert_path, or reach the node over ssh://.", host.ValueString()))
	}
}

// withTimeout bounds an operation by its timeouts attribute (or the default), reporting
// an unparsable value in diags.
func withTimeout(ctx context.Context, get func(context.Context, time.Duration) (time.Duration, diag.Diagnostics), def time.Duration, diags *diag.Diagnostics) (context.Context, context.CancelFunc) {
	d, dd := get(ctx, def)
	diags.Append(dd...)
	return context.WithTimeout(ctx, d)
}

// managerDocker reaches a swarm manager's Docker API, recording in hostKey the key the
// host-key policy accepted. With tolerateUnreachable (refresh, delete) a manager that
// does not answer is a warning and nil, so a dead node does not block the plan that
// replaces it.
func (d *providerData) managerDocker(ctx context.Context, host types.String, hostKey *types.String, tolerateUnreachable bool, diags *diag.Diagnostics) *client.Client {
	h := d.openNode(ctx, path.Root("host"), host.ValueString(), hostKey, tolerateUnreachable, diags)
	if h == nil {
		return nil
	}
	docker, err := h.Docker()
	if err != nil {
		diags.AddAttributeError(path.Root("host"), "Could Not Reach the Docker API", fmt.Sprintf("%s: %s", host.ValueString(), err))
		return nil
	}
	return docker
}

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
	if err != nil && consulUnreachable(err) {
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

// openNode reaches a node, recording in hostKey the key the host-key policy accepted
// when none was pinned.
func (d *providerData) openNode(ctx context.Context, at path.Path, host string, hostKey *types.String, tolerateUnreachable bool, diags *diag.Diagnostics) *conn.Host {
	pinned := ""
	if !hostKey.IsUnknown() {
		pinned = hostKey.ValueString()
	}
	h, err := d.openTolerant(ctx, conn.Target{Host: host, HostKey: pinned}, tolerateUnreachable)
	if err != nil {
		if tolerateUnreachable && consulUnreachable(err) {
			diags.AddWarning("Node Unreachable", fmt.Sprintf(
				"%s does not answer (%s), so what runs there could not be checked; Terraform keeps what it last knew.", host, err))
			return nil
		}
		diags.AddAttributeError(at, "Could Not Reach Host", fmt.Sprintf("%s: %s", host, err))
		return nil
	}
	if key := h.HostKey(); key != "" && pinned == "" {
		*hostKey = types.StringValue(key)
	} else if hostKey.IsUnknown() {
		*hostKey = types.StringNull()
	}
	return h
}
