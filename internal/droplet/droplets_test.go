package droplet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"slices"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestCreateDoesNotDuplicateWhenAFailedAnswerHidesACreatedDroplet(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	api.loseCreates = 1
	d, adopted, err := c.Create(context.Background(), Spec{Name: "web-1", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "docker-20-04",
		IdempotencyTag: IdempotencyTag("tok-a")})
	if err != nil {
		t.Fatalf("Create after a 503 that hid a created droplet: %v", err)
	}
	if n, posts := api.count(); n != 1 {
		t.Fatalf("the account holds %d droplets after %d create requests, want exactly one", n, posts)
	}
	if d.ID != 100 || adopted {
		t.Fatalf("Create = droplet %d (adopted %v), want the droplet the lost answer made, as created by this call", d.ID, adopted)
	}
}

func TestCreateWithoutAnIdempotencyTagDoesNotRetryA5xx(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	api.loseCreates = 1
	_, _, err := c.Create(context.Background(), Spec{Name: "web-1", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "docker-20-04"})
	if err == nil {
		t.Fatal("Create succeeded after a 503, with nothing to tell whether the droplet was made")
	}
	if n, posts := api.count(); n != 1 || posts != 1 {
		t.Fatalf("%d create requests made %d droplets, want one request and no duplicate", posts, n)
	}
}

