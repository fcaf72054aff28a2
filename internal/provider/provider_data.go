package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
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

// defaultReadTimeout bounds a refresh (timeouts.read): a node that stops answering in
// the middle of one fails the plan, naming the attribute, instead of hanging it.
const defaultReadTimeout = 5 * time.Minute

// readTimeoutDescription is the timeouts.read attribute's description.
const readTimeoutDescription = "How long a refresh may take; a node that stops answering in the middle of one fails the plan after it. Default: `5m`."

// withReadTimeout bounds a refresh by timeouts.read. done ends it, and names that
// attribute when the refresh failed for want of time.
func withReadTimeout(ctx context.Context, t timeouts.Value, diags *diag.Diagnostics) (context.Context, func()) {
	ctx, cancel := withTimeout(ctx, t.Read, defaultReadTimeout, diags)
	return ctx, func() {
		if diags.HasError() && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			attrError(diags, path.Root("timeouts").AtName("read"), "Refresh Timed Out", "The refresh did not finish within timeouts.read "+
				"(default 5m): a node stopped answering in the middle of it, or the nodes are very slow. Check that the nodes answer, or raise timeouts.read.")
		}
		cancel()
	}
}

// withTimeout bounds an operation by its timeouts attribute (or the default), reporting
// an unparsable value in diags.
func withTimeout(ctx context.Context, get func(context.Context, time.Duration) (time.Duration, diag.Diagnostics), def time.Duration, diags *diag.Diagnostics) (context.Context, context.CancelFunc) {
	d, dd := get(ctx, def)
	diags.Append(dd...)
	return context.WithTimeout(ctx, d)
}
