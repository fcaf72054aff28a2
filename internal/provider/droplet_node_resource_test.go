package provider

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/tfstate"
)

const testConsulImage = "hashicorp/consul:1.20.5"

func dropletNodesConfig(prefix string, names []string, size string, tags []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	tagList := make([]string, len(tags))
	for i, tag := range tags {
		tagList[i] = strconv.Quote(tag)
	}
	return fmt.Sprintf(`
locals {
  names = [%s]
}

resource "microswarm_droplet_node" "test" {
  count  = length(local.names)
  name   = "%s-${local.names[count.index]}"
  region = "nyc3"
  size   = %q
  tags   = [%s]
}
`, strings.Join(quoted, ", "), prefix, size, strings.Join(tagList, ", "))
}

func TestAccDropletNode_basic(t *testing.T) {
	// The import step reaches hosts no resource pins yet: first-use trust must be allowed.
	t.Setenv(envHostKeyPolicy, "accept-new")
	prefix := "acc-" + acctest.RandString(6)
	node := func(i int) string { return fmt.Sprintf("microswarm_droplet_node.test[%d]", i) }
	sameID := statecheck.CompareValue(compare.ValuesSame())

	var computed []statecheck.StateCheck
	for i := range 3 {
		computed = append(computed,
			statecheck.ExpectKnownValue(node(i), tfjsonpath.New("id"), knownvalue.StringRegexp(regexp.MustCompile(`^[0-9]+$`))),
			statecheck.ExpectKnownValue(node(i), tfjsonpath.New("status"), knownvalue.StringExact("active")),
			statecheck.ExpectKnownValue(node(i), tfjsonpath.New("image"), knownvalue.StringExact(DefaultDropletImage)),
			statecheck.ExpectKnownValue(node(i), tfjsonpath.New("ipv4_address"), knownvalue.StringRegexp(ipv4)),
			statecheck.ExpectKnownValue(node(i), tfjsonpath.New("ipv4_address_private"), knownvalue.StringRegexp(ipv4)),
			statecheck.ExpectKnownValue(node(i), tfjsonpath.New("vpc_uuid"), knownvalue.StringRegexp(uuidPattern)),
			statecheck.ExpectKnownValue(node(i), tfjsonpath.New("docker_host"), knownvalue.StringRegexp(regexp.MustCompile(`^ssh://root@[0-9.]+$`))),
			statecheck.ExpectKnownValue(node(i), tfjsonpath.New("docker_version"), knownvalue.StringRegexp(regexp.MustCompile(`^[0-9]+\.[0-9]+`))),
			statecheck.ExpectKnownValue(node(i), tfjsonpath.New("ssh_host_key"), knownvalue.StringRegexp(regexp.MustCompile(`^ssh-ed25519 AAAA`))),
			statecheck.ExpectKnownValue(node(i), tfjsonpath.New("tags"), knownvalue.SetExact([]knownvalue.Check{knownvalue.StringExact("acc")})),
		)
	}

	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				// Three nodes, created in parallel by terraform.
				Config:            dropletNodesConfig(prefix, []string{"a", "b", "c"}, "s-1vcpu-1gb", []string{"acc"}),
				ConfigStateChecks: append(computed, sameID.AddStateValue(node(0), tfjsonpath.New("id"))),
				Check: resource.ComposeAggregateTestCheckFunc(
					checkDistinctValues("ipv4_address", node(0), node(1), node(2)),
					checkDistinctValues("ssh_host_key", node(0), node(1), node(2)),
					checkRunsContainer(t, node(0)),
					checkRunsContainer(t, node(2)),
				),
			},
			{
				// Import: the host key recorded on first contact must be the pinned one.
				ResourceName:            node(1),
				ImportStateIdFunc:       stateID(node(1)),
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"user_data", "ssh_keys", "timeouts", "firewall"},
			},
			{
				// Rename in place.
				Config: dropletNodesConfig(prefix, []string{"renamed", "b", "c"}, "s-1vcpu-1gb", []string{"acc"}),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(node(0), plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(node(1), plancheck.ResourceActionNoop),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					sameID.AddStateValue(node(0), tfjsonpath.New("id")),
					statecheck.ExpectKnownValue(node(0), tfjsonpath.New("name"), knownvalue.StringExact(prefix+"-renamed")),
				},
				Check: checkAPIDroplet(t, node(0), "name", prefix+"-renamed", func(d *droplet.Droplet) string { return d.Name }),
			},
			{
				// A droplet deleted outside Terraform is planned for re-creation.
				PreConfig: func() { deleteDropletOutOfBand(t, prefix+"-c") },
				Config:    dropletNodesConfig(prefix, []string{"renamed", "b", "c"}, "s-1vcpu-1gb", []string{"acc"}),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(node(2), plancheck.ResourceActionCreate),
					plancheck.ExpectResourceAction(node(0), plancheck.ResourceActionNoop),
				}},
				Check: checkRunsContainer(t, node(2)),
			},
		},
	})
}

