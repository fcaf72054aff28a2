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
