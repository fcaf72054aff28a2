package droplet

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// Two runs of one stack at once (the same workspace applied twice, or two workspaces
// sharing a stack_id): a droplet whose run still renews its lease is never adopted.
func TestCreateNeverAdoptsALiveRunsDroplet(t *testing.T) {
	t.Parallel()
	api, first := newDropletsAPI(t)
	ctx := context.Background()
	stack := testStack(t, "s")
	theirs, _, err := first.Create(ctx, createSpec(stack, "tok-1"))
	if err != nil {
		t.Fatal(err)
	}
	second := api.client()
	mine, adopted, err := second.Create(ctx, createSpec(stack, "tok-2"))
	if err != nil {
		t.Fatal(err)
	}
	if adopted || mine.ID == theirs.ID {
		t.Fatalf("the second run got droplet %d (adopted %v), the live first run's %d", mine.ID, adopted, theirs.ID)
	}
	if n, _ := api.count(); n != 2 {
		t.Fatalf("the account holds %d droplets, want 2", n)
	}
}

// A run killed after its POST (its lease stops) leaves a droplet the next run adopts,
// once the lease has lapsed: it waits for that rather than making a second one.
func TestCreateAdoptsOnceTheKilledRunsLeaseLapses(t *testing.T) {
	t.Parallel()
	api, killed := newDropletsAPI(t)
	ctx := context.Background()
	stack := testStack(t, "s")
	lost, _, err := killed.Create(ctx, createSpec(stack, "tok-lost"))
	if err != nil {
		t.Fatal(err)
	}
	killed.lease.halt()
	start := time.Now()
	got, adopted, err := api.client().Create(ctx, createSpec(stack, "tok-next"))
	if err != nil {
		t.Fatal(err)
	}
	if !adopted || got.ID != lost.ID {
		t.Fatalf("the next run got droplet %d (adopted %v), want the killed run's %d adopted", got.ID, adopted, lost.ID)
	}
	if n, _ := api.count(); n != 1 {
		t.Fatalf("the account holds %d droplets, want 1", n)
	}
	t.Logf("adopted after %s (lease %s)", time.Since(start).Round(time.Millisecond), testLeaseTTL)
}

// With no stack id a dead run's droplet may be another workspace's (its apply finished,
// not yet refreshed): the create refuses before making anything, and so does the plan
// (Unclaimed). A live run's droplet is no obstacle: the create makes its own.
func TestCreateWithoutAStackIDRefusesADeadRunsDroplet(t *testing.T) {
	t.Parallel()
	api, other := newDropletsAPI(t)
	ctx := context.Background()
	stack := testStack(t, "")
	theirs, _, err := other.Create(ctx, createSpec(stack, "tok-theirs"))
	if err != nil {
		t.Fatal(err)
	}
	c := api.client()
	if left, err := c.Unclaimed(ctx, createSpec(stack, "")); err != nil || len(left) != 0 {
		t.Fatalf("Unclaimed while the other run is live = %v, %v; want none", left, err)
	}
	mine, adopted, err := c.Create(ctx, createSpec(stack, "tok-mine"))
	if err != nil || adopted || mine.ID == theirs.ID {
		t.Fatalf("create beside a live run = droplet %v (adopted %v), %v; want a droplet of its own", mine, adopted, err)
	}
	c.lease.halt()
	other.lease.halt()
	time.Sleep(2 * testLeaseTTL) // both leases lapse

	late := api.client()
	left, err := late.Unclaimed(ctx, createSpec(stack, ""))
	if err != nil || len(left) != 2 {
		t.Fatalf("Unclaimed once both runs are over = %v, %v; want both droplets", left, err)
	}
	_, _, err = late.Create(ctx, createSpec(stack, "tok-late"))
	var unclaimed *UnclaimedError
	if !errors.As(err, &unclaimed) || len(unclaimed.Droplets) != 2 {
		t.Fatalf("create with no stack id beside dead runs' droplets: %v; want an UnclaimedError naming both", err)
	}
	if n, posts := api.count(); n != 2 || posts != 2 {
		t.Fatalf("%d droplets after %d creates, want the refused create to make nothing", n, posts)
	}
}

// A run's lease lives while it has droplets pending and ends (its tag deleted) once they
// are claimed.
func TestLeaseEndsWhenItsDropletsAreClaimed(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	ctx := context.Background()
	d, _, err := c.Create(ctx, createSpec(testStack(t, "s"), "tok"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * testLeaseTTL)
	if leases := api.leaseTags(); len(leases) == 0 || slices.ContainsFunc(leases, func(l string) bool {
		return !strings.HasPrefix(l, LeaseTagPrefix+c.RunID()+":")
	}) {
		t.Fatalf("leases while a droplet is pending: %v, want this run's", leases)
	}
	if err := c.Claim(ctx, d); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * testLeaseTTL)
	for len(api.leaseTags()) > 0 && time.Now().Before(deadline) {
		time.Sleep(testLeaseTTL / 10)
	}
	if leases := api.leaseTags(); len(leases) != 0 {
		t.Fatalf("leases after the claim: %v, want none", leases)
	}
	if api.hasTag(RunTagPrefix + c.RunID()) {
		t.Fatal("the run tag outlived the claim of its last droplet")
	}
}

