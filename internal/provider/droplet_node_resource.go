package provider

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"
	"golang.org/x/crypto/ssh"

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

var (
	hostnamePattern  = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$`)
	regionPattern    = regexp.MustCompile(`^[a-z]{3}[0-9]$`)
	slugPattern      = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	sshKeyRefPattern = regexp.MustCompile(`^([0-9]+|([0-9a-f]{2}:){15}[0-9a-f]{2})$`)
	uuidPattern      = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	tagPattern       = regexp.MustCompile(`^[a-zA-Z0-9_:-]{1,255}$`)
)

// What a plan does with a droplet found off.
const (
	whenOffReplace = "replace"
	whenOffPowerOn = "power_on"
	whenOffIgnore  = "ignore"
)

var whenOffActions = []string{whenOffReplace, whenOffPowerOn, whenOffIgnore}

func NewDropletNodeResource() resource.Resource { return &dropletNodeResource{} }

type dropletNodeResource struct {
	data *providerData
}

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
	Timeouts           timeouts.Value `tfsdk:"timeouts"`
}

func (r *dropletNodeResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_droplet_node"
}

func (r *dropletNodeResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A DigitalOcean droplet that is a ready Docker host. Create returns once the droplet is active, " +
			"SSH answers with the host key the provider handed the droplet through cloud-init, and the Docker API answers through SSH. " +
			"Over that pinned session the provider then replaces the host key with another one derived from the create's token and its SSH key, never sent in user data (user data stays readable from the " +
			"metadata service, so the handed-over key must open nothing) and pins the new one, exported as `ssh_host_key`. " +
			"`name`, `tags`, `size` and `ssh_keys` change in place; the rest replaces the droplet.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The droplet's numeric ID.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The droplet's name, a valid hostname. Changes in place (a rename action; the OS hostname stays as created).",
				Required:            true,
				Validators:          []validator.String{stringvalidator.RegexMatches(hostnamePattern, "must be a valid hostname: letters, digits, '-' and '.', starting and ending with a letter or digit")},
			},
			"region": schema.StringAttribute{
				MarkdownDescription: "Region slug, e.g. `nyc3`. Changing it replaces the droplet.",
				Required:            true,
				Validators:          []validator.String{stringvalidator.RegexMatches(regionPattern, "must be a region slug such as nyc3 or fra1")},
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"size": schema.StringAttribute{
				MarkdownDescription: "Size slug, e.g. `s-1vcpu-1gb`. Changes in place: the droplet is powered off, resized (CPU and memory only, so it can be sized down again) and powered on.",
				Required:            true,
				Validators:          []validator.String{stringvalidator.RegexMatches(slugPattern, "must be a size slug such as s-1vcpu-1gb")},
			},
			"image": schema.StringAttribute{
				MarkdownDescription: "Image slug. Default: `" + DefaultDropletImage + "`, DigitalOcean's Docker-ready image. Changing it replaces the droplet.",
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString(DefaultDropletImage),
				Validators:          []validator.String{stringvalidator.RegexMatches(slugPattern, "must be an image slug such as docker-20-04")},
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"ssh_keys": schema.SetAttribute{
				MarkdownDescription: "IDs or MD5 fingerprints of account SSH keys to install for root, besides the provider's own key, which is always registered and installed so the provider can reach the node. " +
					"Changes in place: the node is a swarm and Consul member, so root's `authorized_keys` is rewritten over the pinned SSH connection " +
					"(keys removed from this list are taken out; keys from `user_data` or added by hand stay).",
				Optional:    true,
				ElementType: types.StringType,
				Validators:  []validator.Set{setvalidator.ValueStringsAre(stringvalidator.RegexMatches(sshKeyRefPattern, "must be a numeric key ID or an MD5 fingerprint (aa:bb:...)"))},
			},
			"vpc_uuid": schema.StringAttribute{
				MarkdownDescription: "VPC to place the droplet in. Default: the region's default VPC. Changing it replaces the droplet.",
				Optional:            true,
				Computed:            true,
				Validators:          []validator.String{stringvalidator.RegexMatches(uuidPattern, "must be a VPC UUID")},
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown(), stringplanmodifier.RequiresReplaceIfConfigured()},
			},
			"tags": schema.SetAttribute{
				MarkdownDescription: dropletTagsDescription,
				Optional:            true,
				ElementType:         types.StringType,
				Validators: []validator.Set{setvalidator.ValueStringsAre(
					stringvalidator.RegexMatches(tagPattern, "must be 1-255 letters, digits, '_', ':' or '-'"),
					stringvalidator.NoneOf(droplet.ManagedTag),
					providerTagValidator(),
				)},
			},
			"monitoring": schema.BoolAttribute{
				MarkdownDescription: "Install the DigitalOcean monitoring agent. Default: `false`. Changing it replaces the droplet.",
				Optional:            true,
				Computed:            true,
				Default:             booldefault.StaticBool(false),
				PlanModifiers:       []planmodifier.Bool{boolplanmodifier.RequiresReplace()},
			},
			"user_data": schema.StringAttribute{
				MarkdownDescription: "cloud-init user data. A `#cloud-config` document (or none) also carries the host key the provider generates, so the key is pinned before the droplet boots; a script, or a cloud-config with its own `ssh_keys`, keeps the droplet's own key, which only the provider's `ssh_known_hosts_file` or `host_key_policy` can vouch for (`strict`, the default, refuses it; `accept-new` records it). Changing it replaces the droplet. " +
					fmt.Sprintf("At most %d bytes: DigitalOcean takes %d bytes of user data, and the provider adds the node's host key.", droplet.UserDataLimit, droplet.MaxUserData),
				Optional:  true,
				Sensitive: true,
				// In bytes: DigitalOcean accepts droplet.MaxUserData bytes of user data, and the
				// provider adds the node's host key to it.
				Validators:    []validator.String{stringvalidator.LengthAtMost(droplet.UserDataLimit)},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"ipv4_address": schema.StringAttribute{
				MarkdownDescription: "Public IPv4 address.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"ipv4_address_private": schema.StringAttribute{
				MarkdownDescription: "Private (VPC) IPv4 address: advertise Consul and the swarm on this one.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"docker_host": schema.StringAttribute{
				MarkdownDescription: "How the other resources reach this node's engine: `ssh://USER@IPV4_ADDRESS`. Pass it with `ssh_host_key`.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"docker_version": schema.StringAttribute{
				MarkdownDescription: "The Docker engine version the node answered with.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"ssh_host_key": schema.StringAttribute{
				MarkdownDescription: "The node's SSH host key (`ssh-ed25519 AAAA...`), pinned: pass it as `host_key` beside `docker_host` to every resource on this node. " +
					"For a droplet the provider created from cloud-config (or no) user data, this is the key installed over SSH right after first contact, not the one user data carried.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"idempotency_token": schema.StringAttribute{
				MarkdownDescription: "A random token made at create and written with the droplet as the tag `" +
					droplet.IdempotencyTagPrefix + "TOKEN` (not shown in `tags`). When the API fails a create request, the provider " +
					"looks for a droplet carrying this token before it retries, so a lost answer never makes a second droplet. " +
					"The host key handed to the droplet in user data is derived from it (and the provider's SSH key), so a droplet " +
					"adopted after an interrupted apply is pinned like a new one (see the provider's `stack_id`). Fixed at create.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"status": schema.StringAttribute{
				MarkdownDescription: "The droplet's status: `new`, `active`, `off` or `archive`. A droplet found `off` is healed as `when_off` says.",
				Computed:            true,
			},
			"when_off": schema.StringAttribute{
				MarkdownDescription: "What the next plan does with a droplet a refresh finds `off` (powered off, crashed, or stopped by the " +
					"cloud): " + describeOneOf(whenOffActions) + ". Default: `replace`, because a node that went down unannounced is the " +
					"failure self-healing exists for: a fresh droplet comes up with a fresh, pinned host key and joins the swarm and Consul " +
					"again through the resources that follow its `docker_host`, while its dead swarm node and Consul member are cleaned up. " +
					"Choose `power_on` to keep the droplet (its disk, its addresses) and boot it in place; `ignore` leaves it off.",
				Optional:   true,
				Computed:   true,
				Default:    stringdefault.StaticString(whenOffReplace),
				Validators: []validator.String{stringvalidator.OneOf(whenOffActions...)},
			},
			"firewall": firewallAttribute(),
			"timeouts": withDurationValidators(timeouts.Attributes(ctx, timeouts.Opts{Create: true, Update: true, Delete: true,
				CreateDescription: "How long creating may take, from the API call until SSH and Docker answer. Default: `10m`.",
				UpdateDescription: "How long a rename, retag or resize may take. Default: `10m`.",
				DeleteDescription: "How long deleting may take. Default: `5m`."})),
		},
	}
}

