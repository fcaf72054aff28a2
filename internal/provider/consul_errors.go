package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// addConsulWaitError reports an agent that did not come up, with what was last seen,
// the container's logs if it crashed, and what to do next.
// noLeader says the agent is up but sees no leader: then the advice is about the servers.
func addConsulWaitError(diags *diag.Diagnostics, role consul.Role, host, containerName, operation string, err error, noLeader ...bool) {
	noun := consulRoleNoun(role)
	summary := "Consul Server Did Not Become a Voter"
	next := "Check that retry_join lists the servers' advertise addresses, that bootstrap_expect servers exist and can reach each other " +
		"on ports 8300-8301 (TCP and UDP), and that encrypt and tls match across the cluster; then apply again (the container is kept), " +
		"or raise timeouts." + operation + "."
	if role == consul.RoleAgent {
		summary = "Consul Agent Did Not Join the Cluster"
		next = "Check that retry_join lists the servers' advertise addresses, that the servers have a leader, and that datacenter, " +
			"encrypt and tls match the servers'; then apply again (the container is kept), or raise timeouts." + operation + "."
	}
	var timeout *wait.TimeoutError
	var crashed *consul.CrashedError
	switch {
	case len(noLeader) > 0 && noLeader[0] && !errors.As(err, &crashed):
		summary = "Consul Cluster Has No Leader"
		next = "The agent is up but sees no leader: the servers are down or have lost their quorum, and nothing is wrong with " +
			"this agent. The next apply starts or re-creates each microswarm_consul_server whose container stopped (and replaces " +
			"a server whose droplet is off), then creates this agent again; a cluster that lost a majority of its servers is " +
			"brought back as the self-healing guide's quorum section says."
	case errors.As(err, &crashed):
		summary = "Consul Container Stopped"
		next = "The agent exited: its log lines above say why (a bad flag, key or certificate). Fix the config and apply again."
	case errors.As(err, &timeout):
	}
	diags.AddError(summary, fmt.Sprintf("Consul %s %s on %s: %s.\n\n%s", noun, containerName, host, err, next))
}

// addConsulContainerError reports a failed container operation.
// A next step (providerData.nodeNextStep), when there is one, replaces the advice.
func addConsulContainerError(diags *diag.Diagnostics, summary, host, containerName string, err error, nextStep ...string) {
	var notManaged *consul.NotManagedError
	detail := fmt.Sprintf("Container %s on %s: %s.", containerName, host, err)
	switch {
	case len(nextStep) > 0 && nextStep[0] != "":
		detail += " " + nextStep[0]
	case !errors.As(err, &notManaged):
		detail += " Check the node's Docker engine (disk space, image availability), then apply again: creation resumes where it stopped."
	}
	diags.AddError(summary, detail)
}

// claimWhileJoining is consulClaimNode for a joining server's wait (consul.WaitServerReady):
// it runs once the server is in the raft configuration, beside the wait for its vote, and
// says what it found in diags, which the caller reads after the wait returned. On a wait
// that failed, those are dropped with the rest: the wait's error says what to do.
func claimWhileJoining(api *consulapi.Client, spec consul.Spec, m *consulContainerModel, diags *diag.Diagnostics) consul.OnMember {
	return func(ctx context.Context, st consul.ServerStatus) {
		consulClaimNode(ctx, api, spec, st.Self, m, diags)
	}
}

// consulClaimNode makes the catalog hold the agent's node as its own and gives the agent
// its ACL token (ACLs on), in the order that lets the agent register at once: a dead
// agent's entry under the node's name (left by a lost quorum) is removed first, then the
// token set, which makes the agent sync its node; then it waits for the node to be there.
// What was removed is said in a warning: until then the catalog reported the dead agent's
// services, and reads of it made earlier (microswarm_health) counted them.
func consulClaimNode(ctx context.Context, api *consulapi.Client, spec consul.Spec, self consul.Self, m *consulContainerModel, diags *diag.Diagnostics) {
	host := m.Host.ValueString()
	removed, err := consul.ClearStaleCatalogName(ctx, api, self)
	if err == nil {
		if consulEnsureAgentToken(ctx, api, spec, m, diags); diags.HasError() {
			return
		}
		var again string
		again, err = consul.WaitCatalogName(ctx, api, self)
		removed = cmp.Or(removed, again)
	}
	if removed != "" {
		diags.AddWarning("Stale Consul Catalog Entry Removed",
			fmt.Sprintf("On %s: the catalog held the node name %s under node ID %s, an agent of that name that died while the cluster had no "+
				"leader, with that agent's services and their last health. It was removed, and this node registers in its place. Reads of "+
				"the catalog made before this apply (microswarm_health included) counted the dead agent's services.", host, self.NodeName, removed))
	}
	if err != nil {
		diags.AddError("Consul Node Not in the Catalog", fmt.Sprintf("Container %s on %s (node %s, ID %s): %s.\n\nThe agent is a member of the "+
			"cluster, but the catalog does not hold its node as its own, so its services would not be seen. Fix what the message names, then "+
			"apply again.", spec.ContainerName, host, self.NodeName, self.NodeID, err))
	}
}
