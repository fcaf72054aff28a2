package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	tfresource "github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// Two workspaces of one configuration (same SSH key, no stack_id) in one account: each
// has its own web-0 in nyc3, and destroying one leaves the other's droplet. Adoption by
// name and region gave the second workspace the first one's droplet; adopting a droplet
// whose create had finished (one never claimed) would too.
func TestAccDropletNode_twoWorkspaces(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	const node = "microswarm_droplet_node.test[0]"
	config := dropletNodesConfig(prefix, []string{"web-0"}, "s-1vcpu-1gb", nil)
	sameID := statecheck.CompareValue(compare.ValuesSame())
	var first, second int
	tfresource.Test(t, tfresource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []tfresource.TestStep{
			{
				Config:            config,
				ConfigStateChecks: []statecheck.StateCheck{sameID.AddStateValue(node, tfjsonpath.New("id"))},
				Check:             func(s *terraform.State) (err error) { first, err = dropletID(s, node); return err },
			},
			{
				// The second workspace: its own state, same config, applied and destroyed.
				PreConfig: func() {
					t.Run("second workspace", func(t *testing.T) {
						tfresource.Test(t, tfresource.TestCase{
							ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
							CheckDestroy:             checkDropletNodesDestroyed,
							Steps: []tfresource.TestStep{{
								Config: config,
								Check: func(s *terraform.State) (err error) {
									if second, err = dropletID(s, node); err != nil {
										return err
									}
									if second == first {
										return fmt.Errorf("the second workspace's web-0 is the first one's droplet %d", first)
									}
									return nil
								},
							}},
						})
					})
				},
				// The first workspace: its droplet outlived the other's destroy, untouched.
				Config:            config,
				ConfigStateChecks: []statecheck.StateCheck{sameID.AddStateValue(node, tfjsonpath.New("id"))},
				Check: func(*terraform.State) error {
					if second == 0 {
						return errors.New("the second workspace did not run")
					}
					d, err := testkit.Cloud(t).Get(context.Background(), first)
					if err != nil {
						return fmt.Errorf("the first workspace's droplet %d after the second's destroy: %w", first, err)
					}
					if d.Status != "active" || d.Pending {
						return fmt.Errorf("the first workspace's droplet %d: status %s, pending %v", first, d.Status, d.Pending)
					}
					return nil
				},
			},
		},
	})
}

