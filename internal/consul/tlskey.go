package consul

import (
	"archive/tar"
	"bytes"
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

// RootReader reads a file of a running container through its node's own file system: the
// container's merged root (Container.RootDir) holds what the container sees. That is one
// command on the node, where the engine's archive API re-executes itself into a chroot for
// each copy: 0.3-0.6 s per key on a busy node, measured, on every refresh of every agent.
type RootReader interface {
	ReadRootFile(ctx context.Context, path string, limit int64) ([]byte, error)
}

// ReadKeyOf returns c's TLS private key: through its node when r is also a RootReader and
// c runs, else (or when that read fails or gives no PEM key) from the engine's archive.
func ReadKeyOf(ctx context.Context, r FileReader, c *Container) (string, error) {
	if rr, ok := r.(RootReader); ok && c.RootDir != "" {
		b, err := rr.ReadRootFile(ctx, c.RootDir+KeyFile, maxKeySize)
		if err == nil && len(b) < maxKeySize && bytes.Contains(b, []byte("PRIVATE KEY-----")) {
			return string(b), nil
		}
	}
	return ReadTLSKey(ctx, r, c.ID)
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