func TestAccDropletNode_update(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	const node = "microswarm_droplet_node.test[0]"
	sameID := statecheck.CompareValue(compare.ValuesSame())
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				Config:            dropletNodesConfig(prefix, []string{"u"}, "s-1vcpu-1gb", nil),
				ConfigStateChecks: []statecheck.StateCheck{sameID.AddStateValue(node, tfjsonpath.New("id"))},
			},
			{
				// Resize and retag in place: same droplet, same pinned key, Docker answering.
				Config: dropletNodesConfig(prefix, []string{"u"}, "s-2vcpu-2gb", []string{"web", "blue"}),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(node, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					sameID.AddStateValue(node, tfjsonpath.New("id")),
					statecheck.ExpectKnownValue(node, tfjsonpath.New("size"), knownvalue.StringExact("s-2vcpu-2gb")),
					statecheck.ExpectKnownValue(node, tfjsonpath.New("status"), knownvalue.StringExact("active")),
					statecheck.ExpectKnownValue(node, tfjsonpath.New("tags"), knownvalue.SetExact([]knownvalue.Check{
						knownvalue.StringExact("web"), knownvalue.StringExact("blue")})),
				},
				Check: resource.ComposeAggregateTestCheckFunc(checkRunsContainer(t, node), checkAPIDroplet(t, node, "size", "s-2vcpu-2gb", func(d *droplet.Droplet) string { return d.Size })),
			},
			{
				// Nothing left to change: an empty plan.
				Config:   dropletNodesConfig(prefix, []string{"u"}, "s-2vcpu-2gb", []string{"web", "blue"}),
				PlanOnly: true,
			},
		},
	})
}

// Changing ssh_keys updates root's authorized keys in place: the droplet, a swarm and
// Consul member, stays; the new key lets one in and the old one no longer does.
func TestAccDropletNode_sshKeysInPlace(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	const node = "microswarm_droplet_node.test"
	sameID := statecheck.CompareValue(compare.ValuesSame())
	keys := map[string]accountKey{}
	config := func(name string) string {
		return fmt.Sprintf(`
resource "microswarm_droplet_node" "test" {
  name     = %q
  region   = "nyc3"
  size     = "s-1vcpu-1gb"
  ssh_keys = [%q]
}
`, prefix+"-keys", keys[name].fingerprint)
	}
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1") // as resource.Test would; the keys need the API first
	}
	testkit.PreCheck(t)
	// Registered before the steps, whose configs name their fingerprints.
	keys["a"], keys["b"] = registerAccountKey(t, prefix+"-a"), registerAccountKey(t, prefix+"-b")
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				ConfigStateChecks: []statecheck.StateCheck{sameID.AddStateValue(node, tfjsonpath.New("id"))},
				Config:            config("a"),
				Check:             checkSSHKey(node, keys, "a"),
			},
			{
				Config: config("b"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(node, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{sameID.AddStateValue(node, tfjsonpath.New("id"))},
				Check:             checkSSHKey(node, keys, "b"),
			},
		},
	})
}

// accountKey is an SSH key registered with the account, with its private half.
type accountKey struct {
	fingerprint string
	private     []byte
}

func registerAccountKey(t *testing.T, name string) accountKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	do := testkit.Godo(t)
	key, _, err := do.Keys.Create(context.Background(), &godo.KeyCreateRequest{Name: name, PublicKey: conn.AuthorizedKey(signer.PublicKey())})
	if err != nil {
		t.Fatalf("registering %s: %v", name, err)
	}
	t.Cleanup(func() { _, _ = do.Keys.DeleteByID(context.Background(), key.ID) })
	return accountKey{fingerprint: key.Fingerprint, private: pem.EncodeToMemory(block)}
}

