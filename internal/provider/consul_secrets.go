package provider

import (
	"context"
	"fmt"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/objectvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// The secrets of microswarm_consul_server and microswarm_consul_agent: the gossip key
// (encrypt, or write-only encrypt_wo with its rotation) and ACLs (acl, the write-only
// management token, the agent token the provider makes). Write-only values exist only in
// the configuration during an apply; Create and Update read them with consulWriteOnly.

// consulSecretAttributes are the secret-handling attributes both resources share.
func consulSecretAttributes(noun string) map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"encrypt": schema.StringAttribute{
			MarkdownDescription: "Gossip encryption key, as `consul keygen` prints it (base64 of 32 bytes). **Stored in the Terraform state** (`Sensitive` " +
				"only hides it in output): prefer `encrypt_wo` with Terraform 1.11 or later. Written into a config file in the container, " +
				"never on the command line or in a label. Consul keeps the key in its data from the first start on, so changing it replaces the " + noun +
				" (and its data); rotate the key of a live cluster with `encrypt_wo` and `encrypt_wo_version` instead. Moving the same key from `encrypt` " +
				"to `encrypt_wo` recreates the container in place. Not read back after an import. Conflicts with `encrypt_wo`.",
			Optional:      true,
			Sensitive:     true,
			Validators:    []validator.String{consulGossipKeyValidator(), stringvalidator.ConflictsWith(path.MatchRoot("encrypt_wo"))},
			PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplaceIf(consulReplaceEncrypt, "Replaces the agent when the key changes (not when an import left it unset, nor when the key moves to encrypt_wo).", "Replaces the agent when the key changes (not when an import left it unset, nor when the key moves to `encrypt_wo`).")},
		},
		"encrypt_wo": schema.StringAttribute{
			MarkdownDescription: "Gossip encryption key, as `consul keygen` prints it, **write-only**: Terraform (1.11 or later) passes it to the provider " +
				"at apply and never stores it in the state or the plan; feed it from an `ephemeral = true` variable or an ephemeral resource. " +
				"Requires `encrypt_wo_version`. A new " + noun + " starts with this key. Since Terraform cannot see a write-only value change, " +
				"a new key takes effect only when `encrypt_wo_version` changes: the provider then rotates the running cluster's keyring to it " +
				"(see `encrypt_wo_version`), without restarting any container.",
			Optional:   true,
			WriteOnly:  true,
			Sensitive:  true,
			Validators: []validator.String{consulGossipKeyValidator(), stringvalidator.AlsoRequires(path.MatchRoot("encrypt_wo_version"))},
		},
		"encrypt_wo_version": schema.Int64Attribute{
			MarkdownDescription: "Version of `encrypt_wo`, any number you choose; change it (`1` to `2`) together with `encrypt_wo` to rotate the gossip key " +
				"in place. The rotation is Consul's keyring rotation, done through this agent's API for the whole cluster: the new key is installed on " +
				"every member (they then read both keys), made the primary key on every member, then every other key is removed; each step needs every " +
				"member to answer, so a member that is down fails the apply before any key is removed, and the next apply resumes. One resource of the " +
				"cluster does the work, the others find it done; give every server and agent of a cluster the same key and version. A member that was " +
				"down during a rotation still has only the old key: replace it. Turning `encrypt_wo` on for a cluster that has no gossip encryption " +
				"recreates the container, as for `encrypt`.",
			Optional:   true,
			Validators: []validator.Int64{int64validator.AlsoRequires(path.MatchRoot("encrypt_wo"))},
		},
		"acl": schema.SingleNestedAttribute{
			MarkdownDescription: "Turns Consul's ACL system on: every request needs a token whose rules allow it, and a request without one is judged " +
				"by `default_policy`. Requires `acl_token_wo`. Every server and agent of a cluster sets the same `acl`. The provider gives the " + noun +
				" its own least-privilege token (write on its node, read on services), made with `acl_token_wo` and set through the agent's API " +
				"(persisted on its volume); only the token's accessor ID is recorded (`acl_agent_token_accessor`). Turning it on or changing it " +
				"recreates the container in place. A refresh and a destroy never get `acl_token_wo` (write-only values reach creates and updates " +
				"only): they use the provider's `consul_management_token` when it is set. Without it, a refresh keeps the " + noun + "'s last " +
				"known status, and the graceful leave on destroy is refused, so the servers mark the node failed instead.",
			Optional: true,
			Attributes: map[string]schema.Attribute{
				"default_policy": schema.StringAttribute{
					MarkdownDescription: "What a request without a token, or with a token whose rules do not say, may do: " + describeOneOf(consul.ACLPolicies) +
						". Default: `deny` (nothing: anonymous writes to the catalog and the KV store are refused).",
					Optional: true, Computed: true, Default: stringdefault.StaticString(consul.ACLDeny),
					Validators: []validator.String{stringvalidator.OneOf(consul.ACLPolicies...)},
				},
			},
			Validators: []validator.Object{objectvalidator.AlsoRequires(path.MatchRoot("acl_token_wo"))},
		},
		"acl_token_wo": schema.StringAttribute{
			MarkdownDescription: "A Consul ACL management token (a UUID, `uuidgen`), **write-only**: never stored in the state or the plan; feed it from an " +
				"`ephemeral = true` variable. On servers it is the `initial_management` token that bootstraps the ACL system when the cluster first " +
				"elects a leader (written into the container's config file, mode 0600, never on the command line). On every " + noun + " it is the token " +
				"the provider talks to the agent with during an apply and makes the agent's own token with. Requires `acl` and `acl_token_wo_version`.",
			Optional:   true,
			WriteOnly:  true,
			Sensitive:  true,
			Validators: []validator.String{stringCheck{"Invalid ACL Token", "must be a UUID", consul.ValidateACLToken}, stringvalidator.AlsoRequires(path.MatchRoot("acl"), path.MatchRoot("acl_token_wo_version"))},
		},
		"acl_token_wo_version": schema.Int64Attribute{
			MarkdownDescription: "Version of `acl_token_wo`; change it when you give the provider another management token (made in Consul, e.g. " +
				"`consul acl token create -policy-name global-management`; delete the old one after the apply). The bootstrap token of a running " +
				"cluster is not changed by it: Consul uses `initial_management` only once. Nothing is restarted.",
			Optional:   true,
			Validators: []validator.Int64{int64validator.AlsoRequires(path.MatchRoot("acl_token_wo"))},
		},
		"acl_agent_token_accessor": schema.StringAttribute{
			MarkdownDescription: "Accessor ID (not secret) of the agent token the provider made for this " + noun + " when `acl` is set; null otherwise. " +
				"The token's secret is never stored.",
			Computed: true,
		},
	}
}