// An apply killed after a droplet's create went through, before Terraform saved the
// state, leaves a droplet nothing records, however far its create got: here all the way,
// its host key already rotated (the provider process outlived a SIGKILLed terraform).
// The droplet stays pending (no claim at the end of Create). Once that run is over, the
// next Create of the node adopts it, with a warning naming it, and pins its rotated key
// (derived from the create's token: host_key_policy strict would refuse anything else):
// no second droplet. Another stack (stack_id) creating the same name meanwhile never
// adopts it; once a Read claimed it (the state holds it), nobody does.
func TestAccDropletNode_interruptedCreate(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1")
	}
	testkit.PreCheck(t)
	t.Setenv(envHostKeyPolicy, "strict")
	ctx := context.Background()
	name := "acc-" + acctest.RandString(6) + "-web-0"
	t.Cleanup(func() { deleteDropletsNamed(t, name) })
	plan := dropletNodeModel{Name: types.StringValue(name), Region: types.StringValue("nyc3"),
		Size: types.StringValue("s-1vcpu-1gb"), Image: types.StringValue(DefaultDropletImage), Monitoring: types.BoolValue(false)}

	// green's first apply: the whole Create ran, then terraform died before saving it.
	interrupted := configuredDropletNode(t, "green")
	lost, diags := runCreate(t, interrupted, plan)
	if diags.HasError() {
		t.Fatalf("the interrupted create: %v", diags)
	}
	lostID, _ := strconv.Atoi(lost.ID.ValueString())
	if d, err := interrupted.data.cloud.Get(ctx, lostID); err != nil || !d.Pending || d.RunID != interrupted.data.cloud.RunID() {
		t.Fatalf("the droplet at the end of its create: %+v, %v; want it still pending, its run's", d, err)
	}
	interrupted.data.cloud.Abandon(ctx) // the run is over: its lease is gone

	// Another stack creates the same name meanwhile: a droplet of its own.
	blue := configuredDropletNode(t, "blue")
	theirs, diags := runCreate(t, blue, plan)
	if diags.HasError() || theirs.ID.Equal(lost.ID) || hasWarning(diags, "Adopted") {
		t.Fatalf("stack blue's create = droplet %s (lost create's: %s): %v", theirs.ID, lost.ID, diags)
	}

	// green's next apply adopts its droplet, with a warning naming it, and pins the key
	// the lost create had rotated to.
	green := configuredDropletNode(t, "green")
	got, diags := runCreate(t, green, plan)
	if diags.HasError() {
		t.Fatalf("green's create after the interruption: %v", diags)
	}
	if !got.ID.Equal(lost.ID) {
		t.Fatalf("green's create = droplet %s, want the interrupted create's droplet %s adopted", got.ID, lost.ID)
	}
	if !hasWarning(diags, "Adopted", fmt.Sprintf("Droplet %s ", lost.ID.ValueString())) {
		t.Fatalf("no warning names the adopted droplet %s: %v", lost.ID, diags)
	}
	if !got.IdempotencyToken.Equal(lost.IdempotencyToken) || got.Status.ValueString() != "active" {
		t.Fatalf("adopted node: token %s (the lost create's: %s), status %s", got.IdempotencyToken, lost.IdempotencyToken, got.Status)
	}
	rotated, err := green.data.stack.RotatedHostKey(lost.IdempotencyToken.ValueString())
	if err != nil {
		t.Fatal(err)
	}
	if k := got.SSHHostKey.ValueString(); k != rotated.Public || k != lost.SSHHostKey.ValueString() {
		t.Fatalf("adopted node's pinned key %q: want the rotated key %q the lost create pinned", k, rotated.Public)
	}

	// A Read (the state holds it now) claims it: the same create again (another
	// workspace of green's config, or a create_before_destroy replacement) makes a
	// droplet of its own.
	if diags := runRead(t, green, got); diags.HasError() {
		t.Fatal(diags)
	}
	if d, err := green.data.cloud.Get(ctx, lostID); err != nil || d.Pending || d.RunID != "" || d.StackID != "green" {
		t.Fatalf("the adopted droplet after a Read: %+v, %v; want it claimed, tagged with its stack", d, err)
	}
	again, diags := runCreate(t, green, plan)
	if diags.HasError() || again.ID.Equal(got.ID) || hasWarning(diags, "Adopted") {
		t.Fatalf("green's create once its droplet was claimed = droplet %s (claimed: %s): %v", again.ID, got.ID, diags)
	}
	if n := countDropletsNamed(t, name); n != 3 {
		t.Fatalf("%d droplets are named %s, want 3 (green's adopted one, blue's, green's next)", n, name)
	}
}

// runRead runs the resource's Read on a state, as a refresh would.
func runRead(t *testing.T, r *dropletNodeResource, state dropletNodeModel) diag.Diagnostics {
	t.Helper()
	ctx := context.Background()
	var sresp resource.SchemaResponse
	r.Schema(ctx, resource.SchemaRequest{}, &sresp)
	st := tfsdk.State{Schema: sresp.Schema, Raw: tftypes.NewValue(sresp.Schema.Type().TerraformType(ctx), nil)}
	if diags := st.Set(ctx, &state); diags.HasError() {
		t.Fatal(diags)
	}
	resp := resource.ReadResponse{State: st}
	r.Read(ctx, resource.ReadRequest{State: st}, &resp)
	return resp.Diagnostics
}

// createTestDroplet creates one droplet, named acc-<random>-suffix, through a droplet
// node resource of a provider with its own stack_id (stack-<random>); it is deleted when
// the test ends.
func createTestDroplet(t *testing.T, stack, suffix string) (*dropletNodeResource, dropletNodeModel) {
	t.Helper()
	nodes := configuredDropletNode(t, stack+"-"+acctest.RandString(6))
	name := "acc-" + acctest.RandString(6) + "-" + suffix
	t.Cleanup(func() { deleteDropletsNamed(t, name) })
	node, diags := runCreate(t, nodes, dropletNodeModel{Name: types.StringValue(name), Region: types.StringValue("nyc3"),
		Size: types.StringValue("s-1vcpu-1gb"), Image: types.StringValue(DefaultDropletImage), Monitoring: types.BoolValue(false)})
	if diags.HasError() {
		t.Fatal(diags)
	}
	return nodes, node
}