// checkSSHKey proves that of the keys, exactly the named one logs in as root.
func checkSSHKey(name string, keys map[string]accountKey, want string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[stateKey(name)]
		if !ok {
			return fmt.Errorf("%s not in state", name)
		}
		target := conn.Target{Host: rs.Primary.Attributes["docker_host"], HostKey: rs.Primary.Attributes["ssh_host_key"]}
		for k, key := range keys {
			pool, err := conn.NewPool(conn.Options{PrivateKey: key.private, ConnectTimeout: 10 * time.Second})
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			var out string
			h, err := pool.Open(ctx, target)
			if err == nil {
				out, err = h.Run(ctx, "id -un", nil)
			}
			cancel()
			_ = pool.Close()
			switch {
			case k == want && (err != nil || out != "root\n"):
				return fmt.Errorf("key %s should log in as root: %q, %v", k, out, err)
			case k != want && err == nil:
				return fmt.Errorf("key %s still logs in after ssh_keys moved to %s", k, want)
			}
		}
		return nil
	}
}

// The host key handed to a droplet in user_data stays readable from the metadata service,
// so the provider rotates it right after first contact: the pinned key is a new one, and
// the handed-over key opens nothing.
func TestAccDropletNode_hostKeyRotated(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	const node = "microswarm_droplet_node.test[0]"
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{{
			Config: dropletNodesConfig(prefix, []string{"rot"}, "s-1vcpu-1gb", nil),
			Check: func(s *terraform.State) error {
				rs, ok := s.RootModule().Resources[stateKey(node)]
				if !ok {
					return fmt.Errorf("%s not in state", node)
				}
				host, pinned := rs.Primary.Attributes["docker_host"], rs.Primary.Attributes["ssh_host_key"]
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				pool := testkit.Pool(t)
				h, err := pool.Open(ctx, conn.Target{Host: host, HostKey: pinned})
				if err != nil {
					return fmt.Errorf("the pinned key %s does not open %s: %w", fingerprintOf(pinned), host, err)
				}
				// What anyone on the droplet (or with its metadata) can read.
				read := "curl -fsS http://169.254.169.254/metadata/v1/user-data"
				if testkit.IsLocalCloud() {
					read = "cat /etc/microswarm/user-data"
				}
				userData, err := h.Run(ctx, read, nil)
				if err != nil {
					return err
				}
				var doc struct {
					SSHKeys map[string]string `yaml:"ssh_keys"`
				}
				if err := yaml.Unmarshal([]byte(userData), &doc); err != nil || doc.SSHKeys["ed25519_public"] == "" {
					return fmt.Errorf("no host key in the droplet's user_data (%v):\n%s", err, userData)
				}
				handedOver := doc.SSHKeys["ed25519_public"]
				if fingerprintOf(handedOver) == fingerprintOf(pinned) {
					return fmt.Errorf("the pinned host key %s is the one user_data carries: its private half is readable on the droplet", fingerprintOf(pinned))
				}
				other := testkit.Pool(t)
				if _, err := other.Open(ctx, conn.Target{Host: host, HostKey: handedOver}); err == nil {
					return fmt.Errorf("%s still presents the host key from user_data", host)
				}
				return nil
			},
		}},
	})
}

// A droplet whose user data is a script keeps the host key it makes itself: nothing
// vouches for that key, so host_key_policy decides, and what it accepts is recorded.
func TestAccDropletNode_scriptUserDataHonoursHostKeyPolicy(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	config := func(policy string) string {
		return fmt.Sprintf(`
provider "microswarm" {
  host_key_policy = %q
}

resource "microswarm_droplet_node" "test" {
  name      = "%s-script"
  region    = "nyc3"
  size      = "s-1vcpu-1gb"
  user_data = "#!/bin/sh\necho hello > /root/hello\n"
}
`, policy, prefix)
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testkit.PreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkDropletNodesDestroyed,
		Steps: []resource.TestStep{
			{
				// strict: the key is refused, with its fingerprint, and the droplet is tainted.
				Config:      config("strict"),
				ExpectError: regexp.MustCompile(`not trusted yet:\s+ssh-ed25519\s+SHA256:`),
			},
			{
				// accept-new: trusted on first use, and recorded.
				Config: config("accept-new"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("microswarm_droplet_node.test", tfjsonpath.New("ssh_host_key"), knownvalue.StringRegexp(regexp.MustCompile(`^ssh-ed25519 AAAA`))),
				},
			},
		},
	})
}

