package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// requireNodeGone is for a delete that could not reach the node holding what it deletes:
// it succeeds (with a warning) only when the node is known gone for good, its droplet
// deleted or off, and otherwise fails with the next step, so Terraform never forgets
// something still running.
func (d *providerData) requireNodeGone(ctx context.Context, what, host string, diags *diag.Diagnostics) {
	status, err := d.nodeStatus(ctx, host)
	switch {
	case err != nil:
		diags.AddError("Could Not Delete: Node Unreachable", fmt.Sprintf("%s: %s does not answer, and whether its droplet is gone "+
			"could not be learned (%s). It may still run there. Bring the node back and destroy again; if the node is gone for "+
			"good, remove the resource from the state with terraform state rm.", what, host, err))
	case status == "deleted" || status == "off":
		diags.AddWarning("Deleted With Its Node", fmt.Sprintf("%s: %s does not answer and its droplet is %s, so nothing of it "+
			"runs there any more.", what, host, status))
	default:
		diags.AddError("Could Not Delete: Node Unreachable", fmt.Sprintf("%s: %s does not answer, but its droplet is %s: %s may "+
			"still run and serve there. Fix the node's SSH (or point host at another manager of the same swarm) and destroy "+
			"again; if you are sure it is gone, remove the resource from the state with terraform state rm.", what, host, status, what))
	}
}

// nodeStatus is the status of the droplet behind an ssh:// host ("deleted" when the
// account has no droplet at that address).
func (d *providerData) nodeStatus(ctx context.Context, host string) (string, error) {
	ep, err := conn.ParseEndpoint(host)
	if err != nil {
		return "", err
	}
	if ep.Scheme != conn.SchemeSSH || d.cloud == nil {
		return "", fmt.Errorf("%s is not a droplet this provider can look up (no DigitalOcean token, or not ssh://)", host)
	}
	dr, err := d.cloud.ByAddress(ctx, ep.Host)
	if err != nil {
		return "", err
	}
	if dr == nil {
		return "deleted", nil
	}
	return dr.Status, nil
}
