package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"

	"github.com/microswarm/terraform-provider-microswarm/internal/swarmservice"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// A proxy's new image cannot be rolled out start-first: the new task would bind the host
// port the old one holds. Nor stop-first alone: each node would refuse connections from
// the moment its old proxy stops until its new one listens. So the proxy hands its port
// over to a stand-in for the time of the update:
//
//  1. a stand-in proxy (the old image, the same configuration, route and servers' state,
//     in a directory of its own) starts on every proxy node, on a port the engine picks;
//  2. on every node, new connections to the listen port are steered to the stand-in (one
//     NAT rule in front of Docker's); connections already open stay where they are;
//  3. the proxy is updated stop-first: the old one finishes what it serves (the image's
//     stop signal is a soft stop) while the stand-in takes every new connection;
//  4. once the new proxy answers on every node, the steering goes, then the stand-in.
//
// A proxy container (the old proxy in step 3, the stand-in in step 4) stops only once its
// node tracks no connection to it (waitUntracked): when a container stops, Docker deletes
// the node's conntrack entries of its connections, closed ones included (the kernel keeps
// those two minutes), and a new connection to another container that reuses the client
// port of one of them was seen deleted with it, mid-request: its reply then left the
// node unNATed and the client's connection was reset. A container with nothing tracked
// stops with nothing to delete.
//
// Invariant: a steering rule exists only while the stand-in service does (the rules go
// first, and an error keeps the stand-in), so no rule ever points at nothing. An
// interrupted handover is finished by the next Deploy (retireStandIn).

// NodePorts steers one proxy node's new connections between published ports.
type NodePorts interface {
	// Steer makes new connections to port from go to the container the node publishes
	// on port to, replacing an earlier steering of the same tag; open connections keep
	// their container.
	Steer(ctx context.Context, tag string, from, to int) error
	// Unsteer removes the steering of tag; none is success.
	Unsteer(ctx context.Context, tag string) error
	// Tracked counts the connections, open or lately closed, that the node's connection
	// tracking holds to the container Docker publishes on port (0 when none is
	// published there); negative when the node cannot say.
	Tracked(ctx context.Context, port int) (int, error)
}

// StandInName is the stand-in's swarm service name; StandInDir its directory on each
// node, holding what NodeDir holds for the proxy.
func (p ProxyDeployment) StandInName() string { return p.ProxyName() + "-standin" }
func (p ProxyDeployment) StandInDir() string  { return p.NodeDir() + "/standin" }

// SteerTag names the steering rules of this proxy on a node.
func (p ProxyDeployment) SteerTag() string { return "microswarm-standin:" + p.Service.Name }

// StandInSpec is the stand-in: the proxy's spec, from its own directory, on a host port
// the engine picks on each node, and never registered in Consul.
func (p ProxyDeployment) StandInSpec() swarm.ServiceSpec {
	spec := p.Spec()
	spec.Name = p.StandInName()
	cs := *spec.TaskTemplate.ContainerSpec
	cs.Labels = map[string]string{LabelService: p.Service.Name, "SERVICE_IGNORE": "true"}
	cs.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: p.StandInDir(), Target: proxyContainerDir}}
	spec.TaskTemplate.ContainerSpec = &cs
	spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{
		Protocol: swarm.PortConfigProtocolTCP, TargetPort: proxyPort, PublishMode: swarm.PortConfigPublishModeHost,
	}}}
	return spec
}

// canHandOver says whether every node can steer its port and has a stand-in to ask.
func canHandOver(nodes []ProxyNode) bool {
	for _, n := range nodes {
		if n.Ports == nil || n.StandIn == nil {
			return false
		}
	}
	return len(nodes) > 0
}

