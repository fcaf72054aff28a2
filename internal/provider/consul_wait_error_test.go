package provider

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// An agent that is up but sees no leader gets advice about the servers, unless it crashed.
func TestAddConsulWaitErrorNoLeader(t *testing.T) {
	timeout := &wait.TimeoutError{}
	var diags diag.Diagnostics
	addConsulWaitError(&diags, consul.RoleAgent, "ssh://root@10.0.0.2", "consul-agent", "create", timeout, true)
	if len(diags) != 1 || diags[0].Summary() != "Consul Cluster Has No Leader" || !strings.Contains(diags[0].Detail(), "The next apply starts or re-creates each microswarm_consul_server") {
		t.Fatalf("no leader: %v", diags)
	}
	diags = nil
	addConsulWaitError(&diags, consul.RoleAgent, "ssh://root@10.0.0.2", "consul-agent", "create", timeout, false)
	if len(diags) != 1 || diags[0].Summary() != "Consul Agent Did Not Join the Cluster" {
		t.Fatalf("a leader seen: %v", diags)
	}
	diags = nil
	addConsulWaitError(&diags, consul.RoleAgent, "ssh://root@10.0.0.2", "consul-agent", "create", fmt.Errorf("waiting: %w", &consul.CrashedError{}), true)
	if len(diags) != 1 || diags[0].Summary() != "Consul Container Stopped" {
		t.Fatalf("crashed: %v", diags)
	}
}