// A run that ended normally (terraform closed the provider: its state holds the run's
// droplets) is neither adopted from, with a stack id, nor refused as unclaimed without
// one: the next create makes its own droplet. The first claim of its last droplet ends
// its done lease.
func TestARunThatEndedNormallyKeepsItsDroplets(t *testing.T) {
	t.Parallel()
	for name, stackID := range map[string]string{"with a stack id": "s", "without": ""} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			api, finished := newDropletsAPI(t)
			ctx := context.Background()
			stack := testStack(t, stackID)
			theirs, _, err := finished.Create(ctx, createSpec(stack, "tok-1"))
			if err != nil {
				t.Fatal(err)
			}
			finished.lease.finish(ctx)
			time.Sleep(2 * testLeaseTTL) // long past any lease
			c := api.client()
			if left, err := c.Unclaimed(ctx, createSpec(stack, "")); err != nil || len(left) != 0 {
				t.Fatalf("Unclaimed beside a finished run's droplet = %v, %v; want none", left, err)
			}
			mine, adopted, err := c.Create(ctx, createSpec(stack, "tok-2"))
			if err != nil || adopted || mine.ID == theirs.ID {
				t.Fatalf("create beside a finished run's droplet = %+v (adopted %v), %v; want one of its own", mine, adopted, err)
			}
			if err := c.Claim(ctx, theirs); err != nil {
				t.Fatal(err)
			}
			if api.hasTag(LeaseTagPrefix + finished.RunID() + ":done") {
				t.Fatal("the done lease outlived the claim of the run's last droplet")
			}
		})
	}
}

// TidyRunTags deletes what killed runs left (lapsed leases, run tags no droplet carries)
// and never a live run's tags, a pending droplet's run tag or the done lease beside it.
func TestTidyRunTagsDeletesOnlyWhatMarksNothing(t *testing.T) {
	api, c := newDropletsAPI(t)
	long := time.Now().Add(-time.Hour)
	soon := time.Now().Add(time.Hour)
	api.mu.Lock()
	api.tags = append(api.tags,
		leaseTag("dead", long), RunTagPrefix+"dead", // a killed run whose droplets were adopted
		LeaseTagPrefix+"done:"+leaseDone, RunTagPrefix+"done", // ended, a droplet still pending
		leaseTag("live", soon), RunTagPrefix+"live", // going on, about to tag a droplet
		leaseTag("waiting", long), RunTagPrefix+"waiting", // dead, a droplet awaiting adoption
		LeaseTagPrefix+"claimed:"+leaseDone, // ended, every droplet claimed since
	)
	api.droplets = append(api.droplets,
		map[string]any{"id": 901, "name": "a", "status": "active", "tags": []string{RunTagPrefix + "done"}},
		map[string]any{"id": 902, "name": "b", "status": "active", "tags": []string{RunTagPrefix + "waiting"}},
	)
	api.mu.Unlock()

	if n := c.TidyRunTags(context.Background()); n != 4 {
		t.Errorf("deleted %d tags, want 4", n)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	for _, gone := range []string{leaseTag("dead", long), RunTagPrefix + "dead", leaseTag("waiting", long), LeaseTagPrefix + "claimed:" + leaseDone} {
		if slices.Contains(api.tags, gone) {
			t.Errorf("%s is still there", gone)
		}
	}
	for _, kept := range []string{LeaseTagPrefix + "done:" + leaseDone, RunTagPrefix + "done", leaseTag("live", soon), RunTagPrefix + "live", RunTagPrefix + "waiting"} {
		if !slices.Contains(api.tags, kept) {
			t.Errorf("%s was deleted", kept)
		}
	}
}

// FinishRuns waits for a dead parent to be reparented only in a process that holds a
// lease: every other provider process (3 or 4 a terraform command, most never create)
// exits at once. A held lease is still waited for and ended as done. Not parallel: it
// swaps this process's leases for its own.
func TestFinishRunsWaitsOnlyWhenARunHoldsALease(t *testing.T) {
	waits := 0
	saved, savedWait := allLeases.leases, reparentWait
	reparentWait = func() { waits++ }
	t.Cleanup(func() {
		allLeases.mu.Lock()
		allLeases.leases = saved
		allLeases.mu.Unlock()
		reparentWait = savedWait
	})
	api, c := newDropletsAPI(t)
	ctx := context.Background()
	allLeases.mu.Lock()
	allLeases.leases = []*lease{c.lease}
	allLeases.mu.Unlock()
	FinishRuns(ctx)
	if waits != 0 {
		t.Fatalf("a process with no lease waited %d times before it exited; want none", waits)
	}
	if _, _, err := c.Create(ctx, createSpec(testStack(t, "s"), "tok")); err != nil {
		t.Fatal(err)
	}
	FinishRuns(ctx)
	if waits != 1 {
		t.Fatalf("a process holding a lease waited %d times; want once", waits)
	}
	if !api.hasTag(LeaseTagPrefix + c.RunID() + ":" + leaseDone) {
		t.Fatal("the run holding a lease was not marked done")
	}
}
