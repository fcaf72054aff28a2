package provider

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// objectWith is a value of typ with the given attributes and every other one null.
func objectWith(typ tftypes.Object, attrs map[string]tftypes.Value) tftypes.Value {
	vals := map[string]tftypes.Value{}
	for name, t := range typ.AttributeTypes {
		if v, ok := attrs[name]; ok {
			vals[name] = v
		} else {
			vals[name] = tftypes.NewValue(t, nil)
		}
	}
	return tftypes.NewValue(typ, vals)
}

// An even bootstrap_expect is legal but unwise: the plan warns, naming the attribute, as
// the swarm does for an even number of managers; and only when the plan sets the count.
func TestConsulServerWarnsOfAnEvenBootstrapExpect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := &consulServerResource{}
	var sr resource.SchemaResponse
	r.Schema(ctx, resource.SchemaRequest{}, &sr)
	typ, ok := sr.Schema.Type().TerraformType(ctx).(tftypes.Object)
	if !ok {
		t.Fatal("the schema's type is not an object")
	}
	server := func(n int64) tftypes.Value {
		return objectWith(typ, map[string]tftypes.Value{
			"host":             tftypes.NewValue(tftypes.String, "ssh://root@127.0.0.1:2201"),
			"advertise_addr":   tftypes.NewValue(tftypes.String, "10.10.0.1"),
			"bootstrap_expect": tftypes.NewValue(tftypes.Number, n),
		})
	}
	plan := func(prior, planned int64) diag.Diagnostics {
		req := resource.ModifyPlanRequest{
			Plan:  tfsdk.Plan{Schema: sr.Schema, Raw: server(planned)},
			State: tfsdk.State{Schema: sr.Schema, Raw: tftypes.NewValue(typ, nil)},
		}
		if prior > 0 {
			req.State.Raw = server(prior)
		}
		resp := resource.ModifyPlanResponse{Plan: req.Plan}
		r.ModifyPlan(ctx, req, &resp)
		return resp.Diagnostics
	}
	for _, tc := range []struct {
		prior, planned int64
		warn           bool
	}{{0, 1, false}, {0, 2, true}, {0, 3, false}, {0, 4, true}, {0, 5, false}, {0, 8, true}, {3, 4, true}, {4, 4, false}} {
		diags := plan(tc.prior, tc.planned)
		if diags.HasError() {
			t.Fatalf("bootstrap_expect %d: %v", tc.planned, diags)
		}
		var warned bool
		for _, d := range diags.Warnings() {
			withPath, ok := d.(diag.DiagnosticWithPath)
			if ok && withPath.Path().Equal(path.Root("bootstrap_expect")) && strings.HasPrefix(d.Detail(), "bootstrap_expect: ") {
				warned = true
			}
		}
		if warned != tc.warn {
			t.Errorf("bootstrap_expect %d (was %d): warned %v, want %v: %v", tc.planned, tc.prior, warned, tc.warn, diags)
		}
	}
}