// configuredDropletNode is a droplet node resource of a provider configured as the
// acceptance tests' one is (environment), with the given stack_id.
func configuredDropletNode(t *testing.T, stackID string) *dropletNodeResource {
	t.Helper()
	ctx := context.Background()
	p := New("test")()
	var sresp provider.SchemaResponse
	p.Schema(ctx, provider.SchemaRequest{}, &sresp)
	cfg := tfsdk.State{Schema: sresp.Schema, Raw: tftypes.NewValue(sresp.Schema.Type().TerraformType(ctx), nil)}
	if diags := cfg.Set(ctx, &providerModel{StackID: types.StringValue(stackID)}); diags.HasError() {
		t.Fatal(diags)
	}
	var cresp provider.ConfigureResponse
	p.Configure(ctx, provider.ConfigureRequest{Config: tfsdk.Config{Schema: sresp.Schema, Raw: cfg.Raw}}, &cresp)
	if cresp.Diagnostics.HasError() {
		t.Fatal(cresp.Diagnostics)
	}
	data, ok := cresp.ResourceData.(*providerData)
	if !ok {
		t.Fatalf("provider data is %T", cresp.ResourceData)
	}
	return &dropletNodeResource{data: data}
}

// runCreate runs the resource's Create for a plan, as terraform apply would, and
// returns the state it saved; droplets it made are deleted when the test ends.
func runCreate(t *testing.T, r *dropletNodeResource, plan dropletNodeModel) (dropletNodeModel, diag.Diagnostics) {
	t.Helper()
	ctx := context.Background()
	var sresp resource.SchemaResponse
	r.Schema(ctx, resource.SchemaRequest{}, &sresp)
	empty := tftypes.NewValue(sresp.Schema.Type().TerraformType(ctx), nil)
	plan.SSHKeys, plan.Tags = types.SetNull(types.StringType), types.SetNull(types.StringType)
	plan.PrefetchImages = types.ListNull(types.StringType)
	plan.Timeouts = timeouts.Value{Object: types.ObjectNull(sresp.Schema.Attributes["timeouts"].GetType().(timeouts.Type).AttrTypes)}
	p := tfsdk.Plan{Schema: sresp.Schema, Raw: empty}
	if diags := p.Set(ctx, &plan); diags.HasError() {
		t.Fatal(diags)
	}
	resp := resource.CreateResponse{State: tfsdk.State{Schema: sresp.Schema, Raw: empty}}
	r.Create(ctx, resource.CreateRequest{Plan: p}, &resp)
	var got dropletNodeModel
	if !resp.State.Raw.IsNull() {
		resp.Diagnostics.Append(resp.State.Get(ctx, &got)...)
	}
	return got, resp.Diagnostics
}