// handOver replaces the running proxy (live, on the same port) by spec through a
// stand-in, steps 1 to 3 above; retireStandIn does step 4.
func handOver(ctx context.Context, eng swarmservice.Engine, proxy ProxyDeployment, live swarm.Service, nodes []ProxyNode, states map[string]string, owner string) error {
	standIn := proxy
	standIn.Image = imageOf(live.Spec)
	for _, n := range nodes {
		if err := prepareStandIn(ctx, proxy, n, states[n.SwarmID]); err != nil {
			return fmt.Errorf("stand-in on node %s: %w", n.Name, err)
		}
	}
	svc, _, err := swarmservice.Ensure(ctx, eng, standIn.StandInSpec(), owner)
	if err != nil {
		return fmt.Errorf("stand-in: %w", err)
	}
	ports, err := waitTasks(ctx, eng, svc.ID, standIn.Image, 0, nodes)
	if err != nil {
		return fmt.Errorf("stand-in: %w", err)
	}
	for _, n := range nodes {
		if err := waitAnswers(ctx, n.StandIn); err != nil {
			return fmt.Errorf("stand-in on node %s: %w", n.Name, err)
		}
		if err := n.Ports.Steer(ctx, proxy.SteerTag(), proxy.ListenPort, ports[n.SwarmID]); err != nil {
			return fmt.Errorf("steering port %d of node %s to the stand-in: %w", proxy.ListenPort, n.Name, err)
		}
	}
	// The old proxies finish what they serve, and their nodes forget their connections,
	// before they are stopped.
	for _, n := range nodes {
		waitIdle(ctx, n.Proxy)
	}
	waitUntracked(ctx, nodes, func(ProxyNode) int { return proxy.ListenPort })
	_, _, err = swarmservice.Ensure(ctx, eng, proxy.Spec(), owner)
	return err
}

// prepareStandIn gives the stand-in on n the proxy's configuration, its live route and
// the servers' state.
func prepareStandIn(ctx context.Context, proxy ProxyDeployment, n ProxyNode, state string) error {
	cfg, err := n.Files.Read(ctx, proxy.ConfigFile())
	if err != nil {
		return err
	}
	route, err := n.Files.Read(ctx, proxy.MapFile())
	if err != nil {
		return err
	}
	dir := proxy.StandInDir()
	if err := n.Files.Prepare(ctx, dir, ProxyUID, ProxyGID, dir+"/haproxy.cfg", cfg); err != nil {
		return err
	}
	for file, content := range map[string]string{"/haproxy.cfg": cfg, "/bluegreen.map": route, "/server-state": state} {
		if err := n.Files.Write(ctx, dir+file, content); err != nil {
			return err
		}
	}
	return nil
}

