package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/client"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
)

// consulPlan does the plan work both resources share: the computed values an apply
// will set or keep. A stopped container (running false in state) or a config hash that
// differs from the container's plans an in-place update that recreates it.
func consulPlan(ctx context.Context, role consul.Role, plan, state *consulContainerModel, server consulServerSettings, diags *diag.Diagnostics) {
	plan.Running = types.BoolValue(true)
	if !plan.Host.IsUnknown() && !plan.ContainerName.IsUnknown() {
		plan.ID = types.StringValue(consulID(plan.Host.ValueString(), plan.ContainerName.ValueString()))
	}
	spec, known := consulSpecOf(ctx, role, *plan, server, diags)
	if known {
		plan.ConfigHash = types.StringValue(spec.Hash())
		plan.HTTPAddr = types.StringValue(spec.HTTPAddr())
	} else {
		plan.ConfigHash = types.StringUnknown()
		plan.HTTPAddr = types.StringUnknown()
	}
	switch {
	case plan.ACL.IsNull():
		plan.ACLAgentToken = types.StringNull()
	case state != nil && !state.ACLAgentToken.IsNull() && plan.ACL.Equal(state.ACL) && plan.ACLTokenWOVer.Equal(state.ACLTokenWOVer):
		plan.ACLAgentToken = state.ACLAgentToken
	default:
		plan.ACLAgentToken = types.StringUnknown()
	}
	if state == nil {
		plan.ContainerID, plan.NodeID = types.StringUnknown(), types.StringUnknown()
		return
	}
	if recreate := !plan.ConfigHash.Equal(state.ConfigHash) || !state.Running.ValueBool(); recreate {
		plan.ContainerID = types.StringUnknown()
	} else {
		plan.ContainerID = state.ContainerID
	}
	// The node ID lives on the data volume, which in-place updates keep.
	plan.NodeID = state.NodeID
	if plan.NodeID.IsNull() {
		plan.NodeID = types.StringUnknown()
	}
}

// consulAPI returns a client for the agent that spec describes, through the node.
func consulAPI(h *conn.Host, spec consul.Spec) (*consulapi.Client, error) {
	cfg, err := consul.APIConfig(spec)
	if err != nil {
		return nil, err
	}
	if spec.ACL != nil {
		cfg.Token = spec.ACL.Token
	}
	return h.Consul(cfg)
}

// consulFiles reads the node's containers' files, or nothing when its engine cannot be
// reached (a nil *client.Client must not become a non-nil FileReader).
func consulFiles(h *conn.Host) consul.FileReader {
	docker, err := h.Docker()
	if err != nil {
		return nil
	}
	return nodeFiles{FileReader: docker, host: h}
}

// nodeFiles reads a container's files through the engine, and a running one's also
// through its node over SSH (consul.RootReader): one command instead of the engine's
// archive. A node that refuses (another scheme, a user that may not read the engine's
// storage) leaves consul.ReadKeyOf to the engine.
type nodeFiles struct {
	consul.FileReader
	host *conn.Host
}

func (f nodeFiles) ReadRootFile(ctx context.Context, file string, limit int64) ([]byte, error) {
	if !strings.HasPrefix(file, "/") || strings.ContainsAny(file, "'\n") {
		return nil, fmt.Errorf("will not read %q through the node", file)
	}
	out, err := f.host.Run(ctx, fmt.Sprintf("head -c %d -- '%s'", limit, file), nil)
	return []byte(out), err
}

