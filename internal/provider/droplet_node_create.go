package provider

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
)

// Creating a droplet node: the create request, adoption of an interrupted create's
// droplet (see the resource's docs, "Interrupted and concurrent applies"), the host keys.

// refuseUnclaimed fails the plan of a create, with no stack_id, that would meet droplets an
// identical configuration left pending and no live run holds: this workspace's lost
// creates, or another workspace's not yet claimed, which nothing can tell apart. Plans
// with values not known yet are checked by the create itself.
func (r *dropletNodeResource) refuseUnclaimed(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	var plan dropletNodeModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	for _, v := range []attr.Value{plan.Name, plan.Region, plan.Size, plan.Image, plan.UserData, plan.SSHKeys, plan.Tags, plan.Monitoring} {
		if v.IsUnknown() {
			return
		}
	}
	spec, diags := r.spec(ctx, plan)
	if diags.HasError() {
		return
	}
	fingerprint, err := providerKeyFingerprint(r.data.sshPublicKey)
	if err != nil {
		return // ModifyPlan reports a missing key
	}
	spec.SSHKeys = append(spec.SSHKeys, fingerprint)
	spec.PendingTag = r.data.stack.PendingTag(spec)
	left, err := r.data.cloud.Unclaimed(ctx, spec)
	if err != nil {
		resp.Diagnostics.AddWarning("Could Not Look for Pending Droplets", fmt.Sprintf(
			"Listing the droplets an interrupted create of %s may have left failed, so the apply checks: %s.", spec.Name, err))
		return
	}
	if len(left) > 0 {
		resp.Diagnostics.AddError("Droplet Left Pending by an Interrupted Run", unclaimedDetail(&droplet.UnclaimedError{Droplets: left}))
	}
}

func (r *dropletNodeResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan dropletNodeModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := withTimeout(ctx, plan.Timeouts.Create, 10*time.Minute, &resp.Diagnostics)
	defer cancel()
	if resp.Diagnostics.HasError() {
		return
	}

	start := time.Now()
	// phase logs a step of the create at DEBUG, with the time since it began: a create's
	// profile (API, boot, SSH, firewall) for TF_LOG_PROVIDER=DEBUG and bench/README.md.
	phase := func(step string, fields map[string]any) {
		fields["step"], fields["after"] = step, time.Since(start).Round(time.Millisecond).String()
		tflog.Debug(ctx, "droplet create", fields)
	}
	creq, diags := r.prepareCreate(ctx, plan)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	plan.IdempotencyToken = types.StringValue(creq.token)

	d, adopted, err := r.data.cloud.Create(ctx, creq.spec)
	var unclaimed *droplet.UnclaimedError
	if errors.As(err, &unclaimed) {
		resp.Diagnostics.AddError("Droplet Left Pending by an Interrupted Run", unclaimedDetail(unclaimed))
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Could Not Create Droplet", err.Error())
		return
	}
	phase("created", map[string]any{"droplet_id": d.ID, "adopted": adopted})
	token := creq.token
	hostKey := creq.hostKey
	if adopted {
		// It got the host key derived from its own create's token: pin that one (or the
		// one that create rotated to, derived from the same token).
		token = d.IdempotencyToken
		if hostKey, err = r.data.stack.HostKey(token); err != nil {
			resp.Diagnostics.AddError("Could Not Derive the Adopted Droplet's Host Key", fmt.Sprintf("Droplet %d: %s.", d.ID, err))
			return
		}
		resp.Diagnostics.AddWarning("Adopted a Droplet From an Interrupted Create", adoptedDetail(d, creq.pinned))
	}
	plan.IdempotencyToken = types.StringValue(token)
	rotated, err := r.data.stack.RotatedHostKey(token)
	if err != nil {
		resp.Diagnostics.AddError("Could Not Derive the Node's Host Key", fmt.Sprintf("Droplet %d: %s.", d.ID, err))
		return
	}
	plan.ID = types.StringValue(strconv.Itoa(d.ID))
	// Saved before the long waits: a failure from here on taints the droplet instead of
	// orphaning it. The droplet stays pending (adoptable by the next apply of this stack
	// once this run is over) until a Read, which only runs for resources in state, claims
	// it: terraform may be killed before it saves this state.
	r.fillComputed(&plan, d, "", "")
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}

	target := conn.Target{} // a key user data could not carry: known_hosts or host_key_policy decide
	if creq.pinned {
		// The key user data handed over, or the one that replaces it (an adopted droplet
		// whose lost create got that far): both derived from the token, nothing else.
		target.HostKey = hostKey.Public + "\n" + rotated.Public
	}
	d, ready, diags := r.waitReady(ctx, d.ID, target, phase)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.prefetchImages(ctx, d, ready.HostKey, plan.PrefetchImages) {
		phase("image pulls started", map[string]any{"droplet_id": d.ID})
	}
	// The host key's installation and the firewall's rules at once, over the one pooled
	// connection (pinned to either of the token's keys: both are this node's); neither
	// needs the other. The new key is proven on a fresh connection only afterwards, as
	// that replaces the pooled one and would cut the other step's session.
	pin := ready.HostKey
	if creq.pinned {
		pin = target.HostKey
	}
	rotate := creq.pinned && ready.HostKey != rotated.Public
	var rotateDiags, firewallDiags diag.Diagnostics
	var steps sync.WaitGroup
	if rotate {
		// The private key handed over in user_data stays readable from the metadata
		// service: replace it at once, and pin the new one.
		steps.Go(func() { rotateDiags = r.installHostKey(ctx, d, pin, rotated) })
	}
	if plan.Firewall.ValueString() == droplet.FirewallStack {
		steps.Go(func() {
			if firewallDiags = r.applyFirewall(ctx, d, pin, droplet.FirewallStack); !firewallDiags.HasError() {
				phase("firewall set", map[string]any{"droplet_id": d.ID})
			}
		})
	}
	steps.Wait()
	if rotate && !rotateDiags.HasError() {
		rotateDiags = r.confirmHostKey(ctx, d, rotated)
	}
	resp.Diagnostics.Append(rotateDiags...)
	resp.Diagnostics.Append(firewallDiags...)
	if resp.Diagnostics.HasError() {
		return
	}
	if rotate {
		phase("host key rotated", map[string]any{"droplet_id": d.ID})
	}
	if creq.pinned {
		ready.HostKey = rotated.Public
	}
	r.fillComputed(&plan, d, ready.HostKey, ready.DockerVersion)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// unclaimedDetail explains a create refused because droplets an identical configuration
