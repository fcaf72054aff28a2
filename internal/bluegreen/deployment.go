package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/microswarm/terraform-provider-microswarm/internal/haproxy"
	"github.com/microswarm/terraform-provider-microswarm/internal/swarmservice"
)

// Engine is a swarm manager's Docker API, as a deployment uses it (a *client.Client).
type Engine interface {
	swarmservice.Engine
	swarmservice.ConfigEngine
	swarmservice.NetworkEngine
	swarmservice.NodeEngine
}

// NodeFiles is one proxy node's file system, reached over its SSH connection.
type NodeFiles interface {
	// Prepare makes dir, owned by uid:gid, and writes file with content unless the file
	// exists and is not empty (it holds the live route a restarted proxy loads).
	Prepare(ctx context.Context, dir string, uid, gid int, file, content string) error
	// Write replaces file with content atomically (a temporary file renamed over it).
	Write(ctx context.Context, file, content string) error
	// Read returns file's content, "" when there is no such file.
	Read(ctx context.Context, file string) (string, error)
	// RemoveAll removes dir and everything in it; a missing dir is success.
	RemoveAll(ctx context.Context, dir string) error
}

// NodeTasks is one node's own engine, for the swarm tasks that run there.
type NodeTasks interface {
	// Kill kills the node's containers of these swarm services (by service ID); none is
	// success. It returns the swarm task IDs of the containers it saw stopped: those it
	// killed and those that had exited already.
	Kill(ctx context.Context, serviceIDs []string) (stopped []string, err error)
}

// ProxyNode is one node that runs the proxy: its swarm node ID, its files and its proxy.
type ProxyNode struct {
	Name    string
	SwarmID string
	Files   NodeFiles
	Proxy   Proxy
	// Tasks, when set, lets a delete stop the node's tasks of the removed services at once.
	Tasks NodeTasks
	// ServersState, when set, reads the running proxy's servers' state in the format
	// of HAProxy's server-state-file (haproxy.Client.ServersStateFile).
	ServersState func(ctx context.Context) (string, error)
	// Reload, when set, reloads the running proxy's configuration without dropping a
	// connection and returns once the new worker answers (HAProxy.Reload).
	Reload func(ctx context.Context) error
	// Ports and StandIn, when both set on every node, let a new proxy image be rolled
	// out with no connection refused: the node's port is steered to a stand-in proxy
	// (StandIn is its Runtime API) while the proxy is replaced (handover.go).
	Ports   NodePorts
	StandIn Proxy
}

// MaxReplicas is the most tasks a color may have; every proxy has a server slot for each.
const MaxReplicas = 100

// ProxyUID and ProxyGID are the official haproxy image's user (`USER haproxy`, 99:99):
// the proxy's node directory belongs to it, so it can create its admin socket there.
const (
	ProxyUID = 99
	ProxyGID = 99
)

// Desired is what a deployment brings the swarm to.
type Desired struct {
	Service Service
	// Colors holds each color's spec; a color that is absent has no block, and its
	// service is removed (the active one never is).
	Colors map[Color]ColorSpec
	// Route is the route a proxy node that has no map yet starts with: the live one.
	Route      Route
	ProxyImage string
	ListenPort int
	Owner      string
}

// DeployError says which step of a deployment failed; nothing after it was done.
type DeployError struct {
	// Step is one of the Step* constants.
	Step  string
	Color Color
	Err   error
}

// The steps of a deployment, for DeployError.
const (
	StepNetwork       = "network"
	StepLabel         = "label"
	StepPrepare       = "prepare"
	StepActiveRemoved = "active-removed"
	StepColor         = "color"
	StepProxyConfig   = "proxy-config"
	StepProxy         = "proxy"
	StepConverge      = "converge"
)

func (e *DeployError) Error() string { return e.Err.Error() }
func (e *DeployError) Unwrap() error { return e.Err }

// ProxyConfig is the proxy's haproxy.cfg settings for a service. The proxy binds
// proxyPort in its container; the node's listen port is published to it.
func ProxyConfig(svc Service) haproxy.Config {
	dir := proxyContainerDir
	return haproxy.Config{
		Service: svc.Name, ServicePort: svc.Port, ListenPort: proxyPort, HealthPath: svc.HealthPath,
		MapPath: dir + "/bluegreen.map", ServerStateFile: dir + "/server-state", AdminSocketPath: dir + "/admin.sock",
		MaxInstancesPerColor: MaxReplicas,
	}
}