// consulReplaceEncrypt replaces on a changed key, except when the prior state has none
// because an import could not read it back, and when the key moves to encrypt_wo (the
// container's keyring already holds it; a different key is rotated in by Update).
func consulReplaceEncrypt(ctx context.Context, req planmodifier.StringRequest, resp *stringplanmodifier.RequiresReplaceIfFuncResponse) {
	if req.StateValue.IsNull() || req.PlanValue.Equal(req.StateValue) {
		return
	}
	var version types.Int64
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("encrypt_wo_version"), &version)...)
	resp.RequiresReplace = !(req.PlanValue.IsNull() && !version.IsNull())
}

// consulWriteOnly reads a write-only attribute from the configuration: its value is there
// during an apply, and in no plan or state.
func consulWriteOnly(ctx context.Context, cfg tfsdk.Config, name string, diags *diag.Diagnostics) string {
	var v types.String
	diags.Append(cfg.GetAttribute(ctx, path.Root(name), &v)...)
	return v.ValueString()
}

// consulEnsureAgentToken gives the agent its own least-privilege token when ACLs are on,
// retrying while the ACL system is not ready yet (a fresh leader bootstraps it; a client
// agent forwards to the servers only once it has joined), and records its accessor ID.
func consulEnsureAgentToken(ctx context.Context, api *consulapi.Client, spec consul.Spec, m *consulContainerModel, diags *diag.Diagnostics) {
	if spec.ACL == nil {
		m.ACLAgentToken = types.StringNull()
		return
	}
	var tok consul.ManagedToken
	err := wait.Until(ctx, wait.Options{What: "the agent's ACL token", Interval: 250 * time.Millisecond, MaxInterval: time.Second},
		func(ctx context.Context) (bool, string, error) {
			var err error
			tok, err = consul.EnsureAgentToken(ctx, api)
			if err != nil {
				return false, err.Error(), wait.Retryable(err)
			}
			return true, "", nil
		})
	if err != nil {
		attrError(diags, path.Root("acl"), "Could Not Give the Consul Agent Its ACL Token", fmt.Sprintf(
			"Container %s on %s: %s.\n\nCheck that acl_token_wo is a management token of this cluster (on the servers, the one they "+
				"bootstrapped with) and that the servers have a leader, then apply again.", spec.ContainerName, m.Host.ValueString(), err))
		return
	}
	m.ACLAgentToken = types.StringValue(tok.AccessorID)
}

