package provider

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
)

// containerFiles is a container's files, as CopyFromContainer gives them.
type containerFiles map[string]string

func (f containerFiles) CopyFromContainer(_ context.Context, _, src string) (io.ReadCloser, container.PathStat, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if body, ok := f[src]; ok {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "key.pem", Mode: 0o600, Size: int64(len(body))})
		_, _ = tw.Write([]byte(body))
	}
	_ = tw.Close()
	return io.NopCloser(&buf), container.PathStat{}, nil
}

// A key given write-only is in no state: to talk to the agent after the apply (a refresh,
// a rolling restart, the leave on destroy) the provider reads it from the container,
// and a key in the state is used as it is.
func TestRunningSpecReadsAWriteOnlyKeyFromTheContainer(t *testing.T) {
	c := &consul.Container{ID: "c1", Name: "consul-server", HTTPS: true}
	files := containerFiles{consul.KeyFile: "KEY FROM THE CONTAINER"}
	fromState := &consul.TLS{CAPEM: "CA", CertPEM: "CERT", KeyWriteOnly: true}
	spec := consulRunningSpec(context.Background(), files, c, fromState)
	if spec.TLS == nil || spec.TLS.KeyPEM != "KEY FROM THE CONTAINER" || spec.TLS.CertPEM != "CERT" {
		t.Fatalf("running spec TLS %+v, want the state's certificate with the container's key", spec.TLS)
	}
	if fromState.KeyPEM != "" {
		t.Error("the state's material was changed in place")
	}
	stored := &consul.TLS{CAPEM: "CA", CertPEM: "CERT", KeyPEM: "KEY FROM THE STATE"}
	if spec := consulRunningSpec(context.Background(), files, c, stored); spec.TLS.KeyPEM != "KEY FROM THE STATE" {
		t.Errorf("a stored key gave way to %q", spec.TLS.KeyPEM)
	}
	if spec := consulRunningSpec(context.Background(), files, &consul.Container{ID: "c2"}, fromState); spec.TLS != nil {
		t.Error("a container without HTTPS was given TLS material")
	}
}
