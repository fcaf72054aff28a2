package droplet

import (
	"context"
	"testing"
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

func TestCreateNeverAdoptsAnotherStacksDropletOfTheSameName(t *testing.T) {
	t.Parallel()
	api, c := newDropletsAPI(t)
	ctx := context.Background()
	spec := Spec{Name: "web-1", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "docker-20-04"}
	stackA, stackB := spec, spec
	stackA.IdempotencyTag, stackB.IdempotencyTag = IdempotencyTag("tok-a"), IdempotencyTag("tok-b")
	a, _, err := c.Create(ctx, stackA)
	if err != nil {
		t.Fatal(err)
	}
	// A second stack in the same account, same names.
	b, adopted, err := c.Create(ctx, stackB)
	if err != nil {
		t.Fatal(err)
	}
	if adopted || b.ID == a.ID {
		t.Fatalf("the second stack got droplet %d (adopted %v), the first stack's %d: destroying one would delete the other's", b.ID, adopted, a.ID)
	}
	if n, _ := api.count(); n != 2 {
		t.Fatalf("the account holds %d droplets, want 2", n)
	}
	// The first stack's create, run again after an interruption, finds its own droplet.
	again, adopted, err := c.Create(ctx, stackA)
	if err != nil {
		t.Fatal(err)
	}
	if !adopted || again.ID != a.ID {
		t.Fatalf("re-running stack A's create = droplet %d (adopted %v), want its own droplet %d adopted", again.ID, adopted, a.ID)
	}
	if again.IdempotencyToken != "tok-a" || len(again.Tags) != 0 {
		t.Fatalf("adopted droplet: token %q, user tags %v; want tok-a and the provider's tags hidden", again.IdempotencyToken, again.Tags)
	}
	if n, _ := api.count(); n != 2 {
		t.Fatalf("the account holds %d droplets, want 2", n)
	}
}
