// Command registrator publishes every container and swarm task on a Docker host into the
// node-local Consul agent. It keeps gliderlabs/registrator's command line and SERVICE_*
// conventions, and understands swarm-mode tasks (see internal/registrator).
//
//	registrator [-ip IP] [-internal] [-explicit] [-tags T] [-resync SECONDS]
//	            [-deregister always|on-success] [-cleanup] [-retry-attempts N]
//	            [-retry-interval MS] consul://HOST:PORT
//
// `registrator -healthcheck` is the container's own HEALTHCHECK: it succeeds while the
// running registrator keeps in step with its Consul agent.
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

	"github.com/docker/docker/client"

	"github.com/microswarm/terraform-provider-microswarm/internal/registrator"
)

// version is set at build time.
var version = "dev"

// healthFile is touched by the running registrator and read by -healthcheck.
const healthFile = "/tmp/registrator.healthy"

func main() {
	ip := flag.String("ip", "", "IP for ports mapped to the host (default: the node's swarm advertise address)")
	internal := flag.Bool("internal", false, "use the container's internal address and exposed port instead of published ports")
	explicit := flag.Bool("explicit", false, "only register containers that set SERVICE_NAME")
	tags := flag.String("tags", "", "comma-separated tags appended to every registration")
	resync := flag.Int("resync", 0, "seconds between full resyncs (0: never, besides start and reconnects)")
	deregister := flag.String("deregister", registrator.DeregisterAlways, "always or on-success: deregister containers that exited non-zero too, or only those that exited cleanly")
	cleanup := flag.Bool("cleanup", false, "remove this node's registrations whose containers are gone")
	retryAttempts := flag.Int("retry-attempts", 0, "retries to reach the Consul agent at start (-1: for ever)")
	retryInterval := flag.Int("retry-interval", 2000, "milliseconds between those retries")
	healthcheck := flag.Bool("healthcheck", false, "exit 0 if a running registrator is in step with its Consul agent (for HEALTHCHECK)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: %s [options] consul://HOST:PORT\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()

	switch {
	case *showVersion:
		fmt.Println(version)
		return
	case *healthcheck:
		if err := registrator.HealthFresh(healthFile, 15*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "unhealthy:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if *deregister != registrator.DeregisterAlways && *deregister != registrator.DeregisterOnSuccess {
		log.Fatalf("-deregister must be %s or %s", registrator.DeregisterAlways, registrator.DeregisterOnSuccess)
	}
	logger := log.New(os.Stderr, "registrator: ", log.LstdFlags)
	logger.Printf("version %s", version)

	consulCfg, err := registrator.ConsulConfig(flag.Arg(0))
	if err != nil {
		logger.Fatal(err)
	}
	agent, err := registrator.ConnectAgent(consulCfg, *retryAttempts, time.Duration(*retryInterval)*time.Millisecond, logger.Printf)
	if err != nil {
		logger.Fatal(err)
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		logger.Fatal(err)
	}
	defer docker.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	bridge := registrator.NewBridge(docker, agent, registrator.Config{
		Options: registrator.Options{
			Internal: *internal,
			Explicit: *explicit,
			Tags:     registrator.SplitTags(*tags),
		},
		IP:         *ip,
		Resync:     time.Duration(*resync) * time.Second,
		Deregister: *deregister,
		Cleanup:    *cleanup,
		HealthFile: healthFile,
		Logf:       logger.Printf,
	})
	// Registrations stay in Consul when the registrator stops: a restarted or updated
	// registrator takes them over without a gap.
	if err := bridge.Run(ctx); err != nil {
		logger.Fatal(err)
	}
}
