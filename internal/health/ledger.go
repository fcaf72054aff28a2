package health

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// LedgerPrefix is where ledgers live in Consul's KV store; an ACL token needs key write
// on it.
const LedgerPrefix = "microswarm/health/"

// DefaultGrace is how long a subject never seen passing may stay critical before it counts
// as a failure: long enough for a new task to start and pass its first checks, short
// enough that a task that never comes up is replaced by the next scheduled run.
const DefaultGrace = 30 * time.Second

// retention is how long a subject's record outlives its last sighting when no read of its
// scope says it is gone (a read of another tag of the service cannot tell).
const retention = 24 * time.Hour

// Entry is a ledger: Generation counts failures; Subjects remembers, per subject, what
// the counting needs (was it seen passing, is its failure already counted); Failing
// lists the subjects whose failure is counted and not yet over.
type Entry struct {
	Generation uint64             `json:"generation"`
	Failing    []string           `json:"failing"`
	Subjects   map[string]Subject `json:"subjects,omitempty"`
	Updated    time.Time          `json:"updated"`
}

// Subject is one subject's record in a ledger.
type Subject struct {
	// Passed: seen passing since its last counted failure (or ever). Only such a subject
	// fails at once when it turns critical; one never seen passing gets the grace period.
	Passed bool `json:"passed,omitempty"`
	// Counted: it is failing and that failure moved the generation.
	Counted bool `json:"counted,omitempty"`
	// Since is when the ledger first saw it: the grace period runs from there.
	Since time.Time `json:"since"`
	// Seen is when a read last saw it (refreshed at most every retention/4).
	Seen time.Time `json:"seen"`
	// Tags are the tags of the reads that saw it: a read of one of them that no longer
	// sees it knows it is gone.
	Tags []string `json:"tags,omitempty"`
}

// Token is the replace_token: it moves when, and only when, Generation does.
func (e Entry) Token() string { return strconv.FormatUint(e.Generation, 10) }

// Observation is what one read saw, for the ledger.
type Observation struct {
	// Subjects maps every subject the read saw to whether it is failing (critical).
	Subjects map[string]bool
	// Tag is the read's tag filter ("" for all): a record the read does not see is gone
	// only if the read would have seen it. A Report's Observation has none: it covers the
	// whole service, so that every read of a ledger observes the same subjects.
	Tag string
	// Grace is how long a subject never seen passing may be critical before it counts
	// (DefaultGrace when zero).
	Grace time.Duration
}

// Next is the entry after an observation. A failure is a subject that was seen passing
// and now is critical, or one never seen passing that has been critical for longer than
// the grace period since the ledger first saw it. Subjects that start failing together
// move the generation by one. A subject that recovers, a new subject that is still
// starting, and one that goes away (a task stopped in a scale-down, a rolling update or a
// replacement) move nothing, so the token stays where the last failure put it and the
// plan after a heal is empty. A subject that fails again after passing is a new failure.
// changed says whether the entry must be written.
func (e Entry) Next(o Observation, now time.Time) (Entry, bool) {
	now = now.UTC()
	grace := o.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	next := Entry{Generation: e.Generation, Subjects: make(map[string]Subject, len(o.Subjects)), Updated: e.Updated}
	changed := false
	for name, rec := range e.migrated() {
		if _, seen := o.Subjects[name]; seen {
			next.Subjects[name] = rec
			continue
		}
		// Gone when this read would have seen it; forgotten when nothing saw it for long.
		if o.Tag == "" || slices.Contains(rec.Tags, o.Tag) || now.Sub(rec.Seen) > retention {
			changed = true
			continue
		}
		next.Subjects[name] = rec
	}
	failed := false
	for _, name := range slices.Sorted(maps.Keys(o.Subjects)) {
		rec, known := next.Subjects[name]
		before := rec
		if !known {
			rec = Subject{Since: now, Seen: now}
		}
		if now.Sub(rec.Seen) > retention/4 {
			rec.Seen = now
		}
		if o.Tag != "" && !slices.Contains(rec.Tags, o.Tag) {
			rec.Tags = append(slices.Clone(rec.Tags), o.Tag)
			slices.Sort(rec.Tags)
		}
		switch {
		case !o.Subjects[name]:
			rec.Passed, rec.Counted = true, false
		case rec.Counted:
			// Still failing: counted once already.
		case rec.Passed || now.Sub(rec.Since) >= grace:
			rec.Passed, rec.Counted = false, true
			failed = true
		}
		if !known || !sameSubject(before, rec) {
			changed = true
		}
		next.Subjects[name] = rec
	}
	if failed {
		next.Generation++
	}
	for _, name := range slices.Sorted(maps.Keys(next.Subjects)) {
		if next.Subjects[name].Counted {
			next.Failing = append(next.Failing, name)
		}
	}
	if !changed {
		return e, false
	}
	next.Updated = now
	return next, true
}

