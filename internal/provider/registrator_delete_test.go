package provider

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// A registrator delete whose manager does not answer succeeds only when the manager's
// droplet is off or deleted; while the droplet is active (its SSH broken, say) the
// service may still run and publish, so the delete fails and says what to do. The same
// holds for a Consul agent's delete: its container may still run there.
func TestAccRegistrator_deleteWithUnreachableManager(t *testing.T) {
	requireAcc(t)
	ctx := context.Background()
	nodes, node := createTestDroplet(t, "reg", "mgr")
	id, _ := strconv.Atoi(node.ID.ValueString())
	ip := node.IPv4Address.ValueString()
	reg := &registratorResource{data: nodes.data}
	agent := &consulAgentResource{data: nodes.data}

	// Active, but nothing answers where state says the manager is: refuse.
	diags := runRegistratorDelete(t, reg, fmt.Sprintf("ssh://root@%s:2222", ip), node.SSHHostKey.ValueString())
	if !diags.HasError() || !hasError(diags, "Could Not Delete: Node Unreachable", "active", "state rm") {
		t.Fatalf("delete with an active droplet whose manager does not answer: %v; want an error with the next step", diags)
	}
	diags = runDelete(t, agent, map[string]string{"id": "consul-test", "host": fmt.Sprintf("ssh://root@%s:2222", ip),
		"host_key": node.SSHHostKey.ValueString(), "container_name": "consul-agent"})
	if !diags.HasError() || !hasError(diags, "Could Not Delete: Node Unreachable", "Consul client agent container consul-agent", "active", "state rm") {
		t.Fatalf("Consul agent delete with an active droplet that does not answer: %v; want an error with the next step", diags)
	}

	// Powered off: nothing of it runs.
	if _, _, err := testkit.Godo(t).DropletActions.PowerOff(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes.data.cloud.WaitStatus(ctx, id, "off"); err != nil {
		t.Fatal(err)
	}
	diags = runRegistratorDelete(t, reg, "ssh://root@"+ip, node.SSHHostKey.ValueString())
	if diags.HasError() || !hasWarning(diags, "Deleted With Its Node", "is off") {
		t.Fatalf("delete with the manager's droplet off: %v; want success with a warning", diags)
	}
	diags = runDelete(t, agent, map[string]string{"id": "consul-test", "host": "ssh://root@" + ip,
		"host_key": node.SSHHostKey.ValueString(), "container_name": "consul-agent"})
	if diags.HasError() || !hasWarning(diags, "Deleted With Its Node", "is off") {
		t.Fatalf("Consul agent delete with its droplet off: %v; want success with a warning", diags)
	}

	// Deleted: gone with it.
	if err := nodes.data.cloud.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	diags = runRegistratorDelete(t, reg, "ssh://root@"+ip, node.SSHHostKey.ValueString())
	if diags.HasError() || !hasWarning(diags, "Deleted With Its Node", "is deleted") {
		t.Fatalf("delete with the manager's droplet deleted: %v; want success with a warning", diags)
	}
}

// runRegistratorDelete runs the registrator's Delete on a state that names a service on host.
func runRegistratorDelete(t *testing.T, r *registratorResource, host, hostKey string) diag.Diagnostics {
	t.Helper()
	return runDelete(t, r, map[string]string{"id": "registrator-test", "host": host, "host_key": hostKey})
}

// runDelete runs a resource's Delete on a state holding just the given string attributes.
func runDelete(t *testing.T, r resource.Resource, attrs map[string]string) diag.Diagnostics {
	t.Helper()
	st := stateWith(t, r, attrs, nil)
	resp := resource.DeleteResponse{State: st}
	r.Delete(context.Background(), resource.DeleteRequest{State: st}, &resp)
	return resp.Diagnostics
}

func hasError(diags diag.Diagnostics, parts ...string) bool {
	for _, d := range diags.Errors() {
		text := d.Summary() + ": " + d.Detail()
		found := true
		for _, p := range parts {
			found = found && strings.Contains(text, p)
		}
		if found {
			return true
		}
	}
	return false
}
