package provider

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
)

var (
	_ resource.Resource                = &dropletNodeResource{}
	_ resource.ResourceWithConfigure   = &dropletNodeResource{}
	_ resource.ResourceWithImportState = &dropletNodeResource{}
	_ resource.ResourceWithModifyPlan  = &dropletNodeResource{}
)

const (
	// DefaultDropletImage is DigitalOcean's Docker-ready marketplace image.
	DefaultDropletImage = "docker-20-04"
	// importProbeTimeout bounds the first contact with an imported node during refresh.
	importProbeTimeout = 30 * time.Second
)

func NewDropletNodeResource() resource.Resource { return &dropletNodeResource{} }

type dropletNodeResource struct {
	data *providerData
}

func (r *dropletNodeResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_droplet_node"
}

func (r *dropletNodeResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

// waitReady waits for the droplet to be active, then for SSH and the Docker API.
// phase, when set, logs each step done (see Create).
func (r *dropletNodeResource) waitReady(ctx context.Context, id int, target conn.Target, phase func(string, map[string]any)) (*droplet.Droplet, droplet.Readiness, diag.Diagnostics) {
	var diags diag.Diagnostics
	if phase == nil {
		phase = func(string, map[string]any) {}
	}
	d, err := r.data.cloud.WaitStatus(ctx, id, "active")
	if err == nil {
		phase("active", map[string]any{"droplet_id": id})
	}
	if err != nil {
		diags.AddError("Droplet Did Not Become Active", fmt.Sprintf(
			"Droplet %d: %s. Raise timeouts.create if the region is slow, or check the droplet in the DigitalOcean console.", id, err))
		return nil, droplet.Readiness{}, diags
	}
	target.Host = r.dockerHost(d)
	ready, err := droplet.WaitReady(ctx, r.data.pool, target)
	if err != nil {
		var notReady *droplet.NotReadyError
		summary := "Node Did Not Come Up"
		if errors.As(err, &notReady) && notReady.Stage == "ssh" {
			summary = "Node SSH Did Not Come Up"
		} else if errors.As(err, &notReady) {
			summary = "Node Docker API Did Not Come Up"
		}
		diags.AddError(summary, fmt.Sprintf("Droplet %d (%s): %s. The droplet is kept (and tainted); "+
			"check that its image runs sshd and Docker, then apply again to replace it, or raise timeouts.create.", id, target.Host, err))
		return d, droplet.Readiness{}, diags
	}
	phase("SSH and the Docker API answer", map[string]any{"droplet_id": id})
	return d, ready, diags
}

func (r *dropletNodeResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state dropletNodeModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	ctx, done := withReadTimeout(ctx, state.Timeouts, &resp.Diagnostics)
	defer done()
	if resp.Diagnostics.HasError() {
		return
	}
	if r.data == nil || r.data.cloud == nil {
		resp.Diagnostics.AddError("Missing DigitalOcean Token", "Reading microswarm_droplet_node needs the provider's do_token.")
		return
	}
	id, err := strconv.Atoi(state.ID.ValueString())
	if err != nil {
		attrError(&resp.Diagnostics, path.Root("id"), "Invalid Droplet ID", fmt.Sprintf("%q is not a numeric droplet ID.", state.ID.ValueString()))
		return
	}
	d, err := r.data.cloud.Get(ctx, id)
	if errors.Is(err, droplet.ErrNotFound) {
		tflog.Warn(ctx, "droplet is gone; removing it from state so the plan re-creates it", map[string]any{"droplet_id": id})
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Could Not Read Droplet", err.Error())
		return
	}
	if d.Pending || d.RunID != "" {
		// Read runs only for a resource in state: the state holds this droplet, so no
		// later create may adopt it. Claimed here, never at the end of Create.
		if err := r.data.cloud.Claim(ctx, d); err != nil {
			resp.Diagnostics.AddWarning("Could Not Claim Droplet", fmt.Sprintf("Droplet %d: %s. It is in state, but keeps the "+
				"pending tag of its create until a refresh claims it; the next plan tries again.", id, err))
		}
	}
	hostKey, dockerVersion := state.SSHHostKey.ValueString(), state.DockerVersion.ValueString()
	if state.SSHHostKey.IsNull() && d.Status == "active" && d.PublicIPv4 != "" {
		// Only after an import: nothing pinned this droplet yet. known_hosts or the
		// host_key_policy decide (strict refuses an unknown key; accept-new trusts it), and
		// the key accepted is recorded. Bounded: a refresh must not hang on a broken SSH.
		probeCtx, cancel := context.WithTimeout(ctx, importProbeTimeout)
		ready, err := droplet.WaitReady(probeCtx, r.data.pool, conn.Target{Host: r.dockerHost(d)})
		cancel()
		if err != nil {
			resp.Diagnostics.AddWarning("Could Not Reach the Imported Node", err.Error())
		} else {
			hostKey, dockerVersion = ready.HostKey, ready.DockerVersion
			tflog.Warn(ctx, "recorded the host key of an imported droplet that known_hosts or host_key_policy accepted", map[string]any{
				"droplet_id": id, "fingerprint": fingerprintOf(hostKey)})
		}
	}
	if d.IdempotencyToken != "" {
		state.IdempotencyToken = types.StringValue(d.IdempotencyToken)
	}
	if state.Image.IsNull() || d.Image != "" {
		state.Image = types.StringValue(d.Image)
	}
	if state.WhenOff.IsNull() {
		state.WhenOff = types.StringValue(whenOffReplace) // an import: the default
	}
	if state.Firewall.IsNull() {
		// An import: what the node's firewall holds is not read back, so say nothing was
		// done; a configuration asking for "stack" opens the ports in the next apply.
		state.Firewall = types.StringValue(droplet.FirewallNone)
	}
	state.Name = types.StringValue(d.Name)
	state.Region = types.StringValue(d.Region)
	state.Size = types.StringValue(d.Size)
	state.Monitoring = types.BoolValue(d.Monitoring)
	resp.Diagnostics.Append(setTags(ctx, &state.Tags, d.Tags)...)
	r.fillComputed(&state, d, hostKey, dockerVersion)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *dropletNodeResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state dropletNodeModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Update, 10*time.Minute, &resp.Diagnostics)
	defer cancel()
	if resp.Diagnostics.HasError() {
		return
	}
	id, err := strconv.Atoi(state.ID.ValueString())
	if err != nil {
		attrError(&resp.Diagnostics, path.Root("id"), "Invalid Droplet ID", err.Error())
		return
	}
	cloud := r.data.cloud

	if !plan.Name.Equal(state.Name) {
		if err := cloud.Rename(ctx, id, plan.Name.ValueString()); err != nil {
			attrError(&resp.Diagnostics, path.Root("name"), "Could Not Rename Droplet", err.Error())
			return
		}
	}
	if !plan.Tags.Equal(state.Tags) {
		current, wanted := stringSet(ctx, state.Tags, &resp.Diagnostics), stringSet(ctx, plan.Tags, &resp.Diagnostics)
		if resp.Diagnostics.HasError() {
			return
		}
		if err := cloud.SetTags(ctx, id, current, wanted); err != nil {
			attrError(&resp.Diagnostics, path.Root("tags"), "Could Not Update Droplet Tags", err.Error())
			return
		}
	}
	hostKey, dockerVersion := state.SSHHostKey.ValueString(), state.DockerVersion.ValueString()
	if !plan.SSHKeys.Equal(state.SSHKeys) {
		resp.Diagnostics.Append(r.updateSSHKeys(ctx, id, state, plan)...)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	if !plan.Size.Equal(state.Size) {
		resize := func(ctx context.Context) error { return cloud.Resize(ctx, id, plan.Size.ValueString()) }
		if !r.bootThen(ctx, id, hostKey, resize, path.Root("size"), "Could Not Resize Droplet", &dockerVersion, &resp.Diagnostics) {
			return
		}
	}
	if state.Status.ValueString() == "off" && plan.Status.ValueString() == "active" {
		powerOn := func(ctx context.Context) error { return cloud.PowerOn(ctx, id) }
		if !r.bootThen(ctx, id, hostKey, powerOn, path.Root("when_off"), "Could Not Power the Droplet On", &dockerVersion, &resp.Diagnostics) {
			return
		}
	}
	d, err := cloud.Get(ctx, id)
	if err != nil {
		resp.Diagnostics.AddError("Could Not Read Droplet", err.Error())
		return
	}
	if !plan.Firewall.Equal(state.Firewall) {
		resp.Diagnostics.Append(r.applyFirewall(ctx, d, hostKey, plan.Firewall.ValueString())...)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	plan.IdempotencyToken = state.IdempotencyToken
	r.fillComputed(&plan, d, hostKey, dockerVersion)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// bootThen runs an action that ends with the droplet booting (a resize, a power-on) and
// waits until SSH, with the pinned key, and Docker answer again, recording Docker's version.
func (r *dropletNodeResource) bootThen(ctx context.Context, id int, hostKey string, action func(context.Context) error, at path.Path, summary string, dockerVersion *string, diags *diag.Diagnostics) bool {
	if err := action(ctx); err != nil {
		attrError(diags, at, summary, err.Error())
		return false
	}
	_, ready, waitDiags := r.waitReady(ctx, id, conn.Target{HostKey: hostKey}, nil)
	diags.Append(waitDiags...)
	if diags.HasError() {
		return false
	}
	*dockerVersion = ready.DockerVersion
	return true
}

// updateSSHKeys moves root's authorized keys from the state's ssh_keys to the plan's, over
// the node's pinned SSH connection; the provider's own key always stays.
func (r *dropletNodeResource) updateSSHKeys(ctx context.Context, id int, state, plan dropletNodeModel) diag.Diagnostics {
	var diags diag.Diagnostics
	at := path.Root("ssh_keys")
	oldRefs, newRefs := stringSet(ctx, state.SSHKeys, &diags), stringSet(ctx, plan.SSHKeys, &diags)
	if diags.HasError() {
		return diags
	}
	want, err := r.data.cloud.PublicKeys(ctx, newRefs)
	if err != nil {
		attrError(&diags, at, "Could Not Read SSH Keys", fmt.Sprintf("Droplet %d: %s. Check that every key is registered with the account.", id, err))
		return diags
	}
	old, err := r.data.cloud.PublicKeys(ctx, oldRefs)
	if err != nil {
		// A key deleted from the account cannot be looked up, so it cannot be taken off
		// the node either: say so rather than leave it there silently.
		attrError(&diags, at, "Could Not Read the Previous SSH Keys", fmt.Sprintf(
			"Droplet %d: %s. A key removed from ssh_keys must still be in the account so that it can be taken off the node; "+
				"re-register it, or remove it from root's authorized_keys by hand.", id, err))
		return diags
	}
	want = append(want, r.data.sshPublicKey)
	h, err := r.data.pool.Open(ctx, conn.Target{Host: state.DockerHost.ValueString(), HostKey: state.SSHHostKey.ValueString()})
	if err == nil {
		err = droplet.SetAuthorizedKeys(ctx, h, old, want)
	}
	if err != nil {
		attrError(&diags, at, "Could Not Update SSH Keys", fmt.Sprintf("Droplet %d (%s): %s.", id, state.DockerHost.ValueString(), err))
	}
	return diags
}

func (r *dropletNodeResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state dropletNodeModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, state.Timeouts.Delete, 5*time.Minute, &resp.Diagnostics)
	defer cancel()
	if resp.Diagnostics.HasError() {
		return
	}
	id, err := strconv.Atoi(state.ID.ValueString())
	if err != nil {
		return // never created: nothing to delete
	}
	if r.data == nil || r.data.cloud == nil {
		resp.Diagnostics.AddError("Missing DigitalOcean Token", "Deleting microswarm_droplet_node needs the provider's do_token.")
		return
	}
	if err := r.data.cloud.Delete(ctx, id); err != nil {
		resp.Diagnostics.AddError("Could Not Delete Droplet", err.Error())
		return
	}
	// The droplet is gone; its create tag goes too, or the account keeps one per node ever
	// made. If that fails the node stays in the state, so the next destroy removes the tag.
	if token := state.IdempotencyToken.ValueString(); token != "" {
		if err := r.data.cloud.RemoveIdempotencyTag(ctx, token); err != nil {
			resp.Diagnostics.AddError("Could Not Remove the Droplet's Create Tag", fmt.Sprintf(
				"Droplet %d is deleted; only its tag %s is left in the account: %s. Run the destroy (or apply) again to remove it.",
				id, droplet.IdempotencyTag(token), err))
		}
	}
}

func (r *dropletNodeResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if _, err := strconv.Atoi(req.ID); err != nil {
		resp.Diagnostics.AddError("Invalid Import ID", fmt.Sprintf("Import a droplet node by its numeric droplet ID, got %q.", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}
