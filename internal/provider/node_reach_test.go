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
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := conn.NewPool(conn.Options{PrivateKey: pem.EncodeToMemory(block), ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
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
