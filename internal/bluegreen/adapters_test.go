package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul/consultest"
)

// With ACLs on and deny by default, a gate with no token is told so, instead of seeing a
// color with no instance; a token that reads services and nodes sees the instances.
func TestConsulHealthSaysWhenACLsHideInstances(t *testing.T) {
	const management = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	agent := consultest.StartDevAgent(t, "-hcl", fmt.Sprintf(`acl {
  enabled = true
  default_policy = "deny"
  tokens { initial_management = %q }
}`, management))
	client := func(token string) *consulapi.Client {
		c, err := consulapi.NewClient(&consulapi.Config{Address: agent.Address(), Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	admin := client(management)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		err := admin.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{ID: "web-1", Name: "web", Tags: []string{"blue"}, Port: 80})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registering with the management token: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	_, err := (&ConsulHealth{API: client(""), Service: "web", Anonymous: true}).Instances(ctx, Blue)
	var anonymous *AnonymousError
	if !errors.As(err, &anonymous) || !strings.Contains(err.Error(), "no instance of web (blue)") {
		t.Errorf("an anonymous gate: %v, want an AnonymousError", err)
	}
	in, err := (&ConsulHealth{API: admin, Service: "web"}).Instances(ctx, Blue)
	if err != nil || len(in) != 1 || in[0].ID != "web-1" {
		t.Errorf("a gate that may read: %+v, %v; want web-1", in, err)
	}
}

// A refresh's counts read with Stale: a cluster that lost its leader answers only stale
// reads (any other waits out Consul's 7 s RPC hold and fails); a gate's read is not stale.
func TestConsulHealthStaleReadsAnyServer(t *testing.T) {
	var stale []bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, s := r.URL.Query()["stale"]
		stale = append(stale, s)
		if !s {
			http.Error(w, "No cluster leader", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte(`[{"Service":{"ID":"web-1","Service":"web","Tags":["blue"]},"Checks":[{"Status":"passing"}]}]`))
	}))
	defer srv.Close()
	api, err := consulapi.NewClient(&consulapi.Config{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	in, err := (&ConsulHealth{API: api, Service: "web", Stale: true}).Instances(t.Context(), Blue)
	if err != nil || len(in) != 1 || !in[0].Healthy {
		t.Errorf("a stale read without a leader: %+v, %v; want web-1 passing", in, err)
	}
	if _, err := (&ConsulHealth{API: api, Service: "web"}).Instances(t.Context(), Blue); err == nil {
		t.Error("a gate's read was answered without a leader; want it to ask the leader")
	}
	if len(stale) != 2 || !stale[0] || stale[1] {
		t.Errorf("stale parameter per request %v, want [true false]", stale)
	}
}