// consulRotateGossipKey rotates the cluster's gossip keyring to the write-only key when
// encrypt_wo_version changed. On a container that has just started with that key (gossip
// encryption turned on) there is nothing to rotate, and RotateGossipKey only lists. A
// failed rotation keeps the old version in plan, so the next plan asks for it again.
func consulRotateGossipKey(ctx context.Context, api *consulapi.Client, spec consul.Spec, plan, state *consulContainerModel, diags *diag.Diagnostics) {
	if !spec.EncryptWriteOnly || plan.EncryptWOVer.Equal(state.EncryptWOVer) {
		return
	}
	res, err := consul.RotateGossipKey(ctx, api.Operator(), spec.Encrypt)
	if err != nil {
		plan.EncryptWOVer = state.EncryptWOVer
		attrError(diags, path.Root("encrypt_wo_version"), "Gossip Key Rotation Failed", fmt.Sprintf(
			"Rotating the gossip keyring to version %d of encrypt_wo through %s on %s: %s.\n\nEvery member of the cluster must answer each step "+
				"(install, use, remove the old keys); nothing after the failed step ran, so the members still understand each other. Bring back "+
				"the members that are down (or replace them), then apply again: the rotation resumes where it stopped.",
			plan.EncryptWOVer.ValueInt64(), spec.ContainerName, plan.Host.ValueString(), err))
		return
	}
	tflog.Info(ctx, "rotated the consul gossip key", map[string]any{"container": spec.ContainerName, "version": plan.EncryptWOVer.ValueInt64(),
		"installed": res.Installed, "old_keys_removed": res.Removed})
}

// registratorACLTokenAttribute is microswarm_registrator's management token.
func registratorACLTokenAttribute() schema.StringAttribute {
	return schema.StringAttribute{
		MarkdownDescription: "A Consul ACL management token (a UUID), **write-only**: never stored in the state or the plan; feed it from an " +
			"`ephemeral = true` variable. With it the provider makes (or finds again) the registrator's own least-privilege token, " +
			"`microswarm-registrator-NAME`: write on services (register and deregister them and their checks), read on nodes and agents, " +
			"nothing on the KV store, ACLs or the operator API. It makes it through the Consul agent `backend` names, on `host`, and hands " +
			"it to the tasks as a swarm secret. Requires `acl_token_wo_version` and a `consul://` backend, or a `consul-tls://` one with the " +
			"provider's `consul_ca_pem`.",
		Optional:   true,
		WriteOnly:  true,
		Sensitive:  true,
		Validators: []validator.String{stringCheck{"Invalid ACL Token", "must be a UUID", consul.ValidateACLToken}, stringvalidator.AlsoRequires(path.MatchRoot("acl_token_wo_version"))},
	}
}

// registratorToken makes (or finds) the registrator's least-privilege token through the
// Consul agent its backend names, on its manager, and returns the token's secret.
func (d *providerData) registratorToken(ctx context.Context, m registratorModel, management string, diags *diag.Diagnostics) string {
	backend := m.Backend.ValueString()
	cfg := conn.ConsulConfig{Scheme: "http"}
	addr, ok := strings.CutPrefix(backend, "consul://")
	if tlsAddr, isTLS := strings.CutPrefix(backend, "consul-tls://"); isTLS && d.consul != nil && d.consul.CAPEM != "" {
		var err error
		if cfg, err = d.consul.Config(tlsAddr); err != nil {
			attrError(diags, path.Root("backend"), "Invalid Consul TLS Material", err.Error())
			return ""
		}
		addr, ok = tlsAddr, true
	}
	if !ok {
		attrError(diags, path.Root("acl_token_wo"), "Backend Not Supported With acl_token_wo", fmt.Sprintf(
			"The provider makes the registrator's token through a consul:// backend, or a consul-tls:// one with the provider's "+
				"consul_ca_pem; %s is not one. Make a token with the rules of consul.RegistratorRules yourself and pass it as consul_token.", backend))
		return ""
	}
	hostKey := m.HostKey
	h := d.reachNode(ctx, path.Root("host"), m.Host.ValueString(), &hostKey, mustReach, "", diags)
	if h == nil {
		return ""
	}
	cfg.Address, cfg.Token = addr, management
	api, err := h.Consul(cfg)
	if err == nil {
		var tok consul.ManagedToken
		if tok, err = consul.EnsureToken(ctx, api, "registrator-"+m.Name.ValueString(), consul.RegistratorRules); err == nil {
			return tok.SecretID
		}
	}
	attrError(diags, path.Root("acl_token_wo"), "Could Not Make the Registrator's Consul Token", fmt.Sprintf(
		"Through the Consul agent at %s on %s: %s. Check that acl_token_wo is a management token of this cluster and that the agent "+
			"answers, then apply again.", addr, m.Host.ValueString(), err))
	return ""
}