// Two stacks in one account use the same names: neither may adopt, and then destroy,
// the other's droplet.
func TestAccDropletNode_sameNameAsAnotherStack(t *testing.T) {
	prefix := "acc-" + acctest.RandString(6)
	const node = "microswarm_droplet_node.test[0]"
	ctx := context.Background()
	var other *droplet.Droplet
	otherSurvives := func(*terraform.State) error {
		d, err := testkit.Cloud(t).Get(ctx, other.ID)
		if err != nil {
			return fmt.Errorf("the other stack's droplet %d: %w", other.ID, err)
		}
		if d.IdempotencyToken != "other-stack" {
			return fmt.Errorf("the other stack's droplet %d now carries token %q", d.ID, d.IdempotencyToken)
		}
		return nil
	}
	resource.Test(t, resource.TestCase{
		PreCheck: func() {
			testkit.PreCheck(t)
			cloud := testkit.Cloud(t)
			d, _, err := cloud.Create(ctx, droplet.Spec{Name: prefix + "-web", Region: "nyc3", Size: "s-1vcpu-1gb",
				Image: DefaultDropletImage, IdempotencyTag: droplet.IdempotencyTag("other-stack")})
			if err != nil {
				t.Fatalf("the other stack's droplet: %v", err)
			}
			other = d
			t.Cleanup(func() { _ = cloud.Delete(context.WithoutCancel(ctx), d.ID) })
		},
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy: func(s *terraform.State) error {
			return errors.Join(checkDropletNodesDestroyed(s), otherSurvives(s))
		},
		Steps: []resource.TestStep{{
			Config: dropletNodesConfig(prefix, []string{"web"}, "s-1vcpu-1gb", nil),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(node, tfjsonpath.New("idempotency_token"), knownvalue.StringRegexp(regexp.MustCompile(`^[0-9a-f]{32}$`))),
				statecheck.ExpectKnownValue(node, tfjsonpath.New("ssh_host_key"), knownvalue.StringRegexp(regexp.MustCompile(`^ssh-ed25519 AAAA`))),
			},
			Check: resource.ComposeAggregateTestCheckFunc(
				func(s *terraform.State) error {
					id, err := dropletID(s, node)
					if err != nil {
						return err
					}
					if id == other.ID {
						return fmt.Errorf("the node adopted the other stack's droplet %d", id)
					}
					return nil
				},
				otherSurvives,
			),
		}},
	})
}

func TestDropletNodeInputIsValidatedAtPlanTime(t *testing.T) {
	cases := map[string]struct {
		attrs   string
		wantErr string
	}{
		"name is a hostname":        {attrs: `name = "-bad_name"`, wantErr: `valid hostname`},
		"region is a slug":          {attrs: `region = "New York"`, wantErr: `region slug`},
		"size is a slug":            {attrs: `size = "Big One"`, wantErr: `size slug`},
		"image is a slug":           {attrs: `image = "Ubuntu 22"`, wantErr: `image slug`},
		"ssh keys are ids or md5":   {attrs: `ssh_keys = ["my key"]`, wantErr: `numeric key ID or an MD5`},
		"vpc is a uuid":             {attrs: `vpc_uuid = "default"`, wantErr: `VPC UUID`},
		"the managed tag is ours":   {attrs: `tags = ["microswarm"]`, wantErr: `value must be none of`},
		"pending tags are ours":     {attrs: `tags = ["microswarm-pending:00ff"]`, wantErr: `(?s)Reserved Tag.*tags.*provider writes itself`},
		"stack tags are ours":       {attrs: `tags = ["microswarm-stack:prod"]`, wantErr: `(?s)Reserved Tag.*provider writes itself`},
		"tags have the api's form":  {attrs: `tags = ["has space"]`, wantErr: `letters, digits`},
		"timeouts are go durations": {attrs: `timeouts = { create = "ten minutes" }`, wantErr: `(?i)duration`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			attrs := map[string]string{"name": `name = "n1"`, "region": `region = "nyc3"`, "size": `size = "s-1vcpu-1gb"`}
			key := strings.Fields(tc.attrs)[0]
			attrs[key] = tc.attrs
			body := ""
			for _, a := range attrs {
				body += "  " + a + "\n"
			}
			resource.UnitTest(t, resource.TestCase{
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				Steps: []resource.TestStep{{
					Config:      "resource \"microswarm_droplet_node\" \"n\" {\n" + body + "}\n",
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(tc.wantErr),
				}},
			})
		})
	}
}

