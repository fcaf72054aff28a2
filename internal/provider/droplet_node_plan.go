package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// ModifyPlan fails the plan, rather than the apply, when the provider cannot manage
// droplets: no API token, no SSH key to reach the node with, or a region, size or image
// slug the account does not offer.
func (r *dropletNodeResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.data == nil {
		return
	}
	if r.data.cloud != nil {
		r.checkSlugs(ctx, req, resp)
	}
	if !req.State.Raw.IsNull() {
		planWhenOff(ctx, req, resp)
	}
	if req.State.Raw.IsNull() && r.data.cloud != nil && r.data.stack != nil && r.data.stack.ID == "" {
		r.refuseUnclaimed(ctx, req, resp)
	}
	if r.data.cloud == nil {
		resp.Diagnostics.AddError("Missing DigitalOcean Token",
			"microswarm_droplet_node needs the provider's do_token (or the "+envToken+" environment variable).")
	}
	if r.data.sshPublicKey == "" {
		resp.Diagnostics.AddError("Missing SSH Private Key",
			"microswarm_droplet_node needs the provider's ssh_private_key or ssh_private_key_file: the provider registers its "+
				"public half with DigitalOcean so that it can reach the node and check that Docker answers. "+
				"ssh_keys alone are not enough, because the provider holds none of their private keys.")
	}
}

// planWhenOff heals a droplet the refresh found off, as when_off says: a replacement, or
// an in-place power-on. Either way the plan shows status going from off to active, and a
// warning says why.
func planWhenOff(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	var status, name, whenOff types.String
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("status"), &status)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("name"), &name)...)
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("when_off"), &whenOff)...)
	if resp.Diagnostics.HasError() || status.ValueString() != "off" || whenOff.IsUnknown() {
		return
	}
	var what string
	switch whenOff.ValueString() {
	case whenOffReplace:
		resp.RequiresReplace = append(resp.RequiresReplace, path.Root("status"))
		what = "replaces it (when_off = replace); what follows its docker_host moves to the new droplet"
	case whenOffPowerOn:
		what = "powers it on in place (when_off = power_on)"
	default: // ignore: it stays off
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("status"), status)...)
		return
	}
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("status"), types.StringValue("active"))...)
	resp.Diagnostics.AddWarning("Droplet Found Off", fmt.Sprintf("Droplet %s is off; this plan %s.", name.ValueString(), what))
}

// checkSlugs checks the region, size and image a plan creates or changes against the
// account's catalog. A catalog that cannot be fetched is a warning: the apply will say.
func (r *dropletNodeResource) checkSlugs(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	var plan, state dropletNodeModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if !req.State.Raw.IsNull() {
		resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	}
	if resp.Diagnostics.HasError() {
		return
	}
	creating := req.State.Raw.IsNull()
	slug := func(planned, prior types.String) string {
		if planned.IsUnknown() || planned.IsNull() || (!creating && planned.Equal(prior)) {
			return ""
		}
		return planned.ValueString()
	}
	region, size, image := slug(plan.Region, state.Region), slug(plan.Size, state.Size), slug(plan.Image, state.Image)
	if region == "" && size == "" && image == "" {
		return
	}
	regionChanges := region != ""
	if !regionChanges && !plan.Region.IsUnknown() {
		region = plan.Region.ValueString() // an unchanged region still bounds a new size
	}
	cat, err := r.data.dropletCatalog(ctx)
	if err != nil {
		resp.Diagnostics.AddWarning("Could Not Check Droplet Slugs", fmt.Sprintf(
			"Listing the account's regions, sizes and images failed, so region, size and image are checked at apply: %s.", err))
		return
	}
	for _, e := range cat.Check(region, size, image) {
		if e.Field == "region" && !regionChanges {
			continue // the droplet is there already
		}
		attrError(&resp.Diagnostics, path.Root(e.Field), "Unknown Droplet "+strings.ToUpper(e.Field[:1])+e.Field[1:], e.Err.Error()+".")
	}
}
