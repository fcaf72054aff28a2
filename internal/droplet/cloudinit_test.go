package droplet

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestWithHostKey(t *testing.T) {
	t.Parallel()
	key, err := NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		userData   string
		wantPinned bool
		wantKept   []string // top-level keys of the user's cloud-config that must survive
	}{
		"no user data":                   {userData: "", wantPinned: true},
		"cloud-config gets the key":      {userData: "#cloud-config\npackages: [htop]\nruncmd:\n  - echo hi\n", wantPinned: true, wantKept: []string{"packages", "runcmd"}},
		"a script is left alone":         {userData: "#!/bin/sh\necho hi\n", wantPinned: false},
		"user-managed ssh_keys are kept": {userData: "#cloud-config\nssh_keys:\n  rsa_private: x\n", wantPinned: false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, pinned, err := WithHostKey(tc.userData, key)
			if err != nil {
				t.Fatal(err)
			}
			if pinned != tc.wantPinned {
				t.Fatalf("pinned = %v, want %v", pinned, tc.wantPinned)
			}
			if !pinned {
				if out != tc.userData {
					t.Fatalf("user data changed although the key is not pinned:\n%s", out)
				}
				return
			}
			if !strings.HasPrefix(out, "#cloud-config\n") {
				t.Fatalf("output does not start with #cloud-config:\n%s", out)
			}
			var doc struct {
				SSHKeys map[string]string `yaml:"ssh_keys"`
				Rest    map[string]any    `yaml:",inline"`
			}
			if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("output is not YAML: %v\n%s", err, out)
			}
			if doc.SSHKeys["ed25519_public"] != key.Public || doc.SSHKeys["ed25519_private"] != key.PrivatePEM {
				t.Fatalf("ssh_keys section = %v, want the generated pair", doc.SSHKeys)
			}
			for _, k := range tc.wantKept {
				if _, ok := doc.Rest[k]; !ok {
					t.Errorf("the user's %q section was lost:\n%s", k, out)
				}
			}
		})
	}
}

func TestWithHostKeyRejectsBrokenCloudConfig(t *testing.T) {
	t.Parallel()
	key, err := NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := WithHostKey("#cloud-config\n: : [\n", key); err == nil || !strings.Contains(err.Error(), "not valid YAML") {
		t.Fatalf("broken cloud-config: err = %v", err)
	}
}