func hasWarning(diags diag.Diagnostics, parts ...string) bool {
	for _, d := range diags.Warnings() {
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

func dropletsNamed(t *testing.T, name string) []godo.Droplet {
	t.Helper()
	ds, _, err := testkit.Godo(t).Droplets.ListByName(context.Background(), name, &godo.ListOptions{PerPage: 200})
	if err != nil {
		t.Fatalf("listing droplets named %s: %v", name, err)
	}
	return ds
}

func countDropletsNamed(t *testing.T, name string) int { return len(dropletsNamed(t, name)) }

func deleteDropletsNamed(t *testing.T, name string) {
	cloud := testkit.Cloud(t)
	for _, d := range dropletsNamed(t, name) {
		if err := cloud.Delete(context.Background(), d.ID); err != nil {
			t.Errorf("deleting droplet %d (%s): %v", d.ID, name, err)
		}
	}
}

// A droplet created before pending tags existed (the managed tag and an idempotency tag,
// never a pending one) reads, plans and deletes as before, and is never adopted.
func TestAccDropletNode_taggedTheOldWay(t *testing.T) {
	// Imported: nothing pinned its key yet, so first-use trust must be allowed.
	t.Setenv(envHostKeyPolicy, "accept-new")
	prefix := "acc-" + acctest.RandString(6)
	const node = "microswarm_droplet_node.test[0]"
	config := dropletNodesConfig(prefix, []string{"old"}, "s-1vcpu-1gb", []string{"legacy"})
	withLegacy := config + fmt.Sprintf(`
resource "microswarm_droplet_node" "legacy" {
  name     = "%s-old"
  region   = "nyc3"
  size     = "s-1vcpu-1gb"
  tags     = ["legacy"]
  firewall = "none" # as imported: the provider never set its firewall
}
`, prefix)
	var old *droplet.Droplet
	tfresource.Test(t, tfresource.TestCase{
		PreCheck: func() {
			testkit.PreCheck(t)
			ctx := context.Background()
			cloud := testkit.Cloud(t)
			providerKey, err := configuredDropletNode(t, "").registerProviderKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			d, _, err := cloud.Create(ctx, droplet.Spec{Name: prefix + "-old", Region: "nyc3", Size: "s-1vcpu-1gb",
				Image: DefaultDropletImage, SSHKeys: []string{providerKey}, Tags: []string{"legacy"},
				IdempotencyTag: droplet.IdempotencyTag("0123456789abcdef0123456789abcdef")})
			if err == nil {
				old, err = cloud.WaitStatus(ctx, d.ID, "active")
			}
			if err != nil {
				t.Fatalf("the old droplet: %v", err)
			}
			t.Cleanup(func() { _ = cloud.Delete(context.Background(), d.ID) })
		},
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []tfresource.TestStep{
			{
				// Adopting it would be the defect: the config creates a droplet of its own.
				Config: config,
				Check: func(s *terraform.State) error {
					id, err := dropletID(s, node)
					if err == nil && id == old.ID {
						err = fmt.Errorf("the create adopted droplet %d, made the old way", id)
					}
					return err
				},
			},
			{
				// The old droplet, imported, reads as it did.
				ResourceName:       "microswarm_droplet_node.legacy",
				ImportState:        true,
				ImportStateIdFunc:  func(*terraform.State) (string, error) { return strconv.Itoa(old.ID), nil },
				ImportStatePersist: true,
				Config:             withLegacy,
				ImportStateCheck: func(states []*terraform.InstanceState) error {
					i := slices.IndexFunc(states, func(s *terraform.InstanceState) bool { return s.ID == strconv.Itoa(old.ID) })
					if i < 0 {
						return fmt.Errorf("droplet %d is not among the imported states", old.ID)
					}
					a := states[i].Attributes
					if a["idempotency_token"] != "0123456789abcdef0123456789abcdef" || a["tags.#"] != "1" || a["tags.0"] != "legacy" ||
						!strings.HasPrefix(a["ssh_host_key"], "ssh-ed25519 ") {
						return fmt.Errorf("the old droplet reads as token %q, tags %q %q, host key %q",
							a["idempotency_token"], a["tags.#"], a["tags.0"], a["ssh_host_key"])
					}
					return nil
				},
			},
			{
				// Nothing to change; the test's end destroys both (CheckDestroy).
				Config:   withLegacy,
				PlanOnly: true,
			},
		},
	})
}

// Nodes with identical inputs (count with one name) are created in parallel by one
// provider run and share a pending tag: each still gets a droplet of its own.
func TestAccDropletNode_identicalNodes(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	config := fmt.Sprintf(`
resource "microswarm_droplet_node" "test" {
  count  = 3
  name   = "%s-same"
  region = "nyc3"
  size   = "s-1vcpu-1gb"
}
`, prefix)
	node := func(i int) string { return fmt.Sprintf("microswarm_droplet_node.test[%d]", i) }
	tfresource.Test(t, tfresource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []tfresource.TestStep{
			{
				Config: config,
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkDistinctValues("id", node(0), node(1), node(2)),
					func(*terraform.State) error {
						if n := countDropletsNamed(t, prefix+"-same"); n != 3 {
							return fmt.Errorf("%d droplets are named %s-same, want 3", n, prefix)
						}
						// Pending until a refresh reads them: terraform may die before it saves the state.
						if n := pendingDropletsNamed(t, prefix+"-same"); n != 3 {
							return fmt.Errorf("%d of the droplets are pending right after their create, want all 3", n)
						}
						return nil
					},
				),
			},
			{
				Config: config, // refreshed: in state, so claimed
				Check: func(*terraform.State) error {
					if n := pendingDropletsNamed(t, prefix+"-same"); n != 0 {
						return fmt.Errorf("%d droplets are still pending after a refresh read them", n)
					}
					return nil
				},
			},
		},
	})
}

// pendingDropletsNamed counts the droplets with the name that carry a pending tag.
func pendingDropletsNamed(t *testing.T, name string) int {
	n := 0
	for _, d := range dropletsNamed(t, name) {
		if slices.ContainsFunc(d.Tags, func(tag string) bool { return strings.HasPrefix(tag, droplet.PendingTagPrefix) }) {
			n++
		}
	}
	return n
}
