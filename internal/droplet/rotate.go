package droplet

import (
	"context"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// rotateHostKeyScript replaces the node's ed25519 host key with one made on the node,
// then has sshd load it (open sessions stay) and prints the new public key. The new
// files are moved into place whole, so sshd never reads half a key.
const rotateHostKeyScript = `set -e
umask 077
k=/etc/ssh/ssh_host_ed25519_key
rm -f "$k.microswarm" "$k.microswarm.pub"
ssh-keygen -q -t ed25519 -N '' -C '' -f "$k.microswarm" </dev/null
mv "$k.microswarm.pub" "$k.pub"
mv "$k.microswarm" "$k"
chmod 644 "$k.pub"
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ssh 2>/dev/null; then
  systemctl reload ssh
elif command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet sshd 2>/dev/null; then
  systemctl reload sshd
elif [ -s /run/sshd.pid ]; then
  kill -HUP "$(cat /run/sshd.pid)"
else
  pkill -HUP -o -x sshd
fi
# Wait until sshd answers with the new key, so the next connection meets it.
want=$(cut -d' ' -f2 "$k.pub")
i=0
until ssh-keyscan -t ed25519 127.0.0.1 2>/dev/null | grep -qF "$want"; do
  i=$((i + 1)); [ "$i" -lt 100 ] || { echo "sshd did not load the new host key" >&2; exit 1; }
  sleep 0.1
done
cat "$k.pub"
`

// RotateHostKey gives the node a new ed25519 host key, made on the node, over the
// connection pinned to its current one, and returns the new public key. The key the
// provider handed over in user_data stays readable from the metadata service for the
// droplet's whole life; once rotated it opens nothing.
func RotateHostKey(ctx context.Context, h *conn.Host) (string, error) {
	out, err := h.Run(ctx, rotateHostKeyScript, nil)
	if err != nil {
		return "", fmt.Errorf("rotating the host key: %w", err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(out)))
	if err != nil || key.Type() != ssh.KeyAlgoED25519 {
		return "", fmt.Errorf("rotating the host key: the node printed %q, not an ed25519 public key", strings.TrimSpace(out))
	}
	return conn.AuthorizedKey(key), nil
}