// Deploy brings the network, the proxy nodes' labels and files, the colors' services and
// the proxy to want, and waits until they run. It does not switch: the route is
// Rollout's. changed says which colors' services it created or changed. Every step finds
// what a previous, interrupted run left and continues from it, so Deploy is safe to run
// again after any failure.
func Deploy(ctx context.Context, eng Engine, nodes []ProxyNode, want Desired) (changed map[Color]bool, err error) {
	svc := want.Service
	proxy := ProxyDeployment{Service: svc, ListenPort: want.ListenPort, Image: want.ProxyImage}
	changed = map[Color]bool{}
	if _, err := swarmservice.EnsureOverlay(ctx, eng, svc.Network, want.Owner); err != nil {
		return nil, &DeployError{Step: StepNetwork, Err: err}
	}
	mapText, err := haproxy.RenderMap(want.Route.Active, want.Route.Canary)
	if err != nil {
		return nil, &DeployError{Step: StepPrepare, Err: err}
	}
	// A node no longer among the proxy nodes loses the label, and so its proxy.
	wanted := map[string]bool{}
	for _, n := range nodes {
		wanted[n.SwarmID] = true
	}
	all, err := eng.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, &DeployError{Step: StepLabel, Err: err}
	}
	for _, n := range all {
		if _, labelled := n.Spec.Labels[proxy.NodeLabel()]; labelled && !wanted[n.ID] {
			if err := swarmservice.SetNodeLabel(ctx, eng, n.ID, proxy.NodeLabel(), ""); err != nil {
				return nil, &DeployError{Step: StepLabel, Err: fmt.Errorf("unlabelling former proxy node %s: %w", n.Description.Hostname, err)}
			}
		}
	}
	configs, err := prepareNodes(ctx, eng, proxy, nodes, mapText)
	if err != nil {
		return nil, err
	}
	// Colors: create or update what want has; remove an inactive color it dropped.
	for _, c := range Colors {
		spec, ok := want.Colors[c]
		if !ok {
			if c == want.Route.Active {
				return nil, &DeployError{Step: StepActiveRemoved, Color: c, Err: fmt.Errorf("%s takes the traffic; switch to %s before removing it", c, c.Other())}
			}
			if live, err := swarmservice.Get(ctx, eng, svc.ServiceName(c)); err == nil {
				if err := swarmservice.Remove(ctx, eng, live.ID); err != nil {
					return nil, &DeployError{Step: StepColor, Color: c, Err: err}
				}
			}
			continue
		}
		before, _ := swarmservice.Get(ctx, eng, svc.ServiceName(c))
		live, _, err := swarmservice.Ensure(ctx, eng, svc.ColorServiceSpec(c, spec), want.Owner)
		if err != nil {
			return nil, &DeployError{Step: StepColor, Color: c, Err: fmt.Errorf("%s: %w", svc.ServiceName(c), err)}
		}
		changed[c] = before.Version.Index != live.Version.Index
	}
	// The proxy: its configuration on every node (a running proxy reloads it in place),
	// then the global service.
	cfgText, err := ProxyConfig(svc).Render()
	if err != nil {
		return nil, &DeployError{Step: StepProxyConfig, Err: err}
	}
	if err := writeProxyConfig(ctx, eng, proxy, nodes, configs, cfgText); err != nil {
		return nil, &DeployError{Step: StepProxyConfig, Err: err}
	}
	if err := ensureProxy(ctx, eng, proxy, nodes, want.Owner); err != nil {
		return nil, &DeployError{Step: StepProxy, Err: fmt.Errorf("%s: %w", proxy.ProxyName(), err)}
	}
	for _, service := range []string{svc.ServiceName(Blue), svc.ServiceName(Green), proxy.ProxyName()} {
		live, err := swarmservice.Get(ctx, eng, service)
		if errors.Is(err, swarmservice.ErrNotFound) {
			continue
		}
		if err == nil {
			_, err = swarmservice.WaitConverged(ctx, eng, live.ID)
		}
		if err != nil {
			return nil, &DeployError{Step: StepConverge, Err: fmt.Errorf("%s: %w", service, err)}
		}
	}
	// Swarm configs of earlier versions, which held haproxy.cfg, are only litter now.
	_ = swarmservice.RemoveConfigs(ctx, eng, svc.Name+"-proxy-", want.Owner, "")
	return changed, nil
}

