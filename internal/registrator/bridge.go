package registrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	consulapi "github.com/hashicorp/consul/api"
)

// Engine is the part of the Docker API the registrator reads (*client.Client).
type Engine interface {
	Info(ctx context.Context) (system.Info, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	NetworkInspect(ctx context.Context, id string, options network.InspectOptions) (network.Inspect, error)
	ServiceInspectWithRaw(ctx context.Context, id string, options swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
}

// Agent is the node-local Consul agent's API the registrator writes to (*consulapi.Agent).
type Agent interface {
	ServiceRegisterOpts(service *consulapi.AgentServiceRegistration, opts consulapi.ServiceRegisterOpts) error
	ServiceDeregister(id string) error
	Services() (map[string]*consulapi.AgentService, error)
	UpdateTTL(checkID, output, status string) error
}

// Deregistration modes (-deregister).
const (
	DeregisterAlways    = "always"
	DeregisterOnSuccess = "on-success"
)

// Config is the registrator's behaviour, from its flags.
type Config struct {
	Options
	// IP overrides the address registered for host-published ports (-ip).
	IP string
	// Resync re-reads every container this often (-resync); zero means only at start
	// and when the event stream or the agent comes back.
	Resync time.Duration
	// Deregister is always or on-success: whether a container that died with a non-zero
	// exit code stays registered.
	Deregister string
	// Cleanup removes this node's registrations whose containers are gone (-cleanup).
	Cleanup bool
	// AgentWatch is how often the agent is checked for missing registrations (an agent
	// restart loses what was registered through its API).
	AgentWatch time.Duration
	// HealthTTL is how often mirrored Docker health states are refreshed in Consul.
	HealthRefresh time.Duration
	// HealthFile, when set, is touched after every successful check of the agent, for
	// the registrator container's own HEALTHCHECK.
	HealthFile string
	Logf       func(format string, args ...any)
}

// Bridge keeps the node-local Consul agent in step with the containers running on the
// node's Docker engine.
type Bridge struct {
	cfg    Config
	engine Engine
	agent  Agent
	node   Node
	// manager: the engine answers swarm service inspects, so service labels are read.
	manager bool

	registered map[string][]Registration // by container ID
	health     map[string]healthState    // by container ID
	// stopping holds containers deregistered on kill that are still shutting down, so
	// that neither a resync nor a late health event registers them again.
	stopping map[string]bool
	networks map[string]Network           // by network ID
	services map[string]map[string]string // service labels by service ID, until the next resync
}

type healthState struct{ status, output string }

// NewBridge returns a bridge between engine and agent.
func NewBridge(engine Engine, agent Agent, cfg Config) *Bridge {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.AgentWatch <= 0 {
		cfg.AgentWatch = 2 * time.Second
	}
	if cfg.HealthRefresh <= 0 {
		cfg.HealthRefresh = 10 * time.Second
	}
	if cfg.Deregister == "" {
		cfg.Deregister = DeregisterAlways
	}
	return &Bridge{
		cfg: cfg, engine: engine, agent: agent,
		registered: map[string][]Registration{},
		health:     map[string]healthState{},
		stopping:   map[string]bool{},
		networks:   map[string]Network{},
		services:   map[string]map[string]string{},
	}
}

// Node is the node the bridge registers for, known once Run has started.
func (b *Bridge) Node() Node { return b.node }

// Run registers what runs now, then follows the engine's events until ctx ends. It
// reconnects a broken event stream (resyncing, since events were missed) instead of
// returning.
func (b *Bridge) Run(ctx context.Context) error {
	if err := b.identify(ctx); err != nil {
		return err
	}
	msgs, errs := b.subscribe(ctx)
	if err := b.Resync(ctx); err != nil {
		b.cfg.Logf("initial sync: %v", err)
	}
	var resync <-chan time.Time
	if b.cfg.Resync > 0 {
		t := time.NewTicker(b.cfg.Resync)
		defer t.Stop()
		resync = t.C
	}
	watch := time.NewTicker(b.cfg.AgentWatch)
	defer watch.Stop()
	refresh := time.NewTicker(b.cfg.HealthRefresh)
	defer refresh.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-msgs:
			backoff = time.Second
			b.Handle(ctx, msg)
		case err := <-errs:
			if ctx.Err() != nil {
				return nil
			}
			b.cfg.Logf("docker event stream: %v; reconnecting in %s", err, backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			msgs, errs = b.subscribe(ctx)
			if err := b.Resync(ctx); err != nil {
				b.cfg.Logf("resync after reconnect: %v", err)
			}
		case <-resync:
			if err := b.Resync(ctx); err != nil {
				b.cfg.Logf("resync: %v", err)
			}
		case <-watch.C:
			if err := b.SyncAgent(); err != nil {
				b.cfg.Logf("consul agent: %v", err)
			}
		case <-refresh.C:
			b.refreshHealth()
		}
	}
}

// identify learns the node's hostname, address and swarm role from the engine.
func (b *Bridge) identify(ctx context.Context) error {
	info, err := b.engine.Info(ctx)
	if err != nil {
		return fmt.Errorf("docker info: %w", err)
	}
	b.node = Node{Hostname: info.Name, Address: b.cfg.IP}
	if b.node.Address == "" {
		b.node.Address = info.Swarm.NodeAddr
	}
	b.manager = info.Swarm.ControlAvailable
	if b.node.Address == "" {
		return errors.New("no address for host-published ports: pass -ip (the engine is not in a swarm)")
	}
	return nil
}

func (b *Bridge) subscribe(ctx context.Context) (<-chan events.Message, <-chan error) {
	f := filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)))
	for _, a := range []events.Action{events.ActionStart, events.ActionKill, events.ActionDie, events.ActionStop, events.ActionDestroy, events.ActionHealthStatus} {
		f.Add("event", string(a))
	}
	return b.engine.Events(ctx, events.ListOptions{Filters: f})
}

