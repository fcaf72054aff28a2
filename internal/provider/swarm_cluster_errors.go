package provider

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/microswarm/terraform-provider-microswarm/internal/swarm"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// addSwarmError turns an error from internal/swarm into a diagnostic: what failed, on
// which node, what was done before, and what to do next.
func addSwarmError(diags *diag.Diagnostics, operation, swarmID string, err error, res *swarm.Result) {
	summary, next := "Swarm Change Failed", "Fix the cause above, then apply again: every apply starts from the swarm as it is."
	var (
		unreachable *swarm.UnreachableError
		other       *swarm.OtherSwarmError
		quorum      *swarm.QuorumError
		noManager   *swarm.NoManagerError
		locked      *swarm.LockedError
		timeout     *wait.TimeoutError
	)
	switch {
	case errors.As(err, &unreachable):
		summary = "Swarm Node Unreachable"
		next = "Check that the node is powered on and that SSH and Docker answer on it (its host and host_key), then apply again: " +
			"nodes already in the swarm are kept and the rest join."
	case errors.As(err, &other):
		summary = "Node Belongs to Another Swarm"
		next = "Make the node leave that swarm (`docker swarm leave`, `--force` for a manager) or take it out of `nodes`, then apply again."
	case errors.As(err, &quorum):
		summary = "Swarm Quorum Would Be Lost"
		next = "Bring the unreachable managers back, or change fewer managers per apply, then apply again. If managers are lost for good, " +
			"recover with `docker swarm init --force-new-cluster` on a reachable manager."
	case errors.As(err, &noManager):
		summary = "No Reachable Swarm Manager"
		next = "Check that at least one manager in `nodes` is powered on and reachable. If the swarm was taken apart outside Terraform, " +
			"`terraform state rm` this resource and apply again."
	case errors.As(err, &locked):
		summary = "Swarm Manager Locked"
		next = "Unlock one manager with `docker swarm unlock` and the swarm's unlock key (which Terraform does not keep), then apply again: the provider unlocks the others with the key that manager reports."
	case errors.As(err, &timeout):
		summary = "Swarm Did Not Converge"
		next = fmt.Sprintf("Raise timeouts.%s if the swarm is slow (draining a node waits for its tasks to move), or check the node named above, then apply again.", operation)
	}
	var b strings.Builder
	if swarmID == "" && res != nil {
		swarmID = res.ID
	}
	if swarmID != "" {
		fmt.Fprintf(&b, "Swarm %s: ", swarmID)
	}
	b.WriteString(err.Error())
	b.WriteString(".")
	var step *swarm.StepError
	if errors.As(err, &step) && len(step.Done) > 0 {
		b.WriteString("\n\nDone before the failure: " + strings.Join(step.Done, "; ") + ".")
	}
	if operation == "create" && res != nil {
		b.WriteString("\n\nThe swarm and the nodes that joined it are kept and not recorded in state: the next apply adopts the swarm " +
			"and joins the rest, it does not start a new one.")
	}
	b.WriteString("\n\n" + next)
	diags.AddError(summary, b.String())
}

// addSwarmWarnings reports what a change had to skip.
func addSwarmWarnings(diags *diag.Diagnostics, res *swarm.Result) {
	if res == nil {
		return
	}
	for _, w := range res.Warnings {
		diags.AddWarning("Swarm Node Not Cleaned Up", fmt.Sprintf("Swarm %s: %s.", res.ID, w))
	}
}
