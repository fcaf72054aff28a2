package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// Version 0 of microswarm_swarm_cluster kept the join tokens and the unlock key in the
// state, where anyone who can read the state could join a manager and own the cluster.
// Version 1 reads them from a manager when it needs them; the upgrade drops them.

// swarmClusterModelV0 is a version 0 state.
type swarmClusterModelV0 struct {
	swarmClusterModel
	WorkerJoinToken  types.String `tfsdk:"worker_join_token"`
	ManagerJoinToken types.String `tfsdk:"manager_join_token"`
	UnlockKey        types.String `tfsdk:"unlock_key"`
}

// swarmClusterSchemaV0 is version 1's schema plus the three secrets.
func swarmClusterSchemaV0(ctx context.Context) *schema.Schema {
	s := swarmClusterSchema(ctx)
	s.Version = 0
	attrs := make(map[string]schema.Attribute, len(s.Attributes)+3)
	for name, a := range s.Attributes {
		attrs[name] = a
	}
	for _, name := range []string{"worker_join_token", "manager_join_token", "unlock_key"} {
		attrs[name] = schema.StringAttribute{Computed: true, Sensitive: true}
	}
	s.Attributes = attrs
	return &s
}

func (r *swarmClusterResource) UpgradeState(ctx context.Context) map[int64]resource.StateUpgrader {
	return map[int64]resource.StateUpgrader{
		0: {
			PriorSchema: swarmClusterSchemaV0(ctx),
			StateUpgrader: func(ctx context.Context, req resource.UpgradeStateRequest, resp *resource.UpgradeStateResponse) {
				var prior swarmClusterModelV0
				resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
				if resp.Diagnostics.HasError() {
					return
				}
				resp.Diagnostics.Append(resp.State.Set(ctx, prior.swarmClusterModel)...)
			},
		},
	}
}