// left pending cannot be told to be this workspace's.
func unclaimedDetail(e *droplet.UnclaimedError) string {
	return fmt.Sprintf("Nothing was created: %s. Adopting them could give this workspace another workspace's nodes, "+
		"and creating more could orphan this workspace's. If the interrupted apply was this workspace's, import each one "+
		"into this node's address (terraform import ADDRESS ID), then apply again. If another workspace of this "+
		"configuration made them, run terraform plan or apply there (its refresh claims them) and give each workspace "+
		"its own provider stack_id, so their creates never meet. With stack_id set, an interrupted create is adopted "+
		"by the next apply on its own.", e.Error())
}

// createRequest is what Create sends for a plan.
type createRequest struct {
	spec    droplet.Spec
	token   string          // this create's idempotency token
	hostKey droplet.HostKey // handed over in user data, derived from the token
	pinned  bool            // whether user data could carry hostKey (see droplet.WithHostKey)
}

// prepareCreate builds the create request for a plan: the provider's key among the
// account keys, a fresh idempotency token, the stack's pending tag for this create, and
// the host key derived from the token in user data.
func (r *dropletNodeResource) prepareCreate(ctx context.Context, plan dropletNodeModel) (createRequest, diag.Diagnostics) {
	var creq createRequest
	if r.data.stack == nil { // ModifyPlan refuses a plan without an SSH key
		var diags diag.Diagnostics
		diags.AddError("Missing SSH Private Key", "microswarm_droplet_node needs the provider's ssh_private_key or ssh_private_key_file.")
		return creq, diags
	}
	spec, diags := r.spec(ctx, plan)
	if diags.HasError() {
		return creq, diags
	}
	providerKey, err := r.registerProviderKey(ctx)
	if err != nil {
		diags.AddError("Could Not Register the Provider's SSH Key", err.Error())
		return creq, diags
	}
	spec.SSHKeys = append(spec.SSHKeys, providerKey)
	// Made here, not in the plan: Terraform plans a create twice (plan, then apply) and
	// refuses a random value that differs between the two.
	if creq.token, err = newIdempotencyToken(); err != nil {
		diags.AddError("Could Not Make an Idempotency Token", err.Error())
		return creq, diags
	}
	spec.IdempotencyTag = droplet.IdempotencyTag(creq.token)
	spec.StackID = r.data.stack.ID
	spec.PendingTag = r.data.stack.PendingTag(spec) // of the user's user data, before the host key joins it

	if creq.hostKey, err = r.data.stack.HostKey(creq.token); err != nil {
		diags.AddError("Could Not Generate a Host Key", err.Error())
		return creq, diags
	}
	if spec.UserData, creq.pinned, err = droplet.WithHostKey(spec.UserData, creq.hostKey); err != nil {
		attrError(&diags, path.Root("user_data"), "Invalid User Data", err.Error())
		return creq, diags
	}
	creq.spec = spec
	return creq, diags
}

