package testkit

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestARealTokenAloneDoesNotReachTheRealCloud(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		env   map[string]string
		local bool
	}{
		"nothing set: the local cloud":       {env: map[string]string{}, local: true},
		"a real token exported: still local": {env: map[string]string{"DIGITALOCEAN_TOKEN": "dop_v1_real"}, local: true},
		"the other token variable: local":    {env: map[string]string{"DIGITALOCEAN_ACCESS_TOKEN": "dop_v1_real"}, local: true},
		"a token with the explicit opt-in":   {env: map[string]string{"DIGITALOCEAN_TOKEN": "dop_v1_real", envRealCloud: "1"}, local: false},
		"an opt-in without a token: local":   {env: map[string]string{envRealCloud: "1"}, local: true},
		"an API URL names the endpoint":      {env: map[string]string{"DIGITALOCEAN_TOKEN": "t", "DIGITALOCEAN_API_URL": "http://127.0.0.1:8081"}, local: false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := useLocalCloud(func(k string) string { return tc.env[k] }); got != tc.local {
				t.Fatalf("useLocalCloud(%v) = %v, want %v", tc.env, got, tc.local)
			}
		})
	}
}

// TestSkipOrFailInCI runs itself in a child process, once as a developer and once as CI,
// with a missing prerequisite.
func TestSkipOrFailInCI(t *testing.T) {
	if os.Getenv("ACCTEST_SKIP_CHILD") == "1" {
		SkipOrFailInCI(t, "no such image")
		return
	}
	t.Parallel()
	for ci, wantFail := range map[string]bool{"": false, "1": true} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkipOrFailInCI$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "ACCTEST_SKIP_CHILD=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		failed := err != nil
		if failed != wantFail || (!wantFail && !strings.Contains(string(out), "--- SKIP")) {
			t.Errorf("CI=%q: a missing prerequisite made the test fail=%v, want fail=%v (and a skip otherwise):\n%s", ci, failed, wantFail, out)
		}
	}
}
