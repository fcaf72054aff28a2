package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
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
// against the attribute that named the host.
func (d *providerData) openHost(ctx context.Context, at path.Path, host, hostKey string, diags *diag.Diagnostics) *conn.Host {
	h, err := d.pool.Open(ctx, conn.Target{Host: host, HostKey: hostKey})
	if err != nil {
		diags.AddAttributeError(at, "Could Not Reach Host", fmt.Sprintf("%s: %s", host, err))
		return nil
	}
	return h
}

// withTimeout bounds an operation by its timeouts attribute (or the default), reporting
// an unparsable value in diags.
func withTimeout(ctx context.Context, get func(context.Context, time.Duration) (time.Duration, diag.Diagnostics), def time.Duration, diags *diag.Diagnostics) (context.Context, context.CancelFunc) {
	d, dd := get(ctx, def)
	diags.Append(dd...)
	return context.WithTimeout(ctx, d)
}
