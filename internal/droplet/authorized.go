package droplet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/digitalocean/godo"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// PublicKeys resolves account SSH keys (numeric IDs or MD5 fingerprints) to their public
// keys in authorized_keys form. A key deleted from the account wraps ErrNotFound.
func (c *Client) PublicKeys(ctx context.Context, refs []string) ([]string, error) {
	out := make([]string, 0, len(refs))
	for _, ref := range refs {
		var key *godo.Key
		err := c.call(ctx, "get ssh key "+ref, func(ctx context.Context) (r *godo.Response, err error) {
			if id, convErr := strconv.Atoi(ref); convErr == nil {
				key, r, err = c.api.Keys.GetByID(ctx, id)
			} else {
				key, r, err = c.api.Keys.GetByFingerprint(ctx, ref)
			}
			return r, err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, key.PublicKey)
	}
	return out, nil
}

// authorizedKeysCommand rewrites the SSH user's authorized_keys from stdin in one rename,
// so a dropped session never leaves the node with half a file (and nobody let in).
const authorizedKeysCommand = `umask 077 && mkdir -p ~/.ssh && cat > ~/.ssh/authorized_keys.microswarm && mv ~/.ssh/authorized_keys.microswarm ~/.ssh/authorized_keys`

// SetAuthorizedKeys moves a node's authorized keys, over its pinned SSH connection, from
// the keys this provider installed before (old) to want. Lines it did not install (keys
// from user data, or added by hand) stay.
func SetAuthorizedKeys(ctx context.Context, h *conn.Host, old, want []string) error {
	current, err := h.RunIdempotent(ctx, "cat ~/.ssh/authorized_keys 2>/dev/null || true", "")
	if err != nil {
		return err
	}
	merged, err := MergeAuthorizedKeys(current, old, want)
	if err != nil {
		return err
	}
	if _, err := h.RunIdempotent(ctx, authorizedKeysCommand, merged); err != nil { // writes the same file whole, however often
		return fmt.Errorf("writing authorized_keys: %w", err)
	}
	return nil
}

// MergeAuthorizedKeys returns the authorized_keys file current becomes when the keys in
// old are taken out and those in want are present once. Keys compare by their key
// material, not by comment or options.
func MergeAuthorizedKeys(current string, old, want []string) (string, error) {
	blob := func(line string) (string, bool) {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return "", false
		}
		return string(k.Marshal()), true
	}
	drop, have := map[string]bool{}, map[string]bool{}
	for _, k := range old {
		if b, ok := blob(k); ok {
			drop[b] = true
		}
	}
	for _, k := range want {
		b, ok := blob(k)
		if !ok {
			return "", errors.New("not an SSH public key: " + k)
		}
		delete(drop, b)
	}
	var out strings.Builder
	for _, line := range strings.Split(current, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if b, ok := blob(line); ok {
			if drop[b] || have[b] {
				continue
			}
			have[b] = true
		}
		out.WriteString(line + "\n")
	}
	for _, k := range want {
		if b, _ := blob(k); !have[b] {
			have[b] = true
			out.WriteString(strings.TrimSpace(k) + "\n")
		}
	}
	return out.String(), nil
}
