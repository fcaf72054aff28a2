package health

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// LedgerPrefix is where ledgers live in Consul's KV store; an ACL token needs key write
// on it.
const LedgerPrefix = "microswarm/health/"

// Entry is a scope's failure ledger: Generation counts failures (a subject that starts
// failing), Failing is what failed at the last observation.
type Entry struct {
	Generation uint64    `json:"generation"`
	Failing    []string  `json:"failing"`
	Updated    time.Time `json:"updated"`
}

// Token is the replace_token: it moves when, and only when, Generation does.
func (e Entry) Token() string { return strconv.FormatUint(e.Generation, 10) }

// Next is the entry after observing failing (sorted, without duplicates): a subject that
// was not failing before is a new failure and moves the generation by one, however many
// started together; a subject that recovers changes nothing but the list, so the token
// stays where the failure put it and the plan after a heal is empty. A subject that fails
// again after recovering is a new failure.
func (e Entry) Next(failing []string, now time.Time) (Entry, bool) {
	failing = slices.Compact(slices.Sorted(slices.Values(failing)))
	if slices.Equal(failing, e.Failing) {
		return e, false
	}
	next := Entry{Generation: e.Generation, Failing: failing, Updated: now.UTC()}
	for _, f := range failing {
		if !slices.Contains(e.Failing, f) {
			next.Generation++
			break
		}
	}
	return next, true
}

// LedgerKey is the KV key of a scope's ledger.
func LedgerKey(s Scope) string {
	sum := sha256.Sum256([]byte(s.Datacenter + "\x00" + s.Service + "\x00" + s.Tag + "\x00" + s.Node))
	return LedgerPrefix + hex.EncodeToString(sum[:8])
}

// WriteError is a ledger that was read but could not be written: the entry returned with
// it is still the right one for this run.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// Observe folds failing into the scope's ledger with a check-and-set, so concurrent runs
// (a plan beside a scheduled apply) count one failure once. When only the write fails (no
// leader, no ACL permission) it still returns the entry the write would have made, with a
// *WriteError: the token is then right for this run, and the next run that can write
// records it. Any other error means there is no token to trust.
func Observe(ctx context.Context, api *consulapi.Client, s Scope, failing []string) (Entry, error) {
	key := LedgerKey(s)
	kv := api.KV()
	for attempt := 0; ; attempt++ {
		q := (&consulapi.QueryOptions{Datacenter: s.Datacenter}).WithContext(ctx)
		pair, _, err := kv.Get(key, q)
		if err != nil {
			return Entry{}, fmt.Errorf("reading the failure ledger %s: %w", key, err)
		}
		var current Entry
		var index uint64
		if pair != nil {
			if err := json.Unmarshal(pair.Value, &current); err != nil {
				return Entry{}, fmt.Errorf("the failure ledger %s is not what this provider writes (%w); delete the key to start over", key, err)
			}
			index = pair.ModifyIndex
		}
		next, changed := current.Next(failing, time.Now())
		if !changed {
			return current, nil
		}
		value, err := json.Marshal(next)
		if err != nil {
			return next, err
		}
		w := (&consulapi.WriteOptions{Datacenter: s.Datacenter}).WithContext(ctx)
		ok, _, err := kv.CAS(&consulapi.KVPair{Key: key, Value: value, ModifyIndex: index}, w)
		switch {
		case err != nil:
			return next, &WriteError{fmt.Errorf("recording the failure ledger %s: %w", key, err)}
		case ok:
			return next, nil
		case attempt >= 9:
			return next, &WriteError{fmt.Errorf("recording the failure ledger %s: it kept changing under ten attempts", key)}
		}
	}
}