// terminating are the signals of a stop (docker stop, swarm task shutdown, docker kill):
// a container sent one is deregistered at once, while it still drains, not when it dies.
var terminating = map[string]bool{"2": true, "3": true, "9": true, "15": true,
	"SIGINT": true, "SIGQUIT": true, "SIGKILL": true, "SIGTERM": true}

// Handle applies one engine event.
func (b *Bridge) Handle(ctx context.Context, msg events.Message) {
	id := msg.Actor.ID
	action := string(msg.Action)
	switch {
	case action == string(events.ActionStart):
		delete(b.stopping, id)
		b.add(ctx, id)
	case strings.HasPrefix(action, string(events.ActionHealthStatus)):
		status := strings.TrimSpace(strings.TrimPrefix(action, string(events.ActionHealthStatus)+":"))
		b.healthChanged(ctx, id, status)
	case action == string(events.ActionKill):
		if terminating[msg.Actor.Attributes["signal"]] && b.cfg.Deregister == DeregisterAlways {
			b.stopping[id] = true
			b.remove(id, "stopping")
		}
	case action == string(events.ActionDie):
		delete(b.stopping, id)
		if b.cfg.Deregister == DeregisterOnSuccess && msg.Actor.Attributes["exitCode"] != "0" {
			return
		}
		b.remove(id, "died")
	case action == string(events.ActionStop):
		if b.cfg.Deregister == DeregisterAlways {
			b.remove(id, "stopped")
		}
	case action == string(events.ActionDestroy):
		delete(b.stopping, id)
		b.remove(id, "removed")
		delete(b.health, id)
	}
}

// add registers a running container's ports, replacing what it had registered before.
func (b *Bridge) add(ctx context.Context, id string) {
	if b.stopping[id] {
		return
	}
	inspect, err := b.engine.ContainerInspect(ctx, id)
	if err != nil {
		b.cfg.Logf("inspect %s: %v", short(id), err)
		return
	}
	if inspect.State == nil || !inspect.State.Running {
		return
	}
	regs, err := Registrations(b.node, b.cfg.Options, b.view(ctx, inspect))
	if err != nil {
		b.cfg.Logf("%s: %v", short(id), err)
		return
	}
	if hasHealthcheck(inspect.Config) {
		status, output := HealthStatus(inspect)
		b.health[id] = healthState{status, output}
	}
	kept := map[string]bool{}
	for _, r := range regs {
		kept[r.Service.ID] = true
		if err := b.register(r); err != nil {
			b.cfg.Logf("register %s: %v", r.Service.ID, err)
		}
	}
	for _, old := range b.registered[id] {
		if !kept[old.Service.ID] {
			b.deregister(old.Service.ID)
		}
	}
	if len(regs) == 0 {
		delete(b.registered, id)
		return
	}
	b.registered[id] = regs
}

