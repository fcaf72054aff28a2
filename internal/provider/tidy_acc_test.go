package provider

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/terraform-plugin-testing/helper/acctest"

	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// On the API itself (the local cloud, which counts a tag's droplets as DigitalOcean
// does): TidyRunTags deletes a killed run's lapsed lease and its run tag that no droplet
// carries, and leaves a live run's lease and run tag alone.
func TestAccDroplet_tidyRunTags(t *testing.T) {
	requireAcc(t)
	ctx := context.Background()
	api := testkit.Godo(t)
	lease := func(run string, exp time.Time) string {
		return droplet.LeaseTagPrefix + run + ":" + strconv.FormatInt(exp.UnixMilli(), 10)
	}
	dead, live := "dead"+acctest.RandString(8), "live"+acctest.RandString(8)
	gone := []string{lease(dead, time.Now().Add(-time.Hour)), droplet.RunTagPrefix + dead}
	kept := []string{lease(live, time.Now().Add(time.Hour)), droplet.RunTagPrefix + live}
	for _, tag := range append(append([]string{}, gone...), kept...) {
		if _, _, err := api.Tags.Create(ctx, &godo.TagCreateRequest{Name: tag}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, tag := range append(gone, kept...) {
			_, _ = api.Tags.Delete(context.Background(), tag)
		}
	})

	testkit.Cloud(t).TidyRunTags(ctx)
	for _, tag := range gone {
		if _, _, err := api.Tags.Get(ctx, tag); err == nil {
			t.Errorf("%s is still in the account", tag)
		}
	}
	for _, tag := range kept {
		if _, _, err := api.Tags.Get(ctx, tag); err != nil {
			t.Errorf("%s of a live run was deleted: %v", tag, err)
		}
	}
}
