package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
)

func consulRoleNoun(role consul.Role) string {
	if role == consul.RoleServer {
		return "server"
	}
	return "client agent"
}

// consulSchemaAttributes are the attributes both resources share.
func consulSchemaAttributes(ctx context.Context, role consul.Role) map[string]schema.Attribute {
	noun := consulRoleNoun(role)
	inPlace := "Changes in place: the container is recreated on the same data volume"
	if role == consul.RoleServer {
		inPlace += ", one server at a time across the cluster, never while another server is unhealthy (a rolling restart that keeps quorum)"
	}
	inPlace += "."
	defaultName := consul.DefaultAgentContainerName
	if role == consul.RoleServer {
		defaultName = consul.DefaultServerContainerName
	}
	portAttrs := map[string]schema.Attribute{}
	defaults := consul.DefaultPorts(role)
	for _, p := range consulPortsOf(role) {
		def := *p.get(&defaults)
		desc := fmt.Sprintf("Port of the %s. Default: `%d`.", p.description, def)
		validators := []validator.Int64{int64validator.Between(1, 65535)}
		if p.mayDisable {
			desc += " `-1` turns it off."
			validators = []validator.Int64{int64validator.Any(int64validator.Between(1, 65535), int64validator.OneOf(consul.PortDisabled))}
		}
		portAttrs[p.name] = schema.Int64Attribute{
			MarkdownDescription: desc, Optional: true, Computed: true,
			Default: int64default.StaticInt64(int64(def)), Validators: validators,
		}
	}
	attrs := map[string]schema.Attribute{
		"id": schema.StringAttribute{
			MarkdownDescription: "`HOST,CONTAINER_NAME`, also the import ID.",
			Computed:            true,
			PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
		},
		"host": schema.StringAttribute{
			MarkdownDescription: "The Docker host of the node: `ssh://root@IP` (pass `microswarm_droplet_node.x.docker_host`), " +
				"`unix:///var/run/docker.sock` or `tcp://IP:PORT`. Changing it replaces the " + noun + ".",
			Required:      true,
			Validators:    []validator.String{hostValidator{}},
			PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
		},
		"host_key": schema.StringAttribute{
			MarkdownDescription: "The node's pinned SSH host key (pass `microswarm_droplet_node.x.ssh_host_key`). When unset, the provider's " +
				"known_hosts file and `host_key_policy` decide, and the key seen is recorded here and pinned from then on. " +
				"After an import too, only known_hosts or `host_key_policy` vouch for an unpinned key (`strict` refuses it); the key accepted is recorded: set it in the config. Changing it replaces the " + noun + ".",
			Optional:      true,
			Computed:      true,
			Validators:    []validator.String{sshPublicKeyValidator{}},
			PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown(), stringplanmodifier.RequiresReplaceIfConfigured()},
		},
		"container_name": schema.StringAttribute{
			MarkdownDescription: "Name of the container; its data volume is `<container_name>-data`. Default: `" + defaultName + "`. Changing it replaces the " + noun + ".",
			Optional:            true,
			Computed:            true,
			Default:             stringdefault.StaticString(defaultName),
			Validators:          []validator.String{stringvalidator.RegexMatches(consul.ContainerNamePattern(), "must be a Docker container name: letters, digits, '_', '.' and '-'")},
			PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
		},
		"image": schema.StringAttribute{
			MarkdownDescription: "The Consul image. It must work like the official one: its entrypoint runs `agent ARGS` as `consul agent -data-dir=/consul/data -config-dir=/consul/config ARGS`, " +
				"as the user that `CONSUL_UID`/`CONSUL_GID` name (the provider sets 100/1000, the official image's `consul` user, and copies the agent's files in as theirs), and its binary is at `/bin/consul`. Pulled if the node lacks it. " +
				"Default: `" + consul.DefaultImage + "`. " + inPlace,
			Optional:   true,
			Computed:   true,
			Default:    stringdefault.StaticString(consul.DefaultImage),
			Validators: []validator.String{imageValidator()},
		},
		"datacenter": schema.StringAttribute{
			MarkdownDescription: "Consul datacenter; every agent of a cluster names the same one. Default: `" + consul.DefaultDatacenter + "`. Changing it replaces the " + noun + " (and its data).",
			Optional:            true,
			Computed:            true,
			Default:             stringdefault.StaticString(consul.DefaultDatacenter),
			Validators:          []validator.String{stringvalidator.RegexMatches(consul.DatacenterPattern, "must be lower-case letters, digits, '_' and '-'")},
			PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
		},
		"node_name": schema.StringAttribute{
			MarkdownDescription: "Consul node name, unique in the cluster. Default: the node's hostname (the droplet name). Changing it replaces the " + noun + ".",
			Optional:            true,
			Validators:          []validator.String{stringvalidator.RegexMatches(consul.NodeNamePattern, "must be letters, digits and '-', at most 63, as in a DNS label")},
			PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
		},
		"advertise_addr": schema.StringAttribute{
			MarkdownDescription: "The address the agent binds to and advertises to the cluster: pass `microswarm_droplet_node.x.ipv4_address_private`. Changing it replaces the " + noun + ".",
			Required:            true,
			Validators:          []validator.String{consulAdvertiseValidator()},
			PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
		},
		"client_addr": schema.StringAttribute{
			MarkdownDescription: "The address the HTTP API and DNS listen on. Default: `" + consul.DefaultClientAddr + "`: the provider reaches the API through SSH, " +
				"so it never needs to be exposed. " + inPlace,
			Optional:   true,
			Computed:   true,
			Default:    stringdefault.StaticString(consul.DefaultClientAddr),
			Validators: []validator.String{consulIPValidator()},
		},
		"ui": schema.BoolAttribute{
			MarkdownDescription: "Serve the web UI on the HTTP API port. Default: `false`. " + inPlace,
			Optional:            true,
			Computed:            true,
			Default:             booldefault.StaticBool(false),
		},
		"tls": schema.SingleNestedAttribute{
			MarkdownDescription: "TLS for RPC between agents and for the HTTP API, which is then HTTPS on `ports.http` (gossip is protected by `encrypt`). The PEMs are copied into the container; the provider " +
				"verifies the API with `ca_pem` and presents `cert_pem` as its client certificate, so the certificate must be valid for `127.0.0.1` " +
				"(as `consul tls cert create` makes them) and allow client authentication. " + inPlace + " Not read back after an import.",
			Optional: true,
			Attributes: map[string]schema.Attribute{
				"ca_pem": schema.StringAttribute{
					MarkdownDescription: "PEM CA certificate(s) that signed the agents' certificates.",
					Required:            true,
					Validators:          []validator.String{consulPEMValidator("certificate")},
				},
				"cert_pem": schema.StringAttribute{
					MarkdownDescription: "PEM certificate of this agent (`server.<datacenter>.consul` for servers when `verify_server_hostname` is on).",
					Required:            true,
					Validators:          []validator.String{consulPEMValidator("certificate")},
				},
				"key_pem": schema.StringAttribute{
					MarkdownDescription: "PEM private key of `cert_pem`. **Stored in the Terraform state** (`Sensitive` only hides it in output): " +
						"prefer `key_pem_wo` with Terraform 1.11 or later. Exactly one of `key_pem` and `key_pem_wo`.",
					Optional:   true,
					Sensitive:  true,
					Validators: []validator.String{consulPEMValidator("private key")},
				},
				"key_pem_wo": schema.StringAttribute{
					MarkdownDescription: "PEM private key of `cert_pem`, **write-only**: Terraform (1.11 or later) passes it to the provider at apply and " +
						"never stores it in the state or the plan; feed it from an `ephemeral = true` variable. It is written (mode 0600) into the " +
						"container, and the provider reads it back from there, over its own connection, whenever it talks to the agent later (a refresh, " +
						"a rolling restart, the leave on destroy): through the node's file system over SSH (the running container's root, when the " +
						"SSH user may read the engine's storage, as `root` may), else through the Docker API's archive, which is slower; if it cannot (the container was changed by hand), a refresh keeps the last known status " +
						"and the leave on destroy is skipped with a warning, as for an unreachable agent. A new key comes with a new `cert_pem`, and that change is what makes the apply " +
						"write it: Terraform cannot see a write-only value change. Moving the same key from `key_pem` to `key_pem_wo` recreates " +
						"the container in place.",
					Optional:   true,
					WriteOnly:  true,
					Sensitive:  true,
					Validators: []validator.String{consulPEMValidator("private key")},
				},
				"verify_incoming": schema.BoolAttribute{
					MarkdownDescription: "Require and verify client certificates on RPC and HTTPS. Default: `true`.",
					Optional:            true, Computed: true, Default: booldefault.StaticBool(true),
				},
				"verify_outgoing": schema.BoolAttribute{
					MarkdownDescription: "Verify the certificates of servers this agent connects to. Default: `true`.",
					Optional:            true, Computed: true, Default: booldefault.StaticBool(true),
				},
				"verify_server_hostname": schema.BoolAttribute{
					MarkdownDescription: "Require servers' certificates to name `server.<datacenter>.consul`. Default: `true`.",
					Optional:            true, Computed: true, Default: booldefault.StaticBool(true),
				},
			},
		},
		"ports": schema.SingleNestedAttribute{
			MarkdownDescription: "The agent's listeners on the node (the container shares the node's network). Defaults are Consul's. " + inPlace,
			Optional:            true,
			Computed:            true,
			Default:             objectdefault.StaticValue(consulPortsValue(role, consul.DefaultPorts(role))),
			Attributes:          portAttrs,
		},
		"container_id": schema.StringAttribute{
			MarkdownDescription: "ID of the container; it changes whenever the container is recreated.",
			Computed:            true,
		},
		"http_addr": schema.StringAttribute{
			MarkdownDescription: "The agent's API as seen from the node, in `CONSUL_HTTP_ADDR` form: `127.0.0.1:8500`, or `https://127.0.0.1:8500` with `tls`.",
			Computed:            true,
		},
		"node_id": schema.StringAttribute{
			MarkdownDescription: "Consul node ID. It lives on the data volume, so it survives in-place updates.",
			Computed:            true,
		},
		"running": schema.BoolAttribute{
			MarkdownDescription: "Whether the container is running. A container stopped outside Terraform reads as `false`, and the plan starts it again (an in-place update).",
			Computed:            true,
		},
		"config_hash": schema.StringAttribute{
			MarkdownDescription: "SHA-256 of everything the container is made from (also a container label), so a container whose config drifted is recreated. " +
				"That includes the provider's fixed settings, such as `disable_update_check` (the agent never calls HashiCorp's update service): a provider " +
				"release that changes one recreates the containers as a rolling restart, like an image change.",
			Computed: true,
		},
		"timeouts": withDurationValidators(timeouts.Attributes(ctx, timeouts.Opts{Create: true, Read: true, Update: true, Delete: true,
			ReadDescription:   readTimeoutDescription,
			CreateDescription: "How long creating may take, including the wait for the " + noun + " to join. Default: `10m`.",
			UpdateDescription: "How long an update may take, including waiting for the rolling-restart lock. Default: `20m`.",
			DeleteDescription: "How long the graceful leave and removal may take. Default: `5m`."})),
	}
	for name, a := range consulSecretAttributes(noun) {
		attrs[name] = a
	}
	return attrs
}

func consulTitle(role consul.Role) string {
	if role == consul.RoleServer {
		return "Server"
	}
	return "Agent"
}