// migrated is the entry's subject records; a ledger written before records existed
// holds only the failing list, whose failures are counted.
func (e Entry) migrated() map[string]Subject {
	if e.Subjects != nil || len(e.Failing) == 0 {
		return e.Subjects
	}
	out := make(map[string]Subject, len(e.Failing))
	for _, f := range e.Failing {
		out[f] = Subject{Counted: true, Since: e.Updated, Seen: e.Updated}
	}
	return out
}

func sameSubject(a, b Subject) bool {
	return a.Passed == b.Passed && a.Counted == b.Counted && a.Since.Equal(b.Since) && a.Seen.Equal(b.Seen) && slices.Equal(a.Tags, b.Tags)
}

// LedgerKey is the KV key of a scope's ledger. The tag is not part of it: a service's
// ledger is one, whichever tag a read filters on, so a data source whose tag follows the
// live color keeps its count across a switch, and each subject keeps its record.
func LedgerKey(s Scope) string {
	sum := sha256.Sum256([]byte(s.Datacenter + "\x00" + s.Service + "\x00" + "\x00" + s.Node))
	return LedgerPrefix + hex.EncodeToString(sum[:8])
}

// WriteError is a ledger that was read but could not be written (no leader, no ACL
// permission): the entry returned with it is the last one recorded, whose token stays
// right until a run that can write counts what this one saw.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// Observe folds an observation (a Report's Observation, which covers the whole service
// whatever the scope's tag) into the scope's ledger with a check-and-set, so concurrent
// runs (a plan beside a scheduled apply) count one failure once. The ledger is read from
// any server when the leader's copy cannot be, so a cluster that lost its leader still
// answers. When only
// the write fails it returns the entry as last recorded, with a *WriteError: the token
// does not move on what could not be recorded (it would move back, and replace twice, if
// the subject healed before the next run could write). Any other error means there is no
// token to trust.
func Observe(ctx context.Context, api *consulapi.Client, s Scope, o Observation) (Entry, error) {
	key := LedgerKey(s)
	kv := api.KV()
	for attempt := 0; ; attempt++ {
		// Any server's copy first (it answers without a leader, and at once); after a
		// lost check-and-set, the leader's copy, whose index can win.
		pair, meta, err := kv.Get(key, (&consulapi.QueryOptions{Datacenter: s.Datacenter, AllowStale: attempt == 0}).WithContext(ctx))
		if err != nil && attempt > 0 {
			pair, meta, err = kv.Get(key, (&consulapi.QueryOptions{Datacenter: s.Datacenter, AllowStale: true}).WithContext(ctx))
		}
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
		next, changed := current.Next(o, time.Now())
		if !changed {
			return current, nil
		}
		value, err := json.Marshal(next)
		if err != nil {
			return current, err
		}
		if !meta.KnownLeader {
			// A write would wait for a leader and fail; the recorded token stands.
			return current, &WriteError{fmt.Errorf("recording the failure ledger %s: Consul has no leader", key)}
		}
		w := (&consulapi.WriteOptions{Datacenter: s.Datacenter}).WithContext(ctx)
		ok, _, err := kv.CAS(&consulapi.KVPair{Key: key, Value: value, ModifyIndex: index}, w)
		switch {
		case err != nil:
			return current, &WriteError{fmt.Errorf("recording the failure ledger %s: %w", key, err)}
		case ok:
			return next, nil
		case attempt >= 9:
			return current, &WriteError{fmt.Errorf("recording the failure ledger %s: it kept changing under ten attempts", key)}
		}
	}
}

// RunTokens holds the token each ledger gave first in one provider run (one plan, one
// apply). Terraform reads a plan's data sources at different moments, so a failure, or
// the end of a grace period, can fall between two reads of one ledger: the first would
// answer the token before it, the second the token after, and whatever follows both (a
// terraform_data of the two) would change in this plan and again in the next. Every read
// still records what it saw, but answers with its run's first token: the next run moves
// them all together, once. The zero value is ready to use.
type RunTokens struct {
	mu   sync.Mutex
	held map[string]Entry
}

// Hold is the entry to answer with for the ledger at key (say which Consul it lives in,
// as well as LedgerKey): e if it is the run's first for that key, else the first.
func (t *RunTokens) Hold(key string, e Entry) Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	if first, ok := t.held[key]; ok {
		return first
	}
	if t.held == nil {
		t.held = map[string]Entry{}
	}
	t.held[key] = e
	return e
}
