package provider

import (
	"bytes"
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// A state written by version 0 (join tokens and unlock key in it) upgrades to version 1
// through the provider's own protocol server, as terraform calls it: the secrets are gone,
// everything else is kept.
func TestSwarmClusterStateV0UpgradesWithoutItsSecrets(t *testing.T) {
	t.Parallel()
	const (
		workerToken  = "SWMTKN-1-5ms0u4yrmkc1g3lz1o8cqzu0hn4m4fqz-worker0000000000000000"
		managerToken = "SWMTKN-1-5ms0u4yrmkc1g3lz1o8cqzu0hn4m4fqz-manager000000000000000"
		unlockKey    = "SWMKEY-1-b8Yh0yKQn0mT9h5D8bZ0yqzv5W9J5Qf3Y1bQ0sK1e0c"
	)
	v0 := []byte(`{
  "id": "vz1l3a9h4m2o2lgb0r7r1b5v2",
  "nodes": {"m1": {"host": "ssh://root@10.10.0.2", "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHGpH3Yn3nQy8u6Q8b1p8t1g2f3c4d5e6f7a8b9c0d1e",
    "advertise_addr": "10.10.0.2", "role": "manager", "availability": "active", "node_id": "q1w2e3r4t5y6u7i8o9p0a1s2d",
    "hostname": "demo-0", "state": "ready", "manager_reachability": "reachable"}},
  "default_addr_pool": ["10.0.0.0/8"], "subnet_size": 24, "data_path_port": 4789, "task_history_limit": 5,
  "autolock": true, "cert_expiry": "2160h", "rotate_join_tokens": "2026-11",
  "worker_join_token": "` + workerToken + `", "manager_join_token": "` + managerToken + `", "unlock_key": "` + unlockKey + `",
  "timeouts": null
}`)
	server, err := providerserver.NewProtocol6WithError(New("test")())()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	schemas, err := server.GetProviderSchema(ctx, &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	s := schemas.ResourceSchemas["microswarm_swarm_cluster"]
	if s == nil || s.Version != 1 {
		t.Fatalf("schema %+v, want version 1", s)
	}
	resp, err := server.UpgradeResourceState(ctx, &tfprotov6.UpgradeResourceStateRequest{
		TypeName: "microswarm_swarm_cluster", Version: 0, RawState: &tfprotov6.RawState{JSON: v0},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.Diagnostics {
		t.Errorf("%s: %s: %s", d.Severity, d.Summary, d.Detail)
	}
	if resp.UpgradedState == nil {
		t.Fatal("no upgraded state")
	}
	for _, secret := range []string{workerToken, managerToken, unlockKey} {
		if bytes.Contains(resp.UpgradedState.MsgPack, []byte(secret)) {
			t.Errorf("the upgraded state still holds %.12s...", secret)
		}
	}
	typ := s.ValueType()
	value, err := resp.UpgradedState.Unmarshal(typ)
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]tftypes.Value
	if err := value.As(&attrs); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"worker_join_token", "manager_join_token", "unlock_key"} {
		if _, ok := attrs[gone]; ok {
			t.Errorf("the upgraded state has %s", gone)
		}
	}
	want := map[string]string{"id": "vz1l3a9h4m2o2lgb0r7r1b5v2", "cert_expiry": "2160h", "rotate_join_tokens": "2026-11"}
	for name, w := range want {
		var got string
		if err := attrs[name].As(&got); err != nil || got != w {
			t.Errorf("%s = %q (%v), want %q", name, got, err, w)
		}
	}
	var nodes map[string]tftypes.Value
	if err := attrs["nodes"].As(&nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("nodes = %v (%v), want the one entry", nodes, err)
	}
	var m1 map[string]tftypes.Value
	var nodeID string
	if err := nodes["m1"].As(&m1); err != nil || m1["node_id"].As(&nodeID) != nil || nodeID != "q1w2e3r4t5y6u7i8o9p0a1s2d" {
		t.Errorf("the entry's node_id = %q, want it kept", nodeID)
	}
}