// view gathers what the mapping needs beyond the inspect: the networks' drivers, the
// task's docker_gwbridge address and, on a manager, its service's labels.
func (b *Bridge) view(ctx context.Context, inspect container.InspectResponse) Container {
	c := Container{Inspect: inspect, Networks: map[string]Network{}}
	if inspect.NetworkSettings != nil {
		for name, ep := range inspect.NetworkSettings.Networks {
			if ep == nil {
				continue
			}
			n, ok := b.networks[ep.NetworkID]
			if !ok {
				nw, err := b.engine.NetworkInspect(ctx, ep.NetworkID, network.InspectOptions{})
				if err != nil {
					b.cfg.Logf("network %s: %v", name, err)
					continue
				}
				n = Network{Driver: nw.Driver, Ingress: nw.Ingress}
				b.networks[ep.NetworkID] = n
			}
			c.Networks[name] = n
		}
	}
	labels := inspect.Config.Labels
	if labels[labelTaskID] == "" {
		return c
	}
	if gw, err := b.engine.NetworkInspect(ctx, "docker_gwbridge", network.InspectOptions{}); err == nil {
		if ep, ok := gw.Containers[inspect.ID]; ok {
			c.GatewayAddress, _, _ = strings.Cut(ep.IPv4Address, "/")
		}
	}
	if serviceID := labels[labelServiceID]; b.manager && serviceID != "" {
		sl, ok := b.services[serviceID]
		if !ok {
			if svc, _, err := b.engine.ServiceInspectWithRaw(ctx, serviceID, swarm.ServiceInspectOptions{}); err == nil {
				sl = svc.Spec.Labels
			}
			b.services[serviceID] = sl
		}
		c.ServiceLabels = sl
	}
	return c
}

// healthChanged mirrors a health_status event into the container's TTL checks.
func (b *Bridge) healthChanged(ctx context.Context, id, dockerStatus string) {
	if b.stopping[id] {
		return
	}
	regs, ok := b.registered[id]
	if !ok {
		// Registered late (or never): registering reads the health state afresh.
		b.add(ctx, id)
		return
	}
	state := healthState{status: ConsulStatus(dockerStatus), output: "docker health: " + dockerStatus}
	if inspect, err := b.engine.ContainerInspect(ctx, id); err == nil {
		state.status, state.output = HealthStatus(inspect)
	}
	b.health[id] = state
	for _, r := range regs {
		if r.HealthCheckID == "" {
			continue
		}
		if err := b.agent.UpdateTTL(r.HealthCheckID, state.output, state.status); err != nil {
			b.cfg.Logf("health %s: %v", r.Service.ID, err)
		}
	}
}

// refreshHealth re-asserts every mirrored health state before its TTL runs out.
func (b *Bridge) refreshHealth() {
	for id, regs := range b.registered {
		state, ok := b.health[id]
		if !ok {
			continue
		}
		for _, r := range regs {
			if r.HealthCheckID == "" {
				continue
			}
			if err := b.agent.UpdateTTL(r.HealthCheckID, state.output, state.status); err != nil {
				b.cfg.Logf("health %s: %v", r.Service.ID, err)
			}
		}
	}
}

// refresh re-inspects a registered container: one no longer running is deregistered, and
// a Docker health state that differs from the mirrored one is mirrored now. A container
// whose registrations changed (it cannot, short of a restart, which is an event) is not
// registered again here, so its checks keep their state.
func (b *Bridge) refresh(ctx context.Context, id string) {
	inspect, err := b.engine.ContainerInspect(ctx, id)
	if err != nil {
		b.cfg.Logf("inspect %s: %v", short(id), err)
		return
	}
	if inspect.State == nil || !inspect.State.Running {
		b.remove(id, "not running")
		return
	}
	if !hasHealthcheck(inspect.Config) {
		return
	}
	status, output := HealthStatus(inspect)
	if st, ok := b.health[id]; ok && st.status == status {
		return
	}
	b.cfg.Logf("%s: docker health %s (missed its event)", short(id), status)
	b.health[id] = healthState{status, output}
	for _, r := range b.registered[id] {
		if r.HealthCheckID == "" {
			continue
		}
		if err := b.agent.UpdateTTL(r.HealthCheckID, output, status); err != nil {
			b.cfg.Logf("health %s: %v", r.Service.ID, err)
		}
	}
}