func (r *dropletNodeResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

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

// dropletTagsDescription describes tags, and the provider's own tags beside them.
var dropletTagsDescription = "Tags. Change in place. The provider also writes tags of its own, not shown here and not allowed here: `" +
	droplet.ManagedTag + "`, `" + droplet.IdempotencyTagPrefix + "TOKEN`, `" + droplet.StackTagPrefix + "ID` (the provider's `stack_id`) " +
	"and, until a refresh reads the droplet, `" + droplet.PendingTagPrefix + "...` and `" + droplet.RunTagPrefix + "RUN`, by which an interrupted create's droplet is found again " +
	"(see Interrupted and concurrent applies)."

// waitReady waits for the droplet to be active, then for SSH and the Docker API.
func (r *dropletNodeResource) waitReady(ctx context.Context, id int, target conn.Target) (*droplet.Droplet, droplet.Readiness, diag.Diagnostics) {
	var diags diag.Diagnostics
	d, err := r.data.cloud.WaitStatus(ctx, id, "active")
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
	return d, ready, diags
}

func (r *dropletNodeResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state dropletNodeModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.data == nil || r.data.cloud == nil {
		resp.Diagnostics.AddError("Missing DigitalOcean Token", "Reading microswarm_droplet_node needs the provider's do_token.")
		return
	}
	id, err := strconv.Atoi(state.ID.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("id"), "Invalid Droplet ID", fmt.Sprintf("%q is not a numeric droplet ID.", state.ID.ValueString()))
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
		resp.Diagnostics.AddAttributeError(path.Root("id"), "Invalid Droplet ID", err.Error())
		return
	}
	cloud := r.data.cloud

	if !plan.Name.Equal(state.Name) {
		if err := cloud.Rename(ctx, id, plan.Name.ValueString()); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("name"), "Could Not Rename Droplet", err.Error())
			return
		}
	}
	if !plan.Tags.Equal(state.Tags) {
		current, wanted := stringSet(ctx, state.Tags, &resp.Diagnostics), stringSet(ctx, plan.Tags, &resp.Diagnostics)
		if resp.Diagnostics.HasError() {
			return
		}
		if err := cloud.SetTags(ctx, id, current, wanted); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("tags"), "Could Not Update Droplet Tags", err.Error())
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
		diags.AddAttributeError(at, summary, err.Error())
		return false
	}
	_, ready, waitDiags := r.waitReady(ctx, id, conn.Target{HostKey: hostKey})
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
