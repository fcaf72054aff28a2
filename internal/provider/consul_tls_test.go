package provider

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/pki"
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

// When the provider's own client key (consul_client_key_pem) is the key of the agent's
// certificate, a refresh or a destroy uses it and reads nothing back from the container
// (an SSH command each time); another key leaves the container's to be read.
func TestRunningSpecTakesTheProvidersKeyOfTheSameCertificate(t *testing.T) {
	t.Parallel()
	mine, err := pki.GenerateTLS(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.GenerateTLS(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &consul.Container{ID: "c1", Name: "consul-server", HTTPS: true}
	fromState := &consul.TLS{CAPEM: mine.CAPEM, CertPEM: mine.CertPEM, KeyWriteOnly: true}
	for name, tc := range map[string]struct {
		providerKey, want string
	}{
		"the certificate's key":  {providerKey: mine.KeyPEM, want: mine.KeyPEM},
		"another certificate's":  {providerKey: other.KeyPEM, want: "KEY FROM THE CONTAINER"},
		"no key in the provider": {want: "KEY FROM THE CONTAINER"},
	} {
		reads := 0
		files := countingFiles{containerFiles: containerFiles{consul.KeyFile: "KEY FROM THE CONTAINER"}, reads: &reads}
		d := &providerData{consul: &consul.Access{CAPEM: mine.CAPEM, CertPEM: mine.CertPEM, KeyPEM: tc.providerKey}}
		spec := consulRunningSpec(context.Background(), files, c, d.consulWithKey(fromState))
		if spec.TLS == nil || spec.TLS.KeyPEM != tc.want {
			t.Errorf("%s: the running spec's key is not the one expected", name)
		}
		if wantReads := map[bool]int{true: 0, false: 1}[tc.want == mine.KeyPEM]; reads != wantReads {
			t.Errorf("%s: the container's key was read %d times, want %d", name, reads, wantReads)
		}
	}
	if fromState.KeyPEM != "" {
		t.Error("the state's material was changed in place")
	}
}

// countingFiles counts the container file reads.
type countingFiles struct {
	containerFiles
	reads *int
}

func (f countingFiles) CopyFromContainer(ctx context.Context, id, src string) (io.ReadCloser, container.PathStat, error) {
	*f.reads++
	return f.containerFiles.CopyFromContainer(ctx, id, src)
}