// consulRunningSpec is how to talk to the container as it runs now: its flags, with the
// TLS material from the state, or from the plan when an import left the state without it.
// A key given write-only (in no state or plan) is read from the container, which holds it.
func consulRunningSpec(ctx context.Context, files consul.FileReader, c *consul.Container, materials ...*consul.TLS) consul.Spec {
	s := c.Spec
	if !c.HTTPS {
		return s
	}
	for _, t := range materials {
		if t != nil {
			material := *t
			if material.KeyPEM == "" && material.KeyWriteOnly && files != nil {
				key, err := consul.ReadKeyOf(ctx, files, c)
				if err != nil {
					tflog.Warn(ctx, "could not read the consul agent's write-only TLS key back from its container", map[string]any{"container": c.Name, "error": err.Error()})
				}
				material.KeyPEM = key
			}
			s.TLS = &material
			return s
		}
	}
	s.TLS = &consul.TLS{}
	return s
}

// consulReadTimeout bounds the Consul queries of a refresh: Read must not wait.
const consulReadTimeout = 10 * time.Second

// consulDelete reaches the node and deletes the agent there (consul.Delete: a graceful
// leave, the container, its volume; what is already gone is fine), reporting a failed
// leave or a foreign container of that name as warnings. A node that does not answer
// is a success only when its droplet is known gone (requireNodeGone): otherwise the agent
// may still run there, and the delete fails with the next step.
func consulDelete(ctx context.Context, d *providerData, role consul.Role, m consulContainerModel, spec consul.Spec, diags *diag.Diagnostics) {
	if d == nil {
		return
	}
	host, name := m.Host.ValueString(), m.ContainerName.ValueString()
	if role == consul.RoleServer { // first, so that the other servers' deletes see it at once
		d.departures.Add(m.NodeID.ValueString())
	}
	h := d.reachNode(ctx, path.Root("host"), host, &m.HostKey, mayBeUnreachable, "Consul container "+name, diags)
	if h == nil {
		if !diags.HasError() { // unreachable: gone only with its droplet, never forgotten while it may run
			d.requireNodeGone(ctx, "Consul "+consulRoleNoun(role)+" container "+name, host, diags)
		}
		return
	}
	docker := dockerOf(h, path.Root("host"), host, diags)
	if docker == nil {
		return
	}
	res, err := consul.Delete(ctx, docker, name, func(c *consul.Container) (consul.Spec, bool) {
		running := d.consulWithToken(consulRunningSpec(ctx, consulFiles(h), c, d.consulWithKey(spec.TLS)))
		if role != consul.RoleServer {
			return running, true
		}
		api, err := consulAPI(h, running)
		if err != nil {
			return running, true
		}
		return running, !d.departures.WholeCluster(ctx, consul.APIView{API: api}, m.NodeID.ValueString(), consul.TeardownWindow)
	})
	if res.NoLeave {
		tflog.Info(ctx, "every server of the consul cluster is being deleted; removed this one without a graceful leave",
			map[string]any{"host": host, "container": name})
	}
	if res.Foreign != nil {
		diags.AddWarning("Consul Container Replaced Outside Terraform",
			fmt.Sprintf("%s. That container was left alone; only the data volume %s-data is removed.", res.Foreign, name))
	}
	if res.LeaveErr != nil {
		summary, node := "Consul Agent Did Not Leave Gracefully", cmp.Or(res.NodeName, "NODE_NAME")
		if role == consul.RoleServer {
			summary = "Consul Server Did Not Leave Gracefully"
		}
		diags.AddWarning(summary, fmt.Sprintf("Container %s on %s: %s. The container is removed anyway; the servers will mark the "+
			"node failed and reap it after 72h, or run `consul force-leave %s` on a server now.", name, host, res.LeaveErr, node))
	}
	var failed *consul.DeleteError
	if errors.As(err, &failed) {
		summary := map[consul.DeleteStep]string{
			consul.StepInspect:         "Could Not Inspect Consul Container",
			consul.StepRemoveContainer: "Could Not Remove Consul Container",
			consul.StepRemoveVolume:    "Could Not Remove Consul Data Volume",
		}[failed.Step]
		addConsulContainerError(diags, summary, host, name, failed.Err)
	} else if err != nil {
		addConsulContainerError(diags, "Could Not Delete Consul Container", host, name, err)
	}
}

