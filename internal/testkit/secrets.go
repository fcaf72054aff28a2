package testkit

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
)

// Secrets are the secret values a test must never find written down, by name.
type Secrets map[string]string

// minSecretLine is the shortest line of a multi-line secret (a PEM body) that counts as
// a leak when found alone: shorter ones (a header, a padding tail) are not secret.
const minSecretLine = 16

// forms are the spellings of a secret a text may hold: as is, JSON-escaped (a PEM's
// newlines become \n in a state file or a log line), and each long line of it alone.
func forms(value string) []string {
	out := []string{value}
	if quoted, err := json.Marshal(value); err == nil {
		if esc := string(quoted[1 : len(quoted)-1]); esc != value {
			out = append(out, esc)
		}
	}
	if strings.Contains(value, "\n") {
		for _, line := range strings.Split(value, "\n") {
			line = strings.TrimSpace(line)
			if len(line) >= minSecretLine && !strings.HasPrefix(line, "-----") {
				out = append(out, line)
			}
		}
	}
	return out
}

// Find returns the names of the secrets found in text, sorted; a secret with an empty
// value is skipped (callers check that each secret was really read).
func (s Secrets) Find(text []byte) []string {
	var found []string
	for name, value := range s {
		if value == "" {
			continue
		}
		for _, f := range forms(value) {
			if bytes.Contains(text, []byte(f)) {
				found = append(found, name)
				break
			}
		}
	}
	sort.Strings(found)
	return found
}
