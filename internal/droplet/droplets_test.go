package droplet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
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

func TestCreateAdoptsOnlyItsOwnUnfinishedCreate(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	ctx := context.Background()
	mine, other := testStack(t, ""), testStack(t, "")

	// An interrupted create: the POST went through, nothing recorded the droplet.
	lost, adopted, err := c.Create(ctx, createSpec(mine, "tok-lost"))
	if err != nil || adopted {
		t.Fatalf("first create: %v (adopted %v)", err, adopted)
	}
	// Another stack, same names, its own create: a droplet of its own.
	theirs, adopted, err := c.Create(ctx, createSpec(other, "tok-theirs"))
	if err != nil {
		t.Fatal(err)
	}
	if adopted || theirs.ID == lost.ID {
		t.Fatalf("another stack got droplet %d (adopted %v), the unfinished create's %d", theirs.ID, adopted, lost.ID)
	}
	// The same create, run again: it adopts what the lost run made, with that run's token.
	again, adopted, err := c.Create(ctx, createSpec(mine, "tok-retry"))
	if err != nil {
		t.Fatal(err)
	}
	if !adopted || again.ID != lost.ID || again.IdempotencyToken != "tok-lost" || !again.Pending {
		t.Fatalf("the retried create = droplet %d (adopted %v, token %q, pending %v), want droplet %d adopted with token tok-lost",
			again.ID, adopted, again.IdempotencyToken, again.Pending, lost.ID)
	}
	if len(again.Tags) != 0 {
		t.Fatalf("the provider's tags show as user tags: %v", again.Tags)
	}
	if n, _ := api.count(); n != 2 {
		t.Fatalf("the account holds %d droplets, want 2", n)
	}

	// Once claimed, the droplet is nobody's to adopt: the same create (a second workspace
	// of the same config and key, or a create_before_destroy replacement) makes a new one.
	if err := c.Claim(ctx, lost.ID, createSpec(mine, "").PendingTag); err != nil {
		t.Fatal(err)
	}
	if err := c.Claim(ctx, lost.ID, createSpec(mine, "").PendingTag); err != nil {
		t.Fatalf("claiming twice: %v", err)
	}
	claimed, err := c.Get(ctx, lost.ID)
	if err != nil || claimed.Pending || claimed.IdempotencyToken != "tok-lost" {
		t.Fatalf("the claimed droplet: %+v, %v; want it no longer pending, its token kept", claimed, err)
	}
	fresh, adopted, err := c.Create(ctx, createSpec(mine, "tok-next"))
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