// testStack is a stack with a fresh SSH key.
func testStack(t *testing.T, id string) *Stack {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStack(id, pem.EncodeToMemory(block))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// createSpec is a create as the provider makes it: a fresh token, the stack's pending tag.
func createSpec(stack *Stack, token string) Spec {
	spec := Spec{Name: "web-0", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "docker-20-04", StackID: stack.ID}
	spec.IdempotencyTag, spec.PendingTag = IdempotencyTag(token), stack.PendingTag(spec)
	return spec
}

func TestCreateAdoptsOnlyItsOwnDeadRunsCreate(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	ctx := context.Background()
	mine, other := testStack(t, "mine"), testStack(t, "other")

	// An interrupted create: the POST went through, nothing recorded the droplet.
	lost, adopted, err := c.Create(ctx, createSpec(mine, "tok-lost"))
	if err != nil || adopted {
		t.Fatalf("first create: %v (adopted %v)", err, adopted)
	}
	if !lost.Pending || lost.RunID != c.RunID() {
		t.Fatalf("a created droplet reads as %+v: want it pending, tagged with run %s", lost, c.RunID())
	}
	// Another stack, same names, its own create: a droplet of its own.
	theirs, adopted, err := api.client().Create(ctx, createSpec(other, "tok-theirs"))
	if err != nil {
		t.Fatal(err)
	}
	if adopted || theirs.ID == lost.ID {
		t.Fatalf("another stack got droplet %d (adopted %v), the unfinished create's %d", theirs.ID, adopted, lost.ID)
	}
	// The run dies (its lease lapses); the same create, run again by the next apply,
	// adopts what the lost run made, with that run's token, and moves it to its own run.
	c.lease.halt()
	c = api.client()
	again, adopted, err := c.Create(ctx, createSpec(mine, "tok-retry"))
	if err != nil {
		t.Fatal(err)
	}
	if !adopted || again.ID != lost.ID || again.IdempotencyToken != "tok-lost" || !again.Pending || again.RunID != c.RunID() {
		t.Fatalf("the retried create = droplet %d (adopted %v, token %q, pending %v, run %s), want droplet %d adopted with token tok-lost by run %s",
			again.ID, adopted, again.IdempotencyToken, again.Pending, again.RunID, lost.ID, c.RunID())
	}
	if len(again.Tags) != 0 {
		t.Fatalf("the provider's tags show as user tags: %v", again.Tags)
	}
	if n, _ := api.count(); n != 2 {
		t.Fatalf("the account holds %d droplets, want 2", n)
	}

	// Once claimed (a Read: the state holds it), the droplet is nobody's to adopt: the
	// same create (a create_before_destroy replacement) makes a new one.
	pendingTag := again.PendingTag
	if err := c.Claim(ctx, again); err != nil {
		t.Fatal(err)
	}
	if err := c.Claim(ctx, again); err != nil {
		t.Fatalf("claiming twice: %v", err)
	}
	claimed, err := c.Get(ctx, lost.ID)
	if err != nil || claimed.Pending || claimed.RunID != "" || claimed.IdempotencyToken != "tok-lost" {
		t.Fatalf("the claimed droplet: %+v, %v; want it no longer pending nor a run's, its token kept", claimed, err)
	}
	if api.hasTag(pendingTag) {
		t.Fatal("the pending tag outlived the last droplet carrying it")
	}
	c.lease.halt()
	fresh, adopted, err := api.client().Create(ctx, createSpec(mine, "tok-next"))
	if err != nil {
		t.Fatal(err)
	}
	if adopted || fresh.ID == lost.ID || fresh.ID == theirs.ID {
		t.Fatalf("a create after the claim = droplet %d (adopted %v); want a new droplet", fresh.ID, adopted)
	}
}

func TestCreateNeverAdoptsDropletsTaggedTheOldWay(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	ctx := context.Background()
	stack := testStack(t, "")
	// Made before pending tags existed: the managed tag, with or without a token.
	for _, tag := range []string{"", IdempotencyTag("old-token")} {
		if _, _, err := c.Create(ctx, Spec{Name: "web-0", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "docker-20-04", IdempotencyTag: tag}); err != nil {
			t.Fatal(err)
		}
	}
	d, adopted, err := c.Create(ctx, createSpec(stack, "tok-new"))
	if err != nil {
		t.Fatal(err)
	}
	if adopted || d.ID < 102 {
		t.Fatalf("Create = droplet %d (adopted %v), want a new droplet", d.ID, adopted)
	}
	if n, _ := api.count(); n != 3 {
		t.Fatalf("the account holds %d droplets, want 3", n)
	}
	old, err := c.Get(ctx, 101)
	if err != nil || old.IdempotencyToken != "old-token" || old.Pending || len(old.Tags) != 0 {
		t.Fatalf("an old droplet reads as %+v, %v", old, err)
	}
}

func TestCreateWritesTheStackTag(t *testing.T) {
	t.Parallel()
	_, c := newDropletsAPI(t)
	d, _, err := c.Create(context.Background(), createSpec(testStack(t, "prod"), "tok"))
	if err != nil {
		t.Fatal(err)
	}
	if d.StackID != "prod" || !d.Pending || d.IdempotencyToken != "tok" || len(d.Tags) != 0 {
		t.Fatalf("created droplet reads as %+v", d)
	}
}

// Resources with identical inputs (count = 3 with one name) share a pending tag: each
// gets a droplet of its own, whether made now or left by an interrupted run.
func TestCreateGivesIdenticalNodesADropletEach(t *testing.T) {
	t.Parallel()
	api, interrupted := newDropletsAPI(t)
	ctx := context.Background()
	stack := testStack(t, "s")
	tag := createSpec(stack, "").PendingTag

	// The interrupted run made two of the three before it died.
	var lost []int
	for _, tok := range []string{"tok-1", "tok-2"} {
		d, adopted, err := interrupted.Create(ctx, createSpec(stack, tok))
		if err != nil || adopted {
			t.Fatalf("interrupted run: %v (adopted %v)", err, adopted)
		}
		lost = append(lost, d.ID)
	}
	if lost[0] == lost[1] {
		t.Fatalf("two creates of one run share droplet %d", lost[0])
	}
	interrupted.lease.halt()

	// The next run: three creates, none claimed yet (their nodes are still booting).
	c := api.client()
	var got []*Droplet
	for i, tok := range []string{"tok-a", "tok-b", "tok-c"} {
		d, adopted, err := c.Create(ctx, createSpec(stack, tok))
		if err != nil {
			t.Fatal(err)
		}
		if wantAdopted := i < 2; adopted != wantAdopted || slices.ContainsFunc(got, func(g *Droplet) bool { return g.ID == d.ID }) {
			t.Fatalf("create %d = droplet %d (adopted %v) after %v", i, d.ID, adopted, got)
		}
		got = append(got, d)
	}
	if n, _ := api.count(); n != 3 {
		t.Fatalf("the account holds %d droplets, want 3", n)
	}

	// A claim takes the tag off its own droplet only.
	if err := c.Claim(ctx, got[0]); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Get(ctx, got[1].ID); err != nil || !d.Pending {
		t.Fatalf("claiming droplet %d claimed droplet %d too: %+v, %v", got[0].ID, got[1].ID, d, err)
	}
	for _, d := range got[1:] {
		if err := c.Claim(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if api.hasTag(tag) {
		t.Fatal("the pending tag outlived the last droplet carrying it")
	}
}

func TestConcurrentIdenticalCreatesGetADropletEach(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	stack := testStack(t, "s")
	ids := make([]int, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			d, _, err := c.Create(context.Background(), createSpec(stack, fmt.Sprintf("tok-%d", i)))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = d.ID
		})
	}
	wg.Wait()
	slices.Sort(ids)
	if n, _ := api.count(); n != len(ids) || len(slices.Compact(ids)) != len(ids) {
		t.Fatalf("%d concurrent creates got droplets %v of %d in the account", len(ids), ids, n)
	}
}

// A deleted droplet's create tag goes with it, and only once no droplet carries it.
func TestDeleteLeavesNoCreateTagBehind(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	ctx := context.Background()
	spec := func(name, token string) Spec {
		return Spec{Name: name, Region: "nyc3", Size: "s-1vcpu-1gb", Image: "docker-20-04", IdempotencyTag: IdempotencyTag(token)}
	}
	gone, _, err := c.Create(ctx, spec("web-1", "tok-gone"))
	if err != nil {
		t.Fatal(err)
	}
	kept, _, err := c.Create(ctx, spec("web-2", "tok-kept"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{"tok-gone", "tok-kept"} {
		if err := c.RemoveIdempotencyTag(ctx, token); err != nil {
			t.Fatal(err)
		}
	}
	if api.hasTag(IdempotencyTag("tok-gone")) {
		t.Error("the deleted droplet's create tag is still in the account")
	}
	if exists, err := c.TagExists(ctx, IdempotencyTag("tok-kept")); err != nil || !exists {
		t.Errorf("TagExists(a droplet's tag) = %v, %v", exists, err)
	}
	if exists, err := c.TagExists(ctx, IdempotencyTag("tok-gone")); err != nil || exists {
		t.Errorf("TagExists(a deleted tag) = %v, %v", exists, err)
	}
	if !api.hasTag(IdempotencyTag("tok-kept")) {
		t.Error("the tag of a droplet that still exists was deleted (and so untagged it)")
	}
	if d, err := c.Get(ctx, kept.ID); err != nil || d.IdempotencyToken != "tok-kept" {
		t.Errorf("the remaining droplet: %+v, %v; want it still tagged tok-kept", d, err)
	}
	// Again, with the tag already gone: nothing to do, no error.
	if err := c.RemoveIdempotencyTag(ctx, "tok-gone"); err != nil {
		t.Errorf("a tag already gone: %v", err)
	}
	// An API that keeps refusing: the error comes back (the provider then keeps the node
	// in the state, so the next destroy tries again) and the tag stays.
	if err := c.Delete(ctx, kept.ID); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	api.throttle = 100
	api.mu.Unlock()
	if err := c.RemoveIdempotencyTag(ctx, "tok-kept"); err == nil {
		t.Error("a refused tag removal reported success")
	}
	api.mu.Lock()
	api.throttle = 0
	api.mu.Unlock()
	if !api.hasTag(IdempotencyTag("tok-kept")) {
		t.Error("the tag is gone although its removal was refused")
	}
	if err := c.RemoveIdempotencyTag(ctx, "tok-kept"); err != nil || api.hasTag(IdempotencyTag("tok-kept")) {
		t.Errorf("the next try: %v, tag still there %v", err, api.hasTag(IdempotencyTag("tok-kept")))
	}
}
