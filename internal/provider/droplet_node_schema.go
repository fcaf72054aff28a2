package provider

import (
	"context"
	"fmt"
	"regexp"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
)

// maxPrefetchImages bounds prefetch_images: a node pulls them one after another.
const maxPrefetchImages = 20

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
			"prefetch_images": schema.ListAttribute{
				MarkdownDescription: "Images the node starts pulling as soon as its engine answers, one after another in this order, while the provider " +
					"finishes setting the node up and the resources that run them still wait for it (its Consul container, the registrator, a " +
					"microservice's images and proxy). Those then find the image there, or join the pull in progress, instead of pulling from " +
					"the start. It pays where a pull waits on the network and each node has its own CPU, as droplets do: the pull overlaps the " +
					"node's setup (host key, firewall) and the swarm's forming. Where the nodes share few cores (the local cloud), the pulls only " +
					"compete with the setup for them. Best effort: the pulls run on the node in the background, through its `docker` command, and are not waited " +
					"for; one that fails (a private registry the node has no login for, an image without the `docker` command) is left to the " +
					"resource that needs the image, which pulls it itself and reports what fails. The pulls log to " +
					"`/var/log/microswarm-prefetch.log` on the node. Acted on when the droplet is created, so by every replacement too; " +
					"changing it later is recorded and changes nothing on the node.",
				ElementType: types.StringType,
				Optional:    true,
				Validators: []validator.List{
					listvalidator.SizeAtMost(maxPrefetchImages),
					listvalidator.UniqueValues(),
					listvalidator.ValueStringsAre(imageValidator()),
				},
			},
			"timeouts": withDurationValidators(timeouts.Attributes(ctx, timeouts.Opts{Create: true, Read: true, Update: true, Delete: true,
				ReadDescription:   readTimeoutDescription,
				CreateDescription: "How long creating may take, from the API call until SSH and Docker answer. Default: `10m`.",
				UpdateDescription: "How long a rename, retag or resize may take. Default: `10m`.",
				DeleteDescription: "How long deleting may take. Default: `5m`."})),
		},
	}
}

// dropletTagsDescription describes tags, and the provider's own tags beside them.
var dropletTagsDescription = "Tags. Change in place. The provider also writes tags of its own, not shown here and not allowed here: `" +
	droplet.ManagedTag + "`, `" + droplet.IdempotencyTagPrefix + "TOKEN`, `" + droplet.StackTagPrefix + "ID` (the provider's `stack_id`) " +
	"and, until a refresh reads the droplet, `" + droplet.PendingTagPrefix + "...` and `" + droplet.RunTagPrefix + "RUN`, by which an interrupted create's droplet is found again " +
	"(see Interrupted and concurrent applies)."

// providerTagValidator refuses, in a droplet's tags, the tags the provider writes itself
// and hides from `tags` (an idempotency, pending or stack tag): Read could never show them.
func providerTagValidator() validator.String {
	return stringCheck{"Reserved Tag", "must not be one of the provider's own tags (" + droplet.IdempotencyTagPrefix + "..., " +
		droplet.PendingTagPrefix + "..., " + droplet.StackTagPrefix + "...)", func(s string) error {
		if droplet.IsProviderTag(s) {
			return fmt.Errorf("%q is a tag the provider writes itself and hides from tags; choose another", s)
		}
		return nil
	}}
}
