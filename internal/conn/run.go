package conn

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"
)

// Run runs a shell command on an ssh:// host over its pinned connection, with stdin as
// its input, and returns its standard output. A non-zero exit is an error that carries
// what the command wrote to standard error.
func (h *Host) Run(ctx context.Context, command string, stdin io.Reader) (string, error) {
	if h.endpoint.Scheme != SchemeSSH {
		return "", fmt.Errorf("%s is not an ssh:// host: commands run only over SSH", h.endpoint)
	}
	// A failure to dial the host comes back as it is; one to open the session says so.
	session, err := openChannel(ctx, h, func(c *ssh.Client) (*ssh.Session, error) {
		s, err := c.NewSession()
		if err != nil {
			return nil, fmt.Errorf("opening an SSH session on %s: %w", h.endpoint, err)
		}
		return s, nil
	}, func(s *ssh.Session) { _ = s.Close() })
	if err != nil {
		return "", err
	}
	defer session.Close()
	var stdout, stderr bytes.Buffer
	session.Stdin, session.Stdout, session.Stderr = stdin, &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- session.Run(command) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = session.Close()
		return "", ctx.Err()
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("running a command on %s: %w: %s", h.endpoint, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}