func (b *Bridge) remove(id, why string) {
	regs, ok := b.registered[id]
	if !ok {
		return
	}
	for _, r := range regs {
		b.deregister(r.Service.ID)
		b.cfg.Logf("deregistered %s (%s)", r.Service.ID, why)
	}
	delete(b.registered, id)
}

func (b *Bridge) register(r Registration) error {
	if err := b.agent.ServiceRegisterOpts(r.Service, consulapi.ServiceRegisterOpts{ReplaceExistingChecks: true}); err != nil {
		return err
	}
	if r.HealthCheckID != "" {
		// The registration carried the status; the output says where it came from.
		if st, ok := b.health[r.ContainerID]; ok {
			_ = b.agent.UpdateTTL(r.HealthCheckID, st.output, st.status)
		}
	}
	return nil
}

func (b *Bridge) deregister(serviceID string) {
	if err := b.agent.ServiceDeregister(serviceID); err != nil && !isNotFound(err) {
		b.cfg.Logf("deregister %s: %v", serviceID, err)
	}
}

// Resync re-reads every running container: new ones are registered, known ones
// re-inspected (a health event missed while the event stream was down must not leave a
// stale state refreshed for ever), gone ones deregistered, and with Cleanup this node's
// registrations of containers no longer here are removed from the agent.
func (b *Bridge) Resync(ctx context.Context) error {
	clear(b.services)
	list, err := b.engine.ContainerList(ctx, container.ListOptions{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	running := map[string]bool{}
	for _, c := range list {
		running[c.ID] = true
		if b.stopping[c.ID] {
			continue
		}
		if _, known := b.registered[c.ID]; known {
			b.refresh(ctx, c.ID)
		} else {
			b.add(ctx, c.ID)
		}
	}
	for id := range b.registered {
		if !running[id] {
			b.remove(id, "gone")
		}
	}
	if err := b.SyncAgent(); err != nil {
		return err
	}
	if b.cfg.Cleanup {
		return b.cleanup()
	}
	return nil
}

// SyncAgent registers again whatever the agent lacks or holds differently (an agent
// restart, an out-of-band change); the agent answering is the registrator's health.
func (b *Bridge) SyncAgent() error {
	have, err := b.agent.Services()
	if err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(b.registered)) {
		for _, r := range b.registered[id] {
			if !sameService(have[r.Service.ID], r.Service) {
				b.cfg.Logf("registering %s again (missing or changed in the agent)", r.Service.ID)
				if err := b.register(r); err != nil {
					return fmt.Errorf("register %s: %w", r.Service.ID, err)
				}
			}
		}
	}
	if b.cfg.HealthFile != "" {
		now := time.Now()
		if err := os.Chtimes(b.cfg.HealthFile, now, now); err != nil {
			if f, cerr := os.Create(b.cfg.HealthFile); cerr == nil {
				_ = f.Close()
			}
		}
	}
	return nil
}

// cleanup deregisters the agent's services that follow this node's ID pattern
// (<hostname>:<container>:<port>) but belong to no running container.
func (b *Bridge) cleanup() error {
	have, err := b.agent.Services()
	if err != nil {
		return err
	}
	ours := map[string]bool{}
	for _, regs := range b.registered {
		for _, r := range regs {
			ours[r.Service.ID] = true
		}
	}
	prefix := b.node.Hostname + ":"
	for id := range have {
		if strings.HasPrefix(id, prefix) && strings.Count(id, ":") >= 2 && !ours[id] {
			b.cfg.Logf("cleanup: deregistering %s (no such container)", id)
			b.deregister(id)
		}
	}
	return nil
}

// Registered lists the service IDs the bridge holds registered, sorted.
func (b *Bridge) Registered() []string {
	var ids []string
	for _, regs := range b.registered {
		for _, r := range regs {
			ids = append(ids, r.Service.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// sameService reports whether the agent holds the registration as made.
func sameService(have *consulapi.AgentService, want *consulapi.AgentServiceRegistration) bool {
	if have == nil {
		return false
	}
	return have.Service == want.Name && have.Address == want.Address && have.Port == want.Port &&
		slices.Equal(have.Tags, want.Tags) && equalMeta(have.Meta, want.Meta)
}

func equalMeta(a, b map[string]string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return maps.Equal(a, b)
}

func isNotFound(err error) bool {
	var se consulapi.StatusError
	return errors.As(err, &se) && se.Code == 404
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