// prepareNodes makes every proxy node's directory (the proxy's own) and the routing map
// its proxy loads at start (kept if there: it holds the live route), and labels the
// node for the proxy. It returns each node's haproxy.cfg as it found it, read beside the
// preparation ("" when there is none yet). Every node at once, and on each node the
// read beside the rest: each is an SSH command or a node update of its own.
func prepareNodes(ctx context.Context, eng swarmservice.NodeEngine, proxy ProxyDeployment, nodes []ProxyNode, mapText string) ([]string, error) {
	prepared, configs, readErrs := make([]error, len(nodes)), make([]string, len(nodes)), make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { configs[i], readErrs[i] = n.Files.Read(ctx, proxy.ConfigFile()) })
		wg.Go(func() {
			if err := n.Files.Prepare(ctx, proxy.NodeDir(), ProxyUID, ProxyGID, proxy.MapFile(), mapText); err != nil {
				prepared[i] = &DeployError{Step: StepPrepare, Err: fmt.Errorf("node %s: %w", n.Name, err)}
			} else if err := swarmservice.SetNodeLabel(ctx, eng, n.SwarmID, proxy.NodeLabel(), "true"); err != nil {
				prepared[i] = &DeployError{Step: StepLabel, Err: fmt.Errorf("node %s: %w", n.Name, err)}
			}
		})
	}
	wg.Wait()
	for i, n := range nodes {
		if prepared[i] != nil {
			return nil, prepared[i]
		}
		if readErrs[i] != nil {
			return nil, &DeployError{Step: StepProxyConfig, Err: fmt.Errorf("node %s: %w", n.Name, readErrs[i])}
		}
	}
	return configs, nil
}

