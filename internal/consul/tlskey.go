package consul

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/docker/docker/api/types/container"
)

// FileReader reads files out of a container; *client.Client implements it.
type FileReader interface {
	CopyFromContainer(ctx context.Context, container, srcPath string) (io.ReadCloser, container.PathStat, error)
}

// maxKeySize bounds what ReadTLSKey accepts: a PEM private key is a few kilobytes.
const maxKeySize = 64 << 10

// ReadTLSKey returns the agent's TLS private key from its container (KeyFile), where it
// was written when the container was made. A key given write-only is in no state, so
// this is how the provider presents the agent's certificate to it later (a refresh, a
// rolling restart, the graceful leave on destroy): the node already holds the key, and
// it is only read over the provider's own connection, never written down.
func ReadTLSKey(ctx context.Context, r FileReader, containerID string) (string, error) {
	rc, _, err := r.CopyFromContainer(ctx, containerID, KeyFile)
	if err != nil {
		return "", fmt.Errorf("reading %s from container %s: %w", KeyFile, containerID, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("container %s has no %s", containerID, KeyFile)
		}
		if err != nil {
			return "", fmt.Errorf("reading %s from container %s: %w", KeyFile, containerID, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if hdr.Size > maxKeySize {
			return "", fmt.Errorf("%s in container %s is %d bytes, not a key", KeyFile, containerID, hdr.Size)
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxKeySize))
		if err != nil {
			return "", fmt.Errorf("reading %s from container %s: %w", KeyFile, containerID, err)
		}
		return string(b), nil
	}
}
