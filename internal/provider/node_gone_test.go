package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestNodeWentAway(t *testing.T) {
	for err, want := range map[error]bool{
		nil: false,
		fmt.Errorf("pulling image hashicorp/consul:1.20.5: unexpected EOF"):          true,
		fmt.Errorf("running a command: %w", io.EOF):                                  true,
		fmt.Errorf("read tcp 10.0.0.1:22: connection reset by peer"):                 true,
		fmt.Errorf("waiting: %w", context.DeadlineExceeded):                          true,
		errors.New("Error response from daemon: No such image: hashicorp/consul:9"):  false,
		errors.New("container consul-agent exists and is not managed by microswarm"): false,
	} {
		if got := nodeWentAway(err); got != want {
			t.Errorf("nodeWentAway(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestEngineUnreachable(t *testing.T) {
	for err, want := range map[error]bool{
		nil: false,
		errors.New("ssh: forwarding to unix /var/run/docker.sock on 10.0.0.2:22: ssh: rejected: connect failed (open failed)"): true,
		errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"):        true,
		errors.New("Error response from daemon: No such image: hashicorp/consul:9"):                                            false,
		fmt.Errorf("running a command: %w", io.EOF):                                                                            false,
	} {
		if got := engineUnreachable(err); got != want {
			t.Errorf("engineUnreachable(%v) = %v, want %v", err, got, want)
		}
	}
}
