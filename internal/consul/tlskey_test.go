package consul

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
)

// A write-only TLS key: the plan (no key) and the apply (the key) hash alike, the
// container gets the key itself, and ReadTLSKey gives it back from the container, which
// is how the provider presents the agent's certificate after the apply.
func TestWriteOnlyTLSKeyIsReadBackFromTheContainer(t *testing.T) {
	t.Parallel()
	material := newTestTLS(t)
	planned := serverSpec()
	planned.TLS = &TLS{CAPEM: material.CAPEM, CertPEM: material.CertPEM, KeyWriteOnly: true}
	applied := serverSpec()
	applied.TLS = &TLS{CAPEM: material.CAPEM, CertPEM: material.CertPEM, KeyPEM: material.KeyPEM, KeyWriteOnly: true}
	if planned.Hash() != applied.Hash() {
		t.Error("the hash follows the write-only key: every plan would show the container changing")
	}
	stored := serverSpec()
	stored.TLS = &material
	if stored.Hash() == applied.Hash() {
		t.Error("a key moved to key_pem_wo hashes as in key_pem: the container would keep a config the provider did not write")
	}

	f := newFakeEngine()
	c, _, err := Ensure(context.Background(), f, applied)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ReadTLSKey(context.Background(), f, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if key != material.KeyPEM {
		t.Errorf("read back %q, want the key the container was made with", key)
	}
	if _, err := ReadTLSKey(context.Background(), f, "no-such-container"); err == nil || !strings.Contains(err.Error(), KeyFile) {
		t.Errorf("a missing container reads as %v, want an error naming %s", err, KeyFile)
	}
}

// rootFiles is a node's file system as ReadRootFile sees it, in front of the fake engine;
// archived counts the engine's archive reads.
type rootFiles struct {
	*fakeEngine
	files    map[string]string
	fail     error
	archived int
}

func (r *rootFiles) ReadRootFile(_ context.Context, path string, limit int64) ([]byte, error) {
	if r.fail != nil {
		return nil, r.fail
	}
	b, ok := r.files[path]
	if !ok {
		return nil, errors.New("head: cannot open " + path)
	}
	if int64(len(b)) > limit {
		b = b[:limit]
	}
	return []byte(b), nil
}

func (r *rootFiles) CopyFromContainer(ctx context.Context, id, path string) (io.ReadCloser, container.PathStat, error) {
	r.archived++
	return r.fakeEngine.CopyFromContainer(ctx, id, path)
}

// A running agent's key is read through its node (one command) rather than the engine's
// archive (a chroot re-exec per copy, 0.3-0.6 s on a busy node); whatever the node cannot
// give, a key it cannot read or a file that is no key, still comes from the engine.
func TestAKeyIsReadThroughTheNodeAndFromTheEngineWhenTheNodeCannot(t *testing.T) {
	t.Parallel()
	material := newTestTLS(t)
	spec := serverSpec()
	spec.TLS = &TLS{CAPEM: material.CAPEM, CertPEM: material.CertPEM, KeyPEM: material.KeyPEM, KeyWriteOnly: true}
	f := &rootFiles{fakeEngine: newFakeEngine()}
	ctx := context.Background()
	if _, _, err := Ensure(ctx, f, spec); err != nil {
		t.Fatal(err)
	}
	c, err := Find(ctx, f, spec.ContainerName)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Running || c.RootDir == "" {
		t.Fatalf("a running container has no root dir: %+v", c)
	}
	f.files = map[string]string{c.RootDir + KeyFile: material.KeyPEM}
	if key, err := ReadKeyOf(ctx, f, c); err != nil || key != material.KeyPEM || f.archived != 0 {
		t.Fatalf("through the node: key %q, %v, %d archive reads; want the key and none", key, err, f.archived)
	}
	for name, node := range map[string]func(){
		"a node that refuses": func() { f.fail = errors.New("permission denied") },
		"a file that is no key": func() {
			f.fail = nil
			f.files[c.RootDir+KeyFile] = "not a key"
		},
	} {
		node()
		before := f.archived
		if key, err := ReadKeyOf(ctx, f, c); err != nil || key != material.KeyPEM || f.archived != before+1 {
			t.Errorf("%s: key %q, %v, %d archive reads; want the key from the engine", name, key, err, f.archived-before)
		}
	}
	stopped := *c
	stopped.RootDir = ""
	before := f.archived
	if _, err := ReadKeyOf(ctx, f, &stopped); err != nil || f.archived != before+1 {
		t.Errorf("a container without a root dir: %v, %d archive reads; want the engine's", err, f.archived-before)
	}
}
