package bluegreen

import (
	"context"
	"errors"
	"fmt"
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
