// Command localcloud serves a DigitalOcean v2 API whose droplets are Docker-in-Docker
// containers on this machine, for the provider's demo and acceptance tests.
//
//	go run ./tools/localcloud [-listen ADDR] [-name NAME] [-keep] [-env-file PATH]
//
// It prints DIGITALOCEAN_API_URL and DIGITALOCEAN_TOKEN (fix the token with env
// LOCALCLOUD_TOKEN) and, on SIGINT or SIGTERM, removes everything it created unless -keep.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/localcloud"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address the API listens on")
	name := flag.String("name", "localcloud", "instance name: prefixes its Docker objects and keys its state")
	keep := flag.Bool("keep", false, "keep droplets, networks and state on exit, for a restart with the same -name")
	envFile := flag.String("env-file", "", "also write the settings as shell export lines to this file")
	nodeImage := flag.String("node-image", "", "image backing the droplets (default microswarm/node:bookworm)")
	stateDir := flag.String("state-dir", "", "state directory (default <cache>/localcloud/<name>)")
	rateLimit := flag.Int("rate-limit", 0, "API requests allowed per minute (default 250)")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("localcloud: ")

	if err := run(*listen, *name, *keep, *envFile, *nodeImage, *stateDir, *rateLimit); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(listen, name string, keep bool, envFile, nodeImage, stateDir string, rateLimit int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cloud, err := localcloud.Start(ctx, localcloud.Config{
		Name:               name,
		Listen:             listen,
		Token:              os.Getenv("LOCALCLOUD_TOKEN"),
		NodeImage:          nodeImage,
		StateDir:           stateDir,
		RateLimitPerMinute: rateLimit,
		KeepOnClose:        keep,
		Logf:               log.Printf,
	})
	if err != nil {
		return err
	}

	settings := fmt.Sprintf("DIGITALOCEAN_API_URL=%s\nDIGITALOCEAN_TOKEN=%s\n", cloud.URL(), cloud.Token())
	fmt.Print(settings)
	if envFile != "" {
		exports := fmt.Sprintf("export DIGITALOCEAN_API_URL=%q\nexport DIGITALOCEAN_TOKEN=%q\n", cloud.URL(), cloud.Token())
		if err := os.WriteFile(envFile, []byte(exports), 0o600); err != nil {
			_ = cloud.Close(context.Background())
			return err
		}
	}

	<-ctx.Done()
	log.Print("shutting down")
	closeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if envFile != "" {
		_ = os.Remove(envFile)
	}
	return cloud.Close(closeCtx)
}
