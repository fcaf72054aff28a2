package consul

import (
	"context"
	"errors"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// slowKeyring's list query times out (no member's answer in time) the first lists times.
type slowKeyring struct {
	lists, timeouts int
	keys            map[string]int
}

func (k *slowKeyring) KeyringList(*consulapi.QueryOptions) ([]*consulapi.KeyringResponse, error) {
	k.lists++
	if k.lists <= k.timeouts {
		return nil, errors.New("Unexpected response code: 500 (1 error occurred:\n\t* dc1 (LAN) error: 0/2 nodes reported success\n\n)")
	}
	return []*consulapi.KeyringResponse{{Keys: k.keys, PrimaryKeys: k.keys, NumNodes: 2}}, nil
}

func (k *slowKeyring) KeyringInstall(key string, _ *consulapi.WriteOptions) error {
	k.keys[key] = 2
	return nil
}

func (k *slowKeyring) KeyringUse(string, *consulapi.WriteOptions) error { return nil }

func (k *slowKeyring) KeyringRemove(key string, _ *consulapi.WriteOptions) error {
	delete(k.keys, key)
	return nil
}

// A gossip query that no member answered in time is tried again: the members got it,
// their answers were late (a loaded machine), and the operations are idempotent.
func TestRotateGossipKeyRetriesALateQuery(t *testing.T) {
	old := queryRetries
	t.Cleanup(func() { queryRetries = old })
	queryRetries = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	const oldKey, newKey = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=", "5yD9+jHbAKFX8z5x9pNRYl0WQvV7bTg8tB9m7DCHXq4="
	kr := &slowKeyring{timeouts: 2, keys: map[string]int{oldKey: 2}}
	res, err := RotateGossipKey(context.Background(), kr, newKey)
	if err != nil {
		t.Fatalf("RotateGossipKey: %v", err)
	}
	if !res.Installed || res.Removed != 1 || len(kr.keys) != 1 || kr.keys[newKey] == 0 {
		t.Errorf("result %+v, keys %v; want the new key alone", res, kr.keys)
	}
	// Past the retries, the error is the query's.
	kr = &slowKeyring{timeouts: 10, keys: map[string]int{oldKey: 2}}
	if _, err := RotateGossipKey(context.Background(), kr, newKey); err == nil || kr.lists != 1+len(queryRetries) {
		t.Errorf("err %v after %d lists; want the query's error after %d", err, kr.lists, 1+len(queryRetries))
	}
}