// writeProxyConfig writes haproxy.cfg on every node where it differs from olds (what
// prepareNodes read), and reloads the proxy running there: the servers' state first (so
// the new worker keeps every server's address and state), then the master CLI's reload,
// which hands the listening sockets to the new worker, so no connection is refused or
// dropped. A node with no running proxy loads the file when its proxy starts. One node
// after another.
func writeProxyConfig(ctx context.Context, eng Engine, proxy ProxyDeployment, nodes []ProxyNode, olds []string, cfgText string) error {
	_, err := swarmservice.Get(ctx, eng, proxy.ProxyName())
	running := err == nil
	for i, n := range nodes {
		old := olds[i]
		if old == cfgText {
			continue
		}
		if running && old != "" && n.ServersState != nil {
			if state, err := n.ServersState(ctx); err == nil {
				_ = n.Files.Write(ctx, proxy.ServerStateFile(), state)
			}
		}
		if err := n.Files.Write(ctx, proxy.ConfigFile(), cfgText); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if running && old != "" && n.Reload != nil {
			if err := n.Reload(ctx); err != nil {
				return fmt.Errorf("reloading the proxy on node %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

// ensureProxy brings the proxy's global service to its spec. Before a running proxy is
// replaced, each node's proxy writes its servers' state where the new one loads it
// (server-state-file), so the new proxy starts with every server's address and state
// rather than empty slots that answer 503 until DNS fills them. A new listen port is
// rolled out start-first (the new task binds a port the old one does not hold, so both
// answer for a moment and neither port is ever closed while the other is not yet open);
// the update order then goes back to stop-first, which changes no task. A new image on
// the same port is handed over through a stand-in (handover.go).
func ensureProxy(ctx context.Context, eng swarmservice.Engine, proxy ProxyDeployment, nodes []ProxyNode, owner string) error {
	spec := proxy.Spec()
	live, err := swarmservice.Get(ctx, eng, proxy.ProxyName())
	switch {
	case errors.Is(err, swarmservice.ErrNotFound):
		if _, _, err = swarmservice.Ensure(ctx, eng, spec, owner); err != nil {
			return err
		}
		return retireStandIn(ctx, eng, proxy, nodes)
	case err != nil:
		return err
	}
	if publishedPort(live.Spec) == proxy.ListenPort && swarmservice.UpToDate(live, spec, owner) {
		// Nothing replaces the proxies, so their servers' state need not be saved: an
		// apply that changes only the route (a switch) spends no SSH command on it.
		return retireStandIn(ctx, eng, proxy, nodes)
	}
	states := map[string]string{}
	for _, n := range nodes {
		if n.ServersState == nil {
			continue
		}
		// A proxy that cannot say is only slower to fill its slots: not an error.
		if state, err := n.ServersState(ctx); err == nil {
			states[n.SwarmID] = state
			_ = n.Files.Write(ctx, proxy.ServerStateFile(), state)
		}
	}
	switch {
	case publishedPort(live.Spec) != proxy.ListenPort:
		startFirst := proxy.Spec()
		startFirst.UpdateConfig.Order = swarm.UpdateOrderStartFirst
		updated, _, err := swarmservice.Ensure(ctx, eng, startFirst, owner)
		if err == nil {
			_, err = waitTasks(ctx, eng, updated.ID, proxy.Image, proxy.ListenPort, nodes)
		}
		if err != nil {
			return err
		}
		_, _, err = swarmservice.Ensure(ctx, eng, spec, owner)
		if err != nil {
			return err
		}
	case !SameImage(imageOf(live.Spec), proxy.Image) && canHandOver(nodes):
		if err := handOver(ctx, eng, proxy, live, nodes, states, owner); err != nil {
			return err
		}
	default:
		if _, _, err = swarmservice.Ensure(ctx, eng, spec, owner); err != nil {
			return err
		}
	}
	return retireStandIn(ctx, eng, proxy, nodes)
}

func publishedPort(spec swarm.ServiceSpec) int {
	if ep := spec.EndpointSpec; ep != nil && len(ep.Ports) > 0 {
		return int(ep.Ports[0].PublishedPort)
	}
	return 0
}

// Undeploy removes the proxy, both colors, the proxy's configs, the nodes' labels, the
// proxy nodes' directories and the network. It tolerates what is already gone and
// reports, joined, everything it could not remove: a delete that succeeds has left
// nothing of the service behind.
func Undeploy(ctx context.Context, eng Engine, svc Service, nodes []ProxyNode, owner string) error {
	proxy := ProxyDeployment{Service: svc}
	// A steering rule goes before the stand-in it points at.
	if err := unsteerAll(ctx, proxy, nodes); err != nil {
		return err
	}
	// All at once: the proxies stop taking requests as the colors drain theirs, so the
	// delete takes one grace period, not four in a row.
	var ids, names []string
	for _, service := range []string{proxy.StandInName(), proxy.ProxyName(), svc.ServiceName(Blue), svc.ServiceName(Green)} {
		live, err := swarmservice.Get(ctx, eng, service)
		if errors.Is(err, swarmservice.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("removing service %s: %w", service, err)
		}
		ids, names = append(ids, live.ID), append(names, service)
	}
	if err := swarmservice.RemoveNoWait(ctx, eng, ids...); err != nil {
		return fmt.Errorf("removing services %s: %w", strings.Join(names, ", "), err)
	}
	// The reached nodes kill the tasks while the rest goes. A task a node saw stopped is
	// not waited for: the manager hears of it only after the 2 s pause of the graceful
	// stop the node had begun.
	var seenStopped sync.Map
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		killRemovedTasks(ctx, nodes, ids, func(taskIDs []string) {
			for _, id := range taskIDs {
				seenStopped.Store(id, true)
			}
		})
	}()
	defer func() { <-killed }()
	// While the tasks stop (Docker pauses 2 s before it stops a task attached to a network,
	// then the grace period), what only the services held goes: their configs (swarm
	// refuses to remove a config only while a service names it), the nodes' proxy label,
	// the proxy nodes' directories (a running proxy has its map loaded). The network waits.
	stopped := make(chan error, 1)
	go func() {
		stopped <- swarmservice.WaitStoppedOr(ctx, eng, func(taskID string) bool { _, ok := seenStopped.Load(taskID); return ok }, ids...)
	}()
	var errs []error
	if err := swarmservice.RemoveConfigs(ctx, eng, svc.Name+"-proxy-", owner, ""); err != nil {
		errs = append(errs, fmt.Errorf("proxy configs: %w", err))
	}
	all, err := eng.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		errs = append(errs, fmt.Errorf("listing nodes for the proxy label: %w", err))
	}
	for _, n := range all {
		if _, ok := n.Spec.Labels[proxy.NodeLabel()]; ok {
			if err := swarmservice.SetNodeLabel(ctx, eng, n.ID, proxy.NodeLabel(), ""); err != nil {
				errs = append(errs, fmt.Errorf("label on node %s: %w", n.Description.Hostname, err))
			}
		}
	}
	for _, n := range nodes {
		if err := n.Files.RemoveAll(ctx, proxy.NodeDir()); err != nil {
			errs = append(errs, fmt.Errorf("directory %s on node %s: %w", proxy.NodeDir(), n.Name, err))
		}
	}
	if err := <-stopped; err != nil {
		errs = append(errs, fmt.Errorf("removing services %s: %w", strings.Join(names, ", "), err))
		return errors.Join(errs...)
	}
	// Swarm releases a network a moment after its last task stopped.
	var netErr error
	for {
		if netErr = swarmservice.RemoveOverlay(ctx, eng, svc.Network, owner); netErr == nil {
			break
		}
		select {
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("network %s: %w", svc.Network, netErr))
			return errors.Join(errs...)
		case <-time.After(250 * time.Millisecond):
		}
	}
	return errors.Join(errs...)
}

// killIdleWithin bounds how long a delete waits for the proxies' requests in flight to
// finish before it kills the tasks: by then swarm has begun the graceful stop itself.
const killIdleWithin = 3 * time.Second

// killRemovedTasks kills the reached nodes' tasks of removed services once no proxy holds
// a request in flight to either color. Nothing routes to them any more (the proxies go
// with the colors, and the network is the service's own), so swarm's graceful stop buys
// nothing then and costs seconds: a 2 s pause for the load balancer's gossip, then the
// stop signal and the app's own shutdown. Only after the removal: a task killed while its
// service lives is started again. Only when every node has both a proxy to ask and an
// engine to kill with, and every proxy says idle within killIdleWithin; otherwise, or
// for tasks elsewhere, the graceful stop, which the delete waits for either way. Each
// node's stopped tasks go to seen as soon as that node is done.
func killRemovedTasks(ctx context.Context, nodes []ProxyNode, ids []string, seen func(taskIDs []string)) {
	if len(ids) == 0 || len(nodes) == 0 {
		return
	}
	var proxies []Proxy
	for _, n := range nodes {
		if n.Tasks == nil || n.Proxy == nil {
			return
		}
		proxies = append(proxies, n.Proxy)
	}
	idleCtx, cancel := context.WithTimeout(ctx, killIdleWithin)
	defer cancel()
	// Both colors at once.
	drained := make([]error, len(Colors))
	var drains sync.WaitGroup
	for i, c := range Colors {
		drains.Go(func() { drained[i] = Drain(idleCtx, proxies, c, 100*time.Millisecond) })
	}
	drains.Wait()
	if errors.Join(drained...) != nil {
		return // busy or unreadable: the open requests finish the graceful way
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			// A node that failed part of it still says which it saw stopped.
			stopped, _ := n.Tasks.Kill(ctx, ids)
			seen(stopped)
		})
	}
	wg.Wait()
}

// MapFiles writes the routing map every proxy node's HAProxy loads at start, on every
// node; Persist is SwitchOptions.Persist.
type MapFiles struct {
	Nodes []ProxyNode
	Path  string
}

// Persist writes r to every node at once (each write is an SSH command: a switch waits
// for the slowest node, not for their sum), and names the nodes it could not write.
func (f MapFiles) Persist(ctx context.Context, r Route) error {
	text, err := haproxy.RenderMap(r.Active, r.Canary)
	if err != nil {
		return err
	}
	errs := make([]error, len(f.Nodes))
	var wg sync.WaitGroup
	for i, n := range f.Nodes {
		wg.Go(func() {
			if err := n.Files.Write(ctx, f.Path, text); err != nil {
				errs[i] = fmt.Errorf("node %s: %w", n.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
