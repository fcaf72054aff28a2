package provider

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
)

// fakePrivate is a resource's private state.
type fakePrivate map[string][]byte

func (p fakePrivate) GetKey(_ context.Context, key string) ([]byte, diag.Diagnostics) {
	return p[key], nil
}

func (p fakePrivate) SetKey(_ context.Context, key string, value []byte) diag.Diagnostics {
	if len(value) == 0 {
		delete(p, key)
	} else {
		p[key] = value
	}
	return nil
}

// A refresh that noted the lost quorum makes the plan update the server, with a warning
// that says what the apply will do; without the note nothing is planned.
func TestPlanQuorumRecovery(t *testing.T) {
	var diags diag.Diagnostics
	if planQuorumRecovery(context.Background(), fakePrivate{}, &diags) || len(diags) != 0 {
		t.Fatalf("planned a recovery with no note: %v", diags)
	}
	p := fakePrivate{privateQuorumLost: []byte(`"3 voters, 1 remaining; 10.0.0.2:8300 gone (its droplet is off)"`)}
	if !planQuorumRecovery(context.Background(), p, &diags) {
		t.Fatal("no recovery planned for a noted quorum loss")
	}
	if diags.WarningsCount() != 1 || !strings.Contains(diags.Warnings()[0].Detail(), "outage recovery") {
		t.Fatalf("want one warning naming the outage recovery, got %v", diags)
	}
}
