package provider

import (
	"context"
	"slices"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
)

type dropletNodeModel struct {
	ID                 types.String   `tfsdk:"id"`
	Name               types.String   `tfsdk:"name"`
	Region             types.String   `tfsdk:"region"`
	Size               types.String   `tfsdk:"size"`
	Image              types.String   `tfsdk:"image"`
	SSHKeys            types.Set      `tfsdk:"ssh_keys"`
	VPCUUID            types.String   `tfsdk:"vpc_uuid"`
	Tags               types.Set      `tfsdk:"tags"`
	Monitoring         types.Bool     `tfsdk:"monitoring"`
	UserData           types.String   `tfsdk:"user_data"`
	IPv4Address        types.String   `tfsdk:"ipv4_address"`
	IPv4AddressPrivate types.String   `tfsdk:"ipv4_address_private"`
	DockerHost         types.String   `tfsdk:"docker_host"`
	DockerVersion      types.String   `tfsdk:"docker_version"`
	SSHHostKey         types.String   `tfsdk:"ssh_host_key"`
	IdempotencyToken   types.String   `tfsdk:"idempotency_token"`
	Status             types.String   `tfsdk:"status"`
	WhenOff            types.String   `tfsdk:"when_off"`
	Firewall           types.String   `tfsdk:"firewall"`
	PrefetchImages     types.List     `tfsdk:"prefetch_images"`
	Timeouts           timeouts.Value `tfsdk:"timeouts"`
}

// spec maps the plan to a droplet spec.
func (r *dropletNodeResource) spec(ctx context.Context, plan dropletNodeModel) (droplet.Spec, diag.Diagnostics) {
	var diags diag.Diagnostics
	spec := droplet.Spec{
		Name:       plan.Name.ValueString(),
		Region:     plan.Region.ValueString(),
		Size:       plan.Size.ValueString(),
		Image:      plan.Image.ValueString(),
		VPCUUID:    plan.VPCUUID.ValueString(),
		Monitoring: plan.Monitoring.ValueBool(),
		UserData:   plan.UserData.ValueString(),
		SSHKeys:    stringSet(ctx, plan.SSHKeys, &diags),
		Tags:       stringSet(ctx, plan.Tags, &diags),
	}
	return spec, diags
}

func (r *dropletNodeResource) dockerHost(d *droplet.Droplet) string {
	return (conn.Endpoint{Scheme: conn.SchemeSSH, User: r.data.pool.User(), Host: d.PublicIPv4, Port: 22}).String()
}

// fillComputed sets the computed attributes from the droplet and what the node reported.
func (r *dropletNodeResource) fillComputed(m *dropletNodeModel, d *droplet.Droplet, hostKey, dockerVersion string) {
	m.Status = types.StringValue(d.Status)
	m.IPv4Address = types.StringValue(d.PublicIPv4)
	m.IPv4AddressPrivate = types.StringValue(d.PrivateIPv4)
	m.VPCUUID = types.StringValue(d.VPCUUID)
	m.DockerHost = types.StringNull()
	if d.PublicIPv4 != "" {
		m.DockerHost = types.StringValue(r.dockerHost(d))
	}
	m.SSHHostKey = nullIfEmpty(hostKey)
	m.DockerVersion = nullIfEmpty(dockerVersion)
}

func nullIfEmpty(s string) types.String {
	if s == "" {
		return types.StringNull()
	}
	return types.StringValue(s)
}

// setTags keeps a null tags attribute null while the droplet has no user tags, so a
// config without tags plans no change.
func setTags(ctx context.Context, target *types.Set, tags []string) diag.Diagnostics {
	if len(tags) == 0 {
		if !target.IsNull() {
			*target = types.SetValueMust(types.StringType, nil)
		}
		return nil
	}
	slices.Sort(tags)
	v, diags := types.SetValueFrom(ctx, types.StringType, tags)
	*target = v
	return diags
}

func stringSet(ctx context.Context, s types.Set, diags *diag.Diagnostics) []string {
	if s.IsNull() || s.IsUnknown() {
		return nil
	}
	var out []string
	diags.Append(s.ElementsAs(ctx, &out, false)...)
	return out
}

func fingerprintOf(authorizedKey string) string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}
