// Package localcloud serves the part of the DigitalOcean v2 API the provider uses and backs
// every droplet with a Docker-in-Docker node container on this machine's Docker engine.
package localcloud

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/client"
)

// Config says how to run one emulator instance. Zero values take the documented defaults.
type Config struct {
	// Name prefixes every Docker object the instance makes and keys its state; tests use
	// unique names. Default "localcloud".
	Name string
	// Listen is the API's address. Default "127.0.0.1:0" (a free port).
	Listen string
	// Token is the bearer token the API accepts. Default: random.
	Token string
	// NodeImage backs every droplet. Default: env MICROSWARM_NODE_IMAGE (the name
	// tools/images/build.sh builds it under), else "microswarm/node:bookworm".
	NodeImage string
	// StateDir holds state.json and the registry's config. Default <cache>/localcloud/<Name>.
	StateDir string
	// RegistryBinary is the distribution registry to serve images from. Default: env
	// MICROSWARM_REGISTRY_BIN, else what tools/images/gobin.sh registry prints.
	RegistryBinary string
	// RegistryDataDir is the registry's storage, shared with tools/images/build.sh.
	// Default <cache>/registry/data.
	RegistryDataDir string
	// RateLimitPerMinute is the number of API requests allowed per minute. Default 250.
	RateLimitPerMinute int
	// DropletLimit is the account's droplet limit. Default 25.
	DropletLimit int
	// Manners, if set, are the real API's habits to play (see RealManners). Default: env
	// LOCALCLOUD_MANNERS (real: RealManners), else none.
	Manners *Manners
	// Faults fail some requests from the start (see SetFaults). Default: env
	// LOCALCLOUD_FAULTS (see ParseFaults), else none.
	Faults []Fault
	// KeepOnClose keeps droplets, networks and state on Close, for a later Start with the
	// same Name. Detach sets it after Start.
	KeepOnClose bool
	// Logf receives progress and errors. Default: the standard logger.
	Logf func(string, ...any)
}

// DefaultCacheDir is where images, binaries and state are cached: $MICROSWARM_CACHE or
// $HOME/.cache/microswarm.
func DefaultCacheDir() string {
	if dir := os.Getenv("MICROSWARM_CACHE"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "microswarm-cache")
	}
	return filepath.Join(home, ".cache", "microswarm")
}

