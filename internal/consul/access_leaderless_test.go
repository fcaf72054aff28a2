package consul

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// A cluster without a leader (a quorum lost) answers only stale reads; every other
// request waits out Consul's RPC hold (7 s) and fails, which made a plan after a lost
// quorum take 45 s. The reader's token made earlier is found with stale reads alone.
func TestAccessWithoutALeaderFindsTheTokenByStaleReads(t *testing.T) {
	var mu sync.Mutex
	var consistent []string // requests that a leaderless cluster would hold, then fail
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/status/leader" {
			_ = json.NewEncoder(w).Encode("")
			return
		}
		if _, stale := r.URL.Query()["stale"]; !stale || r.Method != http.MethodGet {
			mu.Lock()
			consistent = append(consistent, r.Method+" "+r.URL.Path)
			mu.Unlock()
			http.Error(w, "No cluster leader", http.StatusInternalServerError)
			return
		}
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/acl/policy/name/"):
			_ = json.NewEncoder(w).Encode(consulapi.ACLPolicy{ID: "p1", Name: strings.TrimPrefix(r.URL.Path, "/v1/acl/policy/name/"), Rules: GateRules})
		case r.URL.Path == "/v1/acl/tokens":
			_ = json.NewEncoder(w).Encode([]consulapi.ACLTokenListEntry{{AccessorID: "a1"}})
		case r.URL.Path == "/v1/acl/token/a1":
			_ = json.NewEncoder(w).Encode(consulapi.ACLToken{AccessorID: "a1", SecretID: "s1"})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	open := func(cfg conn.ConsulConfig) (*consulapi.Client, error) {
		return consulapi.NewClient(&consulapi.Config{Address: strings.TrimPrefix(srv.URL, "http://"), Token: cfg.Token})
	}
	access := &Access{ManagementToken: "mgmt"}
	secret, err := access.readerToken(t.Context(), open, conn.ConsulConfig{}, "c1", GateReader)
	if err != nil || secret != "s1" {
		t.Fatalf("reader token %q, %v; want the one made earlier, s1", secret, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(consistent) > 0 {
		t.Errorf("asked a leaderless cluster what only a leader answers: %v", consistent)
	}
}