var ipv4 = regexp.MustCompile(`^[0-9]{1,3}(\.[0-9]{1,3}){3}$`)

// checkRunsContainer pulls the Consul image on the node and runs `consul version` there,
// through the node's docker_host and pinned host key, as the other resources will.
func checkRunsContainer(t *testing.T, name string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[stateKey(name)]
		if !ok {
			return fmt.Errorf("%s not in state", name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		target := conn.Target{Host: rs.Primary.Attributes["docker_host"], HostKey: rs.Primary.Attributes["ssh_host_key"]}
		out, err := tfstate.RunContainer(ctx, testkit.Pool(t), target, testConsulImage, "version")
		if err != nil {
			return fmt.Errorf("running a container on %s: %w", target.Host, err)
		}
		if !strings.Contains(out, "Consul v1.20.5") {
			return fmt.Errorf("consul version on %s printed %q", target.Host, out)
		}
		return nil
	}
}

// stateID returns the ID of a resource in state, for importing an indexed resource.
func stateID(address string) resource.ImportStateIdFunc {
	return func(s *terraform.State) (string, error) {
		rs, ok := s.RootModule().Resources[stateKey(address)]
		if !ok {
			return "", fmt.Errorf("%s not in state", address)
		}
		return rs.Primary.ID, nil
	}
}

// stateKey turns `a.b[1]` into the flatmap state key `a.b.1`.
func stateKey(address string) string {
	return strings.NewReplacer("[", ".", "]", "").Replace(address)
}

func checkDistinctValues(attr string, names ...string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		seen := map[string]string{}
		for _, n := range names {
			v := s.RootModule().Resources[stateKey(n)].Primary.Attributes[attr]
			if other, dup := seen[v]; dup {
				return fmt.Errorf("%s and %s share %s %q", other, n, attr, v)
			}
			seen[v] = n
		}
		return nil
	}
}

func dropletID(s *terraform.State, name string) (int, error) {
	rs, ok := s.RootModule().Resources[stateKey(name)]
	if !ok {
		return 0, fmt.Errorf("%s not in state", name)
	}
	return strconv.Atoi(rs.Primary.ID)
}

// checkAPIDroplet checks one field of a droplet as the API reports it.
func checkAPIDroplet(t *testing.T, name, field, want string, get func(*droplet.Droplet) string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		id, err := dropletID(s, name)
		if err != nil {
			return err
		}
		d, err := testkit.Cloud(t).Get(context.Background(), id)
		if err != nil {
			return err
		}
		if got := get(d); got != want {
			return fmt.Errorf("the API reports droplet %d's %s as %q, want %q", id, field, got, want)
		}
		return nil
	}
}

func deleteDropletOutOfBand(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	cloud := testkit.Cloud(t)
	d, err := cloud.FindManaged(ctx, name, "nyc3")
	if err != nil || d == nil {
		t.Fatalf("finding droplet %s to delete out of band: %v (found %v)", name, err, d)
	}
	if err := cloud.Delete(ctx, d.ID); err != nil {
		t.Fatalf("deleting droplet %s out of band: %v", name, err)
	}
}

// checkDropletNodesDestroyed proves every droplet node in the final state is gone.
func checkDropletNodesDestroyed(s *terraform.State) error {
	cloud, err := droplet.NewClient(droplet.ClientOptions{Token: os.Getenv(envToken), BaseURL: os.Getenv(envAPIURL)})
	if err != nil {
		return err
	}
	for _, rs := range s.RootModule().Resources {
		if rs.Type != "microswarm_droplet_node" {
			continue
		}
		id, err := strconv.Atoi(rs.Primary.ID)
		if err != nil {
			return err
		}
		d, err := cloud.Get(context.Background(), id)
		switch {
		case errors.Is(err, droplet.ErrNotFound):
		case err != nil:
			return err
		default:
			return fmt.Errorf("droplet %d (%s) still exists, status %s", id, d.Name, d.Status)
		}
		// Its create tag went with it: the account keeps no tag per node ever made.
		if token := rs.Primary.Attributes["idempotency_token"]; token != "" {
			tag := droplet.IdempotencyTag(token)
			exists, err := cloud.TagExists(context.Background(), tag)
			if err != nil {
				return fmt.Errorf("looking for tag %s: %w", tag, err)
			}
			if exists {
				return fmt.Errorf("droplet %d is gone but its tag %s is still in the account", id, tag)
			}
		}
	}
	return nil
}
