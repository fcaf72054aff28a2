package consul

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// Keyring is the part of Consul's operator API that manages the gossip keyring;
// *consulapi.Operator has it. Every call goes to the whole cluster (a serf query to
// every member), and fails when a member does not answer.
type Keyring interface {
	KeyringList(q *consulapi.QueryOptions) ([]*consulapi.KeyringResponse, error)
	KeyringInstall(key string, q *consulapi.WriteOptions) error
	KeyringUse(key string, q *consulapi.WriteOptions) error
	KeyringRemove(key string, q *consulapi.WriteOptions) error
}

var _ Keyring = (*consulapi.Operator)(nil)

// KeyringResult says what RotateGossipKey did, without naming any key.
type KeyringResult struct {
	// Installed says the key was new to the cluster and was installed and made primary.
	Installed bool
	// Removed is how many other keys were taken out of the keyring.
	Removed int
}

// RotateGossipKey makes key the cluster's only gossip key, the way Consul's keyring
// rotation goes: install it on every member (they then accept both keys), make it the
// primary (every member encrypts with it), then remove every other key. Each step is
// acknowledged by every member before the next, so no member is ever left unable to
// read the others' gossip; a member that does not answer fails the step and nothing
// after it runs. It is idempotent: on a cluster whose only key is key, it only lists.
// Concurrent calls with the same key (one per agent resource) converge on the same end.
// Neither errors nor the result carry a key.
func RotateGossipKey(ctx context.Context, kr Keyring, key string) (KeyringResult, error) {
	var res KeyringResult
	if err := ValidateGossipKey(key); err != nil {
		return res, err
	}
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	w := (&consulapi.WriteOptions{}).WithContext(ctx)
	keys, err := keyringKeys(ctx, kr, q)
	if err != nil {
		return res, err
	}
	if len(keys) == 1 && keys[0] == key {
		return res, nil
	}
	if !slices.Contains(keys, key) {
		if err := retryQuery(ctx, func() error { return kr.KeyringInstall(key, w) }); err != nil {
			return res, fmt.Errorf("installing the new gossip key on every member: %w", err)
		}
		res.Installed = true
	}
	if err := retryQuery(ctx, func() error { return kr.KeyringUse(key, w) }); err != nil {
		return res, fmt.Errorf("making the new gossip key the primary one on every member: %w", err)
	}
	if keys, err = keyringKeys(ctx, kr, q); err != nil {
		return res, err
	}
	for _, old := range keys {
		if old == key {
			continue
		}
		if err := kr.KeyringRemove(old, w); err != nil {
			// Another resource of the cluster may have removed it a moment ago.
			if again, lerr := keyringKeys(ctx, kr, q); lerr == nil && !slices.Contains(again, old) {
				continue
			}
			return res, fmt.Errorf("removing an old gossip key from every member: %w", err)
		}
		res.Removed++
	}
	return res, nil
}

// keyringKeys lists every key any member of any pool holds, sorted.
func keyringKeys(ctx context.Context, kr Keyring, q *consulapi.QueryOptions) ([]string, error) {
	var responses []*consulapi.KeyringResponse
	err := retryQuery(ctx, func() (err error) {
		responses, err = kr.KeyringList(q)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the gossip keyring: %w", err)
	}
	if len(responses) == 0 {
		return nil, errors.New("listing the gossip keyring: no pool answered (is gossip encryption on?)")
	}
	set := map[string]bool{}
	for _, r := range responses {
		for k := range r.Keys {
			set[k] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// queryRetries are the pauses before each new try of a keyring operation whose gossip
// query no member answered in time ("0/2 nodes reported success": the members got it,
// their answers came after the query's timeout, as on a loaded machine). The operations
// are idempotent, so trying again is safe; any other error is returned at once.
var queryRetries = []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}

func retryQuery(ctx context.Context, op func() error) error {
	err := op()
	for _, pause := range queryRetries {
		if err == nil || !strings.Contains(err.Error(), "nodes reported success") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		err = op()
	}
	return err
}