func (cfg Config) withDefaults() Config {
	if cfg.Name == "" {
		cfg.Name = "localcloud"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Token == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		cfg.Token = "dop_v1_" + hex.EncodeToString(b)
	}
	if cfg.NodeImage == "" {
		cfg.NodeImage = cmp.Or(os.Getenv("MICROSWARM_NODE_IMAGE"), "microswarm/node:bookworm")
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(DefaultCacheDir(), "localcloud", cfg.Name)
	}
	if cfg.RegistryDataDir == "" {
		cfg.RegistryDataDir = filepath.Join(DefaultCacheDir(), "registry", "data")
	}
	if cfg.RateLimitPerMinute <= 0 {
		cfg.RateLimitPerMinute = 250
	}
	if cfg.DropletLimit <= 0 {
		cfg.DropletLimit = 25
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	return cfg
}

// Cloud is a running emulator instance.
type Cloud struct {
	cfg      Config
	docker   *client.Client
	nodes    *nodeBackend
	vpcNets  vpcNetworks // nodes, but for tests without an engine
	fw       *nodeFirewalls
	mirror   *registryMirror
	limiter  *rateLimiter
	faults   *faultSwitch
	listener net.Listener
	server   *http.Server

	mu           sync.Mutex // guards st, waiters and provisioning
	st           *state
	waiters      map[int]*readinessWaiter
	provisioning map[int]chan struct{} // droplets whose container is being created

	ctx    context.Context // ends at Close: stops background work
	cancel context.CancelFunc
	tasks  sync.WaitGroup

	keep      atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Start runs an emulator: it finds or creates its networks, adopts the droplets a previous
// run kept, starts the registry mirror and serves the API.
func Start(ctx context.Context, cfg Config) (*Cloud, error) {
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := docker.Ping(ctx); err != nil {
		docker.Close()
		return nil, fmt.Errorf("docker engine does not answer (start it with tools/ensure-engine.sh): %w", err)
	}
	if _, err := docker.ImageInspect(ctx, cfg.NodeImage); err != nil {
		docker.Close()
		return nil, fmt.Errorf("node image %s is missing (build it with tools/images/build.sh node): %w", cfg.NodeImage, err)
	}
	st, err := loadState(cfg.StateDir)
	if err != nil {
		docker.Close()
		return nil, err
	}
	manners, faults, err := mannersFromEnv()
	if err != nil {
		docker.Close()
		return nil, err
	}
	if cfg.Manners != nil {
		manners = *cfg.Manners
	}
	if cfg.Faults != nil {
		faults = cfg.Faults
	}

	c := &Cloud{
		cfg:          cfg,
		docker:       docker,
		nodes:        &nodeBackend{docker: docker, instance: cfg.Name, image: cfg.NodeImage, logf: cfg.Logf},
		limiter:      &rateLimiter{limit: cfg.RateLimitPerMinute},
		faults:       newFaultSwitch(faults, manners),
		st:           st,
		waiters:      map[int]*readinessWaiter{},
		provisioning: map[int]chan struct{}{},
	}
	c.vpcNets = c.nodes
	c.fw = newNodeFirewalls()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.keep.Store(cfg.KeepOnClose)

	if err := c.start(ctx); err != nil {
		// A failed start must not destroy droplets a previous run kept.
		c.mu.Lock()
		if len(c.st.Droplets) > 0 {
			c.keep.Store(true)
		}
		c.mu.Unlock()
		_ = c.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return c, nil
}

func (c *Cloud) start(ctx context.Context) error {
	if err := c.nodes.ensureNetworks(ctx); err != nil {
		return err
	}
	if err := c.reconcile(ctx); err != nil {
		return fmt.Errorf("adopting existing droplets: %w", err)
	}
	c.tasks.Go(func() { c.nodes.watchNodes(c.ctx, c.onNodeChange) })
	c.tasks.Go(c.syncFirewalls)

	mirror, err := startRegistryMirror(ctx, c.cfg, c.nodes.public.gateway.String())
	if err != nil {
		return fmt.Errorf("registry mirror: %w", err)
	}
	c.mirror = mirror

	listener, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return err
	}
	c.listener = listener
	c.server = &http.Server{Handler: c.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := c.server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.logf("api server: %v", err)
		}
	}()
	c.logf("localcloud %q serving the DigitalOcean API on %s", c.cfg.Name, c.URL())
	return nil
}

// URL is the API's base URL, e.g. "http://127.0.0.1:PORT/", for godo.SetBaseURL.
func (c *Cloud) URL() string {
	return "http://" + c.listener.Addr().String() + "/"
}

// Token is the bearer token the API accepts.
func (c *Cloud) Token() string { return c.cfg.Token }

// Name is the instance name that prefixes its Docker objects and labels them.
func (c *Cloud) Name() string { return c.cfg.Name }

// Detach makes Close keep droplets, networks and state for a later Start with the same Name.
func (c *Cloud) Detach() { c.keep.Store(true) }

// Close stops the API and the registry mirror and, unless the instance is kept (Detach or
// Config.KeepOnClose), removes every container, volume and network it created and its state.
func (c *Cloud) Close(ctx context.Context) error {
	c.closeOnce.Do(func() { c.closeErr = c.close(ctx) })
	return c.closeErr
}

func (c *Cloud) close(ctx context.Context) error {
	var errs []error
	if c.server != nil {
		errs = append(errs, c.server.Shutdown(ctx))
	}
	c.cancel()
	c.tasks.Wait()
	if c.mirror != nil {
		errs = append(errs, c.mirror.stop())
	}
	if c.keep.Load() {
		c.mu.Lock()
		errs = append(errs, c.st.save(c.cfg.StateDir))
		c.mu.Unlock()
		c.logf("localcloud %q stopped; droplets kept", c.cfg.Name)
	} else {
		errs = append(errs, c.nodes.removeEverything(ctx), c.removeStateFiles())
		c.logf("localcloud %q stopped and removed", c.cfg.Name)
	}
	errs = append(errs, c.docker.Close())
	return errors.Join(errs...)
}

// removeStateFiles deletes only the files the emulator wrote, then the directory if that
// leaves it empty: StateDir may be a directory the caller owns.
func (c *Cloud) removeStateFiles() error {
	var errs []error
	for _, name := range []string{"state.json", "state.json.tmp", registryConfigName, registryLogName} {
		if err := os.Remove(filepath.Join(c.cfg.StateDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(c.cfg.StateDir)
	return errors.Join(errs...)
}

func (c *Cloud) logf(format string, args ...any) { c.cfg.Logf(format, args...) }

// saveLocked persists the state; c.mu must be held. A failed save is logged, not fatal:
// the live state stays right and the next change retries.
func (c *Cloud) saveLocked() {
	if err := c.st.save(c.cfg.StateDir); err != nil {
		c.logf("saving state: %v", err)
	}
}

// onNodeChange follows containers changing behind the API's back (stopped by hand, dockerd
// crashed, removed): DO would report such a droplet off, or gone.
func (c *Cloud) onNodeChange(containerID string, _ events.Action) {
	c.mu.Lock()
	d := c.st.dropletByContainer(containerID)
	busy := d != nil && c.st.pendingAction(d.ID) != nil
	c.mu.Unlock()
	if d == nil || busy {
		return // unknown, or an action is driving this droplet's status
	}
	node, err := c.nodes.inspectNode(c.ctx, containerID)
	if err != nil {
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.droplet(d.ID) != d || c.st.pendingAction(d.ID) != nil {
		return
	}
	switch {
	case !node.exists:
		c.logf("droplet %d: container removed outside the API; droplet dropped", d.ID)
		c.enforceFirewalls()
		c.stopWaitingLocked(d.ID)
		c.st.removeDroplet(d.ID)
	case !node.running:
		if d.Status != statusOff {
			c.logf("droplet %d: container stopped; droplet is off", d.ID)
		}
		c.stopWaitingLocked(d.ID)
		d.Status = statusOff
	case d.Status != statusActive:
		c.awaitActiveLocked(d)
	}
	c.saveLocked()
}
