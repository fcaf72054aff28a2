package provider

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// A node that refuses connections: an error with the attribute's path for a step that
// must reach it, a warning naming what could not be checked for one that may not; an
// unparsable host is an error either way.
func TestReachNodeSaysWhatItTolerates(t *testing.T) {
	pool := newKeyedPool(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close() // nothing listens there now: connection refused
	d := &providerData{pool: pool}
	host := "ssh://root@" + closed
	ctx := context.Background()

	var diags diag.Diagnostics
	key1 := types.StringNull()
	if h := d.reachNode(ctx, path.Root("host"), host, &key1, mustReach, "", &diags); h != nil || !diags.HasError() {
		t.Fatalf("mustReach: %v, %v; want nil and an error", h, diags)
	}
	if e := diags.Errors()[0]; e.Summary() != "Could Not Reach Host" || !strings.HasPrefix(e.Detail(), "host: "+host) ||
		!strings.Contains(e.Detail(), "does not answer over SSH now") {
		t.Errorf("mustReach: %q: %q", e.Summary(), e.Detail())
	}

	diags = nil
	if h := d.reachNode(ctx, path.Root("host"), host, &key1, mayBeUnreachable, "the registrator service", &diags); h != nil || diags.HasError() || diags.WarningsCount() != 1 {
		t.Fatalf("mayBeUnreachable: %v, %v; want nil and one warning", h, diags)
	}
	if w := diags.Warnings()[0]; w.Summary() != "Node Unreachable" || !strings.Contains(w.Detail(), "so the registrator service could not be checked") {
		t.Errorf("mayBeUnreachable: %q: %q", w.Summary(), w.Detail())
	}

	diags = nil
	if h := d.reachNode(ctx, path.Root("host"), "ftp://x", &key1, mayBeUnreachable, "", &diags); h != nil || !diags.HasError() {
		t.Fatalf("an invalid host: %v; want an error", diags)
	}
}

// A host that presents another key than the pinned one (a droplet replaced at the same
// address, or someone in between): a refresh warns and keeps the state, so the plan that
// brings the new key can run; a delete or an apply's step fails as before.
func TestReachNodeToleratesAChangedHostKeyOnlyInARefresh(t *testing.T) {
	t.Parallel()
	pool := newKeyedPool(t)
	hostSigner := func() ssh.Signer {
		s, err := ssh.NewSignerFromKey(newEd25519Key(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	presented, pinned := hostSigner(), hostSigner()
	// An SSH server that gets no further than the handshake: the client stops at the key.
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(presented)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_, _, _, _ = ssh.NewServerConn(c, cfg)
			}()
		}
	}()
	d := &providerData{pool: pool}
	host := "ssh://root@" + l.Addr().String()
	ctx := context.Background()

	key := types.StringValue(conn.AuthorizedKey(pinned.PublicKey()))
	var diags diag.Diagnostics
	if h := d.reachNode(ctx, path.Root("host"), host, &key, refreshing, "the registrator service", &diags); h != nil || diags.HasError() || diags.WarningsCount() != 1 {
		t.Fatalf("refreshing: %v, %v; want nil and one warning", h, diags)
	}
	if w := diags.Warnings()[0]; w.Summary() != "Host Key Changed" || !strings.Contains(w.Detail(), "has CHANGED") ||
		!strings.Contains(w.Detail(), "So the registrator service could not be checked") {
		t.Errorf("refreshing: %q: %q", w.Summary(), w.Detail())
	}
	if key.ValueString() != conn.AuthorizedKey(pinned.PublicKey()) {
		t.Errorf("the refresh changed the pinned key to %q", key.ValueString())
	}
	for name, reach := range map[string]nodeReach{"mayBeUnreachable": mayBeUnreachable, "mustReach": mustReach} {
		diags = nil
		if h := d.reachNode(ctx, path.Root("host"), host, &key, reach, "", &diags); h != nil || !diags.HasError() {
			t.Errorf("%s: %v, %v; want nil and an error", name, h, diags)
		} else if e := diags.Errors()[0]; e.Summary() != "Could Not Reach Host" || !strings.Contains(e.Detail(), "has CHANGED") {
			t.Errorf("%s: %q: %q", name, e.Summary(), e.Detail())
		}
	}
}

func newEd25519Key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// newKeyedPool is a connection pool with a fresh client key and a short connect timeout.
func newKeyedPool(t *testing.T) *conn.Pool {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(newEd25519Key(t), "")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := conn.NewPool(conn.Options{PrivateKey: pem.EncodeToMemory(block), ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return pool
}
