package testkit

import (
	"encoding/json"
	"slices"
	"testing"
)

// The search finds a secret in every form a leak takes: as is, inside JSON (a state file,
// `terraform show -json`, docker inspect), and one line of a PEM key in a log line.
func TestSecretsAreFoundInEveryFormALeakTakes(t *testing.T) {
	t.Parallel()
	pem := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACBn0vMZn8tN3pOQwqf1Q9X0b2yQnpx5mqNIZwz3o2w5mQAAAJgmTq6HJk6u\n-----END OPENSSH PRIVATE KEY-----\n"
	secrets := Secrets{"gossip key": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=", "ssh key": pem, "unset": ""}
	stateJSON, _ := json.Marshal(map[string]any{"attributes": map[string]string{"encrypt": secrets["gossip key"], "key": pem}})
	cases := map[string]struct {
		text string
		want []string
	}{
		"nothing":                 {text: `{"encrypt_wo": null, "config_hash": "9f2c"}`},
		"as is":                   {text: "agent -encrypt=" + secrets["gossip key"], want: []string{"gossip key"}},
		"in a state file":         {text: string(stateJSON), want: []string{"gossip key", "ssh key"}},
		"one PEM line in a log":   {text: "2026-12-02T22:00:00Z [TRACE] QyNTUxOQAAACBn0vMZn8tN3pOQwqf1Q9X0b2yQnpx5mqNIZwz3o2w5mQAAAJgmTq6HJk6u", want: []string{"ssh key"}},
		"a PEM header is no leak": {text: "-----BEGIN OPENSSH PRIVATE KEY-----"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := secrets.Find([]byte(tc.text)); !slices.Equal(got, tc.want) {
				t.Errorf("found %v, want %v", got, tc.want)
			}
		})
	}
}