// retireStandIn ends a handover, this run's or an interrupted one's: once the proxy
// answers on every node, each node's steering goes, then the stand-in. A node whose
// steering cannot be removed keeps the stand-in (an error): its traffic is served.
func retireStandIn(ctx context.Context, eng swarmservice.Engine, proxy ProxyDeployment, nodes []ProxyNode) error {
	standIn, err := swarmservice.Get(ctx, eng, proxy.StandInName())
	switch {
	case errors.Is(err, swarmservice.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	live, err := swarmservice.Get(ctx, eng, proxy.ProxyName())
	if err != nil {
		return err
	}
	if _, err := waitTasks(ctx, eng, live.ID, proxy.Image, proxy.ListenPort, nodes); err != nil {
		return fmt.Errorf("waiting for the new proxy before retiring the stand-in: %w", err)
	}
	for _, n := range nodes {
		if err := waitAnswers(ctx, n.Proxy); err != nil {
			return fmt.Errorf("the new proxy on node %s: %w", n.Name, err)
		}
	}
	if err := unsteerAll(ctx, proxy, nodes); err != nil {
		return err
	}
	for _, n := range nodes {
		if n.StandIn != nil {
			waitIdle(ctx, n.StandIn)
		}
	}
	if ports, err := runningPorts(ctx, eng, standIn.ID); err == nil {
		waitUntracked(ctx, nodes, func(n ProxyNode) int { return ports[n.SwarmID] })
	}
	return swarmservice.Remove(ctx, eng, standIn.ID)
}

// untrackedWait bounds waitUntracked: the kernel keeps a closed connection's entry for
// net.netfilter.nf_conntrack_tcp_timeout_time_wait, 120 s unless set otherwise.
var untrackedWait, untrackedPoll = 150 * time.Second, 2 * time.Second

// waitUntracked waits until no node tracks a connection to the container it publishes
// on port(node), every node at once, for at most untrackedWait. A node that cannot say
// (no /proc/net/nf_conntrack, an SSH error) counts as tracking some; at the bound the
// stop goes on, as it did before this wait.
func waitUntracked(ctx context.Context, nodes []ProxyNode, port func(ProxyNode) int) {
	ctx, cancel := context.WithTimeout(ctx, untrackedWait)
	defer cancel()
	pending := map[string]bool{}
	for _, n := range nodes {
		if n.Ports != nil && port(n) != 0 {
			pending[n.Name] = true
		}
	}
	_ = wait.Until(ctx, wait.Options{What: "every proxy node to forget the stopping proxy's connections", Interval: untrackedPoll, MaxInterval: untrackedPoll},
		func(ctx context.Context) (bool, string, error) {
			for _, n := range nodes {
				if !pending[n.Name] {
					continue
				}
				if count, err := n.Ports.Tracked(ctx, port(n)); err == nil && count == 0 {
					delete(pending, n.Name)
				}
			}
			return len(pending) == 0, "", nil
		})
}

// runningPorts is the host port each node's running task of service publishes.
func runningPorts(ctx context.Context, eng swarmservice.Engine, serviceID string) (map[string]int, error) {
	tasks, err := eng.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", serviceID), filters.Arg("desired-state", string(swarm.TaskStateRunning)))})
	if err != nil {
		return nil, err
	}
	ports := map[string]int{}
	for _, t := range tasks {
		if ps := t.Status.PortStatus.Ports; t.Status.State == swarm.TaskStateRunning && len(ps) > 0 {
			ports[t.NodeID] = int(ps[0].PublishedPort)
		}
	}
	return ports, nil
}

// unsteerAll removes the steering on every node, naming those where it could not.
func unsteerAll(ctx context.Context, proxy ProxyDeployment, nodes []ProxyNode) error {
	var errs []error
	for _, n := range nodes {
		if n.Ports == nil {
			continue
		}
		if err := n.Ports.Unsteer(ctx, proxy.SteerTag()); err != nil {
			errs = append(errs, fmt.Errorf("removing the steering of port %d on node %s (its stand-in keeps serving it): %w", proxy.ListenPort, n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// waitTasks waits until service runs image on every node, published on port (any port
// when 0), and returns each node's published host port. It looks at the tasks
// themselves: a task of the previous spec that differs only in its port counts as
// current for swarmservice.WaitConverged.
func waitTasks(ctx context.Context, eng swarmservice.Engine, serviceID, image string, port int, nodes []ProxyNode) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var ports map[string]int
	err := wait.Until(ctx, wait.Options{What: "the proxy's tasks on every node", Interval: 200 * time.Millisecond, MaxInterval: time.Second},
		func(ctx context.Context) (bool, string, error) {
			tasks, err := eng.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
				filters.Arg("service", serviceID), filters.Arg("desired-state", string(swarm.TaskStateRunning)))})
			if err != nil {
				return false, "", wait.Retryable(err)
			}
			ports = map[string]int{}
			for _, t := range tasks {
				cs := t.Spec.ContainerSpec
				if t.Status.State != swarm.TaskStateRunning || cs == nil || !SameImage(cs.Image, image) {
					continue
				}
				if ps := t.Status.PortStatus.Ports; len(ps) > 0 && ps[0].PublishedPort != 0 && (port == 0 || int(ps[0].PublishedPort) == port) {
					ports[t.NodeID] = int(ps[0].PublishedPort)
				}
			}
			for _, n := range nodes {
				if ports[n.SwarmID] != 0 {
					continue
				}
				// Not there yet: an update that swarm gave up on never will be. (Once
				// every node runs what is wanted, an earlier update's rollback is history.)
				svc, err := swarmservice.Get(ctx, eng, serviceID)
				if err != nil {
					return false, "", wait.Retryable(err)
				}
				if u := svc.UpdateStatus; u != nil {
					switch u.State {
					case swarm.UpdateStatePaused, swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackPaused, swarm.UpdateStateRollbackCompleted:
						return false, "", &swarmservice.UpdateFailedError{Service: svc.Spec.Name, State: string(u.State), Message: u.Message}
					}
				}
				return false, "no task of " + image + " running on node " + n.Name + " yet", nil
			}
			return true, "", nil
		})
	return ports, err
}

// waitAnswers waits (at most 15 s) until p answers on its Runtime API: its configuration
// is loaded and its listeners are bound.
func waitAnswers(ctx context.Context, p Proxy) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		_, err := p.Route(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the proxy does not answer: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// imageOf is the image a service's tasks run.
func imageOf(spec swarm.ServiceSpec) string {
	if cs := spec.TaskTemplate.ContainerSpec; cs != nil {
		return cs.Image
	}
	return ""
}

// waitIdle waits (at most 3 s) until p has no request in flight to either color: a proxy
// no new connection reaches has finished what it serves. One that cannot say is not
// waited for.
func waitIdle(ctx context.Context, p Proxy) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for {
		busy := int64(0)
		for _, c := range Colors {
			n, err := p.Counters(ctx, c)
			if err != nil {
				return
			}
			busy += n.InFlight
		}
		if busy == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}
