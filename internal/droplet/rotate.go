package droplet

import (
	"context"
	"fmt"
	"strings"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// installHostKeyScript replaces the node's ed25519 host key with the one on standard input
// (private key, PEM) and $1 (its public half), then has sshd load it (open sessions stay).
// The new files are moved into place whole, so sshd never reads half a key.
const installHostKeyScript = `set -e
umask 077
k=/etc/ssh/ssh_host_ed25519_key
rm -f "$k.microswarm" "$k.microswarm.pub"
cat > "$k.microswarm"
printf '%s\n' "$1" > "$k.microswarm.pub"
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
`

// InstallHostKey gives the node the host key key (see Stack.RotatedHostKey), sent over
// the connection pinned to its current one. The key the provider handed over in
// user_data stays readable from the metadata service for the droplet's whole life; once
// replaced it opens nothing. Running it again with the same key changes nothing.
func InstallHostKey(ctx context.Context, h *conn.Host, key HostKey) error {
	public := strings.TrimSpace(key.Public)
	if strings.ContainsAny(public, "'\n") {
		return fmt.Errorf("installing the host key: %q is not a public key", public)
	}
	command := "sh -c '" + strings.ReplaceAll(installHostKeyScript, "'", `'"'"'`) + "' install-host-key '" + public + "'"
	if _, err := h.RunIdempotent(ctx, command, key.PrivatePEM); err != nil {
		return fmt.Errorf("installing the node's new host key: %w", err)
	}
	return nil
}
