package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
)

// firewallAttribute is microswarm_droplet_node's `firewall`: what the provider does about
// the node's own firewall (UFW), which DigitalOcean's docker-20-04 image enables.
func firewallAttribute() schema.StringAttribute {
	ports := make([]string, len(droplet.StackPorts))
	for i, p := range droplet.StackPorts {
		ports[i] = fmt.Sprintf("`%s` (%s)", p, p.Why)
	}
	return schema.StringAttribute{
		MarkdownDescription: "What the provider does about the node's firewall, UFW: " + describeOneOf(droplet.FirewallModes) + ". Default: `" + droplet.FirewallStack + "`. " +
			"DigitalOcean's `docker-20-04` image enables UFW at first boot and allows only `ssh` (rate-limited) and 2375-2376/tcp, so a stack's nodes " +
			"could not reach each other. `stack` allows, in on the private (VPC) interface only, exactly the ports the stack's nodes use between them: " +
			strings.Join(ports, ", ") + ". Advertise Consul and the swarm on `ipv4_address_private`. " +
			"Publicly, it only lets SSH (22/tcp on the public interface) past DigitalOcean's rate limit, which refuses a sixth new connection from one " +
			"address within 30 seconds: every terraform command starts the provider anew, and each opens a connection per node. " +
			"The proxy's listen port, and any port a swarm service publishes, needs no rule: Docker forwards it through its own iptables chains, " +
			"which UFW's rules do not filter. The provider reaches Consul's API through SSH. Images without UFW (`debian-12-x64`) are left as they are; " +
			"on images where UFW is installed but off (`ubuntu-*`) the rules are recorded and take effect if UFW is enabled. " +
			"`none` changes nothing. Changes in place: switching to `none` removes the rules `stack` added. The rules are not read back: one added or removed by hand is not seen.",
		Optional:   true,
		Computed:   true,
		Default:    stringdefault.StaticString(droplet.FirewallStack),
		Validators: []validator.String{stringvalidator.OneOf(droplet.FirewallModes...)},
	}
}

// applyFirewall opens (stack) or closes (none) the stack's ports in the node's firewall,
// over the SSH connection pinned to hostKey.
func (r *dropletNodeResource) applyFirewall(ctx context.Context, d *droplet.Droplet, hostKey, mode string) diag.Diagnostics {
	var diags diag.Diagnostics
	host := r.dockerHost(d)
	h, err := r.data.pool.Open(ctx, conn.Target{Host: host, HostKey: hostKey})
	if err != nil {
		attrError(&diags, path.Root("firewall"), "Could Not Reach the Node to Set Its Firewall", fmt.Sprintf("Droplet %d (%s): %s.", d.ID, host, err))
		return diags
	}
	run := func(ctx context.Context, script string) (string, error) { return h.Run(ctx, script, nil) }
	change := droplet.OpenStackPorts
	if mode == droplet.FirewallNone {
		change = droplet.CloseStackPorts
	}
	result, err := change(ctx, run, d.PublicIPv4, d.PrivateIPv4)
	if err != nil {
		attrError(&diags, path.Root("firewall"), "Could Not Set the Node's Firewall", fmt.Sprintf(
			"Droplet %d (%s): %s. Set firewall = \"none\" to leave the node's firewall alone and open the ports yourself.", d.ID, host, err))
		return diags
	}
	tflog.Info(ctx, "node firewall set", map[string]any{"droplet_id": d.ID, "mode": mode, "ufw": result.UFW, "interface": result.Interface})
	return diags
}