// adoptedDetail explains an adoption, and how the adopted droplet's host key is checked:
// exactly as a created droplet's, never on trust.
func adoptedDetail(d *droplet.Droplet, pinned bool) string {
	key := "Its host key is the one that create handed it in user data, or the one that replaces it right after, both " +
		"derived again from the create's token and the provider's SSH key: pinned as for a new droplet."
	if !pinned {
		key = "Its user data could not carry a host key, so its own key is checked as for a new droplet: by the provider's " +
			"ssh_known_hosts_file or host_key_policy."
	}
	return fmt.Sprintf("Droplet %d (%s in %s) was made by an earlier run of this node's create that is no longer going "+
		"(killed or interrupted before Terraform saved it). It still carries that create's pending tag, which only the "+
		"same stack (stack_id and SSH key) computes for the same name, region and settings, and the tag of a run whose "+
		"lease lapsed, so it was adopted rather than created again. %s", d.ID, d.Name, d.Region, key)
}

// installHostKey replaces the host key a new droplet got through user_data with the
// derived one that follows it, over a connection pinned to pin; sshd has loaded it when it
// returns (confirmHostKey proves it from outside).
func (r *dropletNodeResource) installHostKey(ctx context.Context, d *droplet.Droplet, pin string, rotated droplet.HostKey) diag.Diagnostics {
	host := r.dockerHost(d)
	h, err := r.data.pool.Open(ctx, conn.Target{Host: host, HostKey: pin})
	if err == nil {
		err = droplet.InstallHostKey(ctx, h, rotated)
	}
	return hostKeyRotationError(d, host, err)
}

// confirmHostKey proves sshd serves the new key: a fresh connection pinned to it.
func (r *dropletNodeResource) confirmHostKey(ctx context.Context, d *droplet.Droplet, rotated droplet.HostKey) diag.Diagnostics {
	host := r.dockerHost(d)
	_, err := r.data.pool.Open(ctx, conn.Target{Host: host, HostKey: rotated.Public})
	return hostKeyRotationError(d, host, err)
}

func hostKeyRotationError(d *droplet.Droplet, host string, err error) diag.Diagnostics {
	var diags diag.Diagnostics
	if err != nil {
		diags.AddError("Could Not Rotate the Node's Host Key", fmt.Sprintf("Droplet %d (%s): %s. The droplet is kept (and tainted): "+
			"the host key in its user_data is readable from the metadata service, so apply again to replace it.", d.ID, host, err))
	}
	return diags
}

// newIdempotencyToken is 128 random bits, hex: unique to one node of one stack.
func newIdempotencyToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// registerProviderKey makes sure the provider's public key is an account key and returns
// its fingerprint.
func (r *dropletNodeResource) registerProviderKey(ctx context.Context) (string, error) {
	d := r.data
	d.registerKeyMu.Lock()
	defer d.registerKeyMu.Unlock()
	if d.registeredKey != "" {
		return d.registeredKey, nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(d.sshPublicKey))
	if err != nil {
		return "", err
	}
	fingerprint, _ := providerKeyFingerprint(d.sshPublicKey)
	sum := sha256.Sum256(pub.Marshal())
	name := "microswarm-provider-" + hex.EncodeToString(sum[:4])
	key, err := d.cloud.EnsureSSHKey(ctx, name, d.sshPublicKey, fingerprint)
	if err != nil {
		return "", err
	}
	d.registeredKey = key
	return key, nil
}

// providerKeyFingerprint is the account key id the provider's key is registered under
// (its MD5 fingerprint), known without asking the API.
func providerKeyFingerprint(publicKey string) (string, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(publicKey))
	if err != nil {
		return "", err
	}
	return ssh.FingerprintLegacyMD5(pub), nil
}

// prefetchImages starts the node's background pulls of prefetch_images, over the
// connection pinned to hostKey. Best effort, as the attribute says: what goes wrong is
// logged, and the resource that needs an image pulls it itself.
func (r *dropletNodeResource) prefetchImages(ctx context.Context, d *droplet.Droplet, hostKey string, list types.List) (started bool) {
	images, ok := knownStrings(ctx, list)
	if !ok || len(images) == 0 {
		return false
	}
	host := r.dockerHost(d)
	h, err := r.data.pool.Open(ctx, conn.Target{Host: host, HostKey: hostKey})
	if err == nil {
		var state string
		state, err = droplet.PrefetchImages(ctx, func(ctx context.Context, script string) (string, error) { return h.Run(ctx, script, nil) }, images)
		if err == nil && state != "started" {
			err = fmt.Errorf("the node has no docker command to pull with (%s)", state)
		}
	}
	if err != nil {
		tflog.Warn(ctx, "could not start the node's image pulls; the resources that need the images pull them", map[string]any{"droplet_id": d.ID, "error": err.Error()})
		return false
	}
	tflog.Debug(ctx, "node image pulls started", map[string]any{"droplet_id": d.ID, "images": images})
	return true
}
