package droplet

import (
	"context"
	"fmt"
	"strings"
)

// prefetchLog is where the node's background pulls write what they did (a variable for
// the tests, which run the script on this machine).
var prefetchLog = "/var/log/microswarm-prefetch.log"

// prefetchScript starts, in a session of its own that outlives the SSH session, one
// `docker pull` after another; it prints "started", or "absent" on a node without the
// docker CLI.
const prefetchScript = `command -v docker >/dev/null 2>&1 || { echo absent; exit 0; }
detach=
command -v setsid >/dev/null 2>&1 && detach=setsid
$detach nohup sh -c 'for ref; do docker pull -q "$ref" >/dev/null || echo "prefetch: pulling $ref failed" >&2; done; echo "prefetch: done" >&2' microswarm-prefetch %s >>%s 2>&1 </dev/null &
echo started
`

// PrefetchImages has the node start pulling images, in the order given, in the background:
// the resources that later run them find them there, or join the pull in progress (the
// engine shares a layer's download among the pulls that want it). It returns once the
// pulls are started, and says whether they were ("started") or the node has no docker CLI
// to run them ("absent"). Best effort by design: the pulls are not waited for, and one
// that fails (no network, a private registry the node has no login for) is left to the
// resource that needs the image, which pulls it itself and reports what fails. The pulls'
// output goes to /var/log/microswarm-prefetch.log on the node.
func PrefetchImages(ctx context.Context, run RunFunc, images []string) (string, error) {
	if len(images) == 0 {
		return "", nil
	}
	quoted := make([]string, len(images))
	for i, ref := range images {
		if ref == "" || strings.ContainsAny(ref, "'\n") {
			return "", fmt.Errorf("prefetching images: %q is not an image reference", ref)
		}
		quoted[i] = "'" + ref + "'"
	}
	out, err := run(ctx, fmt.Sprintf(prefetchScript, strings.Join(quoted, " "), prefetchLog))
	if err != nil {
		return "", fmt.Errorf("prefetching images: %w", err)
	}
	switch state := strings.TrimSpace(out); state {
	case "started", "absent":
		return state, nil
	}
	return "", fmt.Errorf("prefetching images: unexpected output %q", out)
}