// consulImportState takes `HOST,CONTAINER_NAME`; Read fills in the rest from the container.
func consulImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	host, name, err := parseConsulImportID(req.ID)
	if err != nil {
		resp.Diagnostics.AddError("Invalid Import ID", err.Error()+".")
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), consulID(host, name))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("host"), host)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("container_name"), name)...)
}

// consulPrepare is how Create and Update start: the container spec from the plan, and the
// node reached through its pinned host. ok is false when diags say why not.
func (d *providerData) consulPrepare(ctx context.Context, role consul.Role, m *consulContainerModel, server consulServerSettings, cfg tfsdk.Config, diags *diag.Diagnostics) (spec consul.Spec, h *conn.Host, docker *client.Client, ok bool) {
	spec, known := consulSpecOf(ctx, role, *m, server, diags)
	if spec.EncryptWriteOnly {
		spec.Encrypt = consulWriteOnly(ctx, cfg, "encrypt_wo", diags)
	}
	if spec.ACL != nil {
		spec.ACL.Token = consulWriteOnly(ctx, cfg, "acl_token_wo", diags)
	}
	if spec.TLS != nil && spec.TLS.KeyWriteOnly {
		var t types.Object
		diags.Append(cfg.GetAttribute(ctx, path.Root("tls"), &t)...)
		if fromConfig := consulTLSOf(ctx, t); fromConfig != nil {
			spec.TLS.KeyPEM = fromConfig.KeyPEM
		}
	}
	if diags.HasError() {
		return spec, nil, nil, false
	}
	if !known {
		diags.AddError("Unknown Values at Apply", fmt.Sprintf("The %s's configuration still had unknown values at apply. "+
			"Please report this issue to the provider developers.", consulRoleNoun(role)))
		return spec, nil, nil, false
	}
	if h = d.reachNode(ctx, path.Root("host"), m.Host.ValueString(), &m.HostKey, mustReach, "", diags); h == nil {
		return spec, nil, nil, false
	}
	if docker = dockerOf(h, path.Root("host"), m.Host.ValueString(), diags); docker == nil {
		return spec, nil, nil, false
	}
	return spec, h, docker, true
}

// consulReadContainer refreshes the container part of a Consul resource's state. It
// returns nil when there is nothing more to read: the container is gone (the resource is
// removed from state, so the plan re-creates it), the node is unreachable (state kept,
// with a warning), or an error was reported.
func (d *providerData) consulReadContainer(ctx context.Context, role consul.Role, m *consulContainerModel, resp *resource.ReadResponse) (*conn.Host, *consul.Container) {
	host, name := m.Host.ValueString(), m.ContainerName.ValueString()
	h := d.reachNode(ctx, path.Root("host"), m.Host.ValueString(), &m.HostKey, reachOf(!m.ContainerID.IsNull()),
		"Consul container "+m.ContainerName.ValueString(), &resp.Diagnostics)
	if h == nil {
		return nil, nil
	}
	docker := dockerOf(h, path.Root("host"), host, &resp.Diagnostics)
	if docker == nil {
		return nil, nil
	}
	c, err := consul.Find(ctx, docker, name)
	if errors.Is(err, consul.ErrNotFound) {
		tflog.Warn(ctx, "consul "+consulRoleNoun(role)+" container is gone; removing it from state so the plan re-creates it",
			map[string]any{"host": host, "container": name})
		resp.State.RemoveResource(ctx)
		return nil, nil
	}
	if err == nil && c.Role != role {
		err = fmt.Errorf("the container runs a Consul %s, not a %s", c.Role, consulRoleNoun(role))
	}
	if err != nil {
		addConsulContainerError(&resp.Diagnostics, "Could Not Read Consul "+consulTitle(role)+" Container", host, name, err)
		return nil, nil
	}
	fillConsulModel(ctx, role, m, c, &resp.Diagnostics)
	return h, c
}
