package main

import (
	"context"
	"flag"
	"log"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	tfaddr "github.com/hashicorp/terraform-registry-address"

	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/provider"
)

// Format examples and generate docs (run by `make generate`).
//go:generate terraform fmt -recursive ./examples/
//go:generate go tool tfplugindocs generate --provider-name microswarm

// version is set by goreleaser (or `make install`) at build time.
var version = "dev"

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve")
	flag.Parse()

	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		Address:         tfaddr.NewProvider(tfaddr.DefaultProviderRegistryHost, "microswarm", "microswarm").String(),
		Debug:           debug,
		ProtocolVersion: 6,
	})
	// terraform closed the provider at the end of its run (a killed terraform never gets
	// here): the droplets this run created are in its state, not adoptable.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	droplet.FinishRuns(ctx)
	cancel()
	if err != nil {
		log.Fatal(err.Error())
	}
}
