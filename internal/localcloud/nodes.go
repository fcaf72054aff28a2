package localcloud

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	cerrdefs "github.com/containerd/errdefs"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// Labels on every Docker object the emulator makes. The droplet labels let a restarted
// emulator adopt containers its state file does not know.
const (
	labelInstance = "io.microswarm.localcloud.instance"
	labelRole     = "io.microswarm.localcloud.role"
	labelID       = "io.microswarm.localcloud.droplet.id"
	labelName     = "io.microswarm.localcloud.droplet.name"
	labelRegion   = "io.microswarm.localcloud.droplet.region"
	labelSize     = "io.microswarm.localcloud.droplet.size"
	labelImage    = "io.microswarm.localcloud.droplet.image"
	labelTags     = "io.microswarm.localcloud.droplet.tags"
	labelVPC      = "io.microswarm.localcloud.droplet.vpc-uuid"
	labelCreated  = "io.microswarm.localcloud.droplet.created-at"
)

const (
	rolePublic  = "public"
	roleVPC     = "vpc"
	roleDroplet = "droplet"
)

// bridgeNetwork is one of the two networks droplets live on.
type bridgeNetwork struct {
	name    string
	subnet  netip.Prefix
	gateway netip.Addr
}

func (b bridgeNetwork) netmask() string {
	return net.IP(net.CIDRMask(b.subnet.Bits(), 32)).String()
}

// nodeBackend runs droplets as Docker-in-Docker containers on the host's engine.
type nodeBackend struct {
	docker   *client.Client
	instance string
	image    string
	public   bridgeNetwork
	vpc      bridgeNetwork
	logf     func(string, ...any)
}

// nodeSpec is what a droplet container is made from.
type nodeSpec struct {
	droplet   *droplet // a copy, owned by the spec
	publicIP  netip.Addr
	privateIP netip.Addr
	vpc       bridgeNetwork // the network of the droplet's VPC
	seed      []byte        // tar of /etc/microswarm, unpacked into /etc
}

func (n *nodeBackend) instanceFilter(extra ...filters.KeyValuePair) filters.Args {
	return filters.NewArgs(append(extra, filters.Arg("label", labelInstance+"="+n.instance))...)
}

// ensureNetworks finds or creates the public and vpc networks.
func (n *nodeBackend) ensureNetworks(ctx context.Context) error {
	var err error
	if n.public, err = n.ensureNetwork(ctx, rolePublic); err != nil {
		return err
	}
	n.vpc, err = n.ensureNetwork(ctx, roleVPC)
	return err
}

func (n *nodeBackend) ensureNetwork(ctx context.Context, role string) (bridgeNetwork, error) {
	name := n.instance + "-" + role
	existing, err := n.docker.NetworkList(ctx, network.ListOptions{
		Filters: n.instanceFilter(filters.Arg("label", labelRole+"="+role)),
	})
	if err != nil {
		return bridgeNetwork{}, fmt.Errorf("listing networks: %w", err)
	}
	for _, nw := range existing {
		if nw.Name == name {
			return networkFromIPAM(name, nw.IPAM)
		}
	}

	labels := map[string]string{labelInstance: n.instance, labelRole: role}
	return n.createNetwork(ctx, name, labels, netip.Prefix{})
}

// createNetwork creates a bridge network with its subnet pinned: want, or one Docker picks
// when want is the zero prefix.
func (n *nodeBackend) createNetwork(ctx context.Context, name string, labels map[string]string, want netip.Prefix) (bridgeNetwork, error) {
	if want.IsValid() {
		nw := bridgeNetwork{name: name, subnet: want.Masked(), gateway: want.Masked().Addr().Next()}
		_, err := n.docker.NetworkCreate(ctx, name, network.CreateOptions{
			Driver: "bridge",
			Labels: labels,
			IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: nw.subnet.String(), Gateway: nw.gateway.String()}}},
		})
		if err != nil {
			return bridgeNetwork{}, fmt.Errorf("creating network %s: %w", name, err)
		}
		n.logf("network %s: %s (gateway %s)", name, nw.subnet, nw.gateway)
		return nw, nil
	}
	// Docker only honours a container's fixed address on a network whose subnet was given
	// at creation, and droplets must keep their address across power cycles. So let Docker
	// pick a free subnet, then recreate the network with that subnet pinned.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		probe, err := n.docker.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: labels})
		if err != nil {
			return bridgeNetwork{}, fmt.Errorf("creating network %s: %w", name, err)
		}
		inspected, err := n.docker.NetworkInspect(ctx, probe.ID, network.InspectOptions{})
		_ = n.docker.NetworkRemove(ctx, probe.ID)
		if err != nil {
			return bridgeNetwork{}, fmt.Errorf("inspecting network %s: %w", name, err)
		}
		picked, err := networkFromIPAM(name, inspected.IPAM)
		if err != nil {
			return bridgeNetwork{}, err
		}
		_, err = n.docker.NetworkCreate(ctx, name, network.CreateOptions{
			Driver: "bridge",
			Labels: labels,
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{
				Subnet: picked.subnet.String(), Gateway: picked.gateway.String(),
			}}},
		})
		if err == nil {
			n.logf("network %s: %s (gateway %s)", name, picked.subnet, picked.gateway)
			return picked, nil
		}
		// Another engine user took the subnet in between: pick again.
		lastErr = err
	}
	return bridgeNetwork{}, fmt.Errorf("creating network %s: %w", name, lastErr)
}

func networkFromIPAM(name string, ipam network.IPAM) (bridgeNetwork, error) {
	for _, cfg := range ipam.Config {
		subnet, err := netip.ParsePrefix(cfg.Subnet)
		if err != nil || !subnet.Addr().Is4() {
			continue
		}
		gateway, err := netip.ParseAddr(cfg.Gateway)
		if err != nil {
			gateway = subnet.Masked().Addr().Next()
		}
		return bridgeNetwork{name: name, subnet: subnet.Masked(), gateway: gateway}, nil
	}
	return bridgeNetwork{}, fmt.Errorf("network %s has no IPv4 subnet", name)
}

// usedAddresses lists the addresses taken on a network by any container, ours or not.
func (n *nodeBackend) usedAddresses(ctx context.Context, nw bridgeNetwork) (map[netip.Addr]bool, error) {
	inspected, err := n.docker.NetworkInspect(ctx, nw.name, network.InspectOptions{})
	if err != nil {
		return nil, err
	}
	used := map[netip.Addr]bool{}
	for _, ep := range inspected.Containers {
		if p, err := netip.ParsePrefix(ep.IPv4Address); err == nil {
			used[p.Addr()] = true
		}
	}
	return used, nil
}

// freeAddress returns the lowest host address of nw that is neither the gateway nor taken.
func freeAddress(nw bridgeNetwork, taken map[netip.Addr]bool) (netip.Addr, error) {
	for addr := nw.subnet.Addr().Next(); nw.subnet.Contains(addr); addr = addr.Next() {
		if addr == nw.gateway || taken[addr] {
			continue
		}
		if !nw.subnet.Contains(addr.Next()) { // broadcast
			break
		}
		return addr, nil
	}
	return netip.Addr{}, fmt.Errorf("network %s has no free address", nw.name)
}

func (n *nodeBackend) containerName(dropletID int) string {
	return fmt.Sprintf("%s-droplet-%d", n.instance, dropletID)
}

func (n *nodeBackend) labels(d *droplet) map[string]string {
	return map[string]string{
		labelInstance: n.instance,
		labelRole:     roleDroplet,
		labelID:       strconv.Itoa(d.ID),
		labelName:     d.Name,
		labelRegion:   d.Region,
		labelSize:     d.Size,
		labelImage:    d.Image,
		labelTags:     strings.Join(d.Tags, ","),
		labelVPC:      d.VPCUUID,
		labelCreated:  d.CreatedAt.UTC().Format(time.RFC3339),
	}
}

// createNode creates, seeds, wires and starts a droplet's container and returns its id.
func (n *nodeBackend) createNode(ctx context.Context, spec nodeSpec) (string, error) {
	d := spec.droplet
	config := &container.Config{
		Image:    n.image,
		Hostname: hostnameFor(d.Name),
		Labels:   n.labels(d),
		// The node's entrypoint sets the droplet up as this image ships (its firewall).
		Env: []string{"MICROSWARM_IMAGE_SLUG=" + d.Image},
		// The inner engine needs a real filesystem, not the overlay of the node itself.
		Volumes: map[string]struct{}{"/var/lib/docker": {}},
	}
	hostConfig := &container.HostConfig{
		NetworkMode: container.NetworkMode(n.public.name),
		// --privileged fails in this sandbox (no CAP_SYS_RESOURCE); this is the equivalent
		// that works, see ENVIRONMENT.md.
		CapAdd:      []string{"ALL"},
		CapDrop:     []string{"SYS_RESOURCE"},
		SecurityOpt: []string{"seccomp=unconfined", "apparmor=unconfined"},
		Resources:   container.Resources{DeviceCgroupRules: []string{"a *:* rwm"}},
		// /tmp runs what is put there, as on a droplet: Terraform's remote-exec uploads its
		// script to /tmp (Docker's tmpfs default is noexec).
		Tmpfs: map[string]string{"/run": "", "/tmp": "exec,mode=1777"},
	}
	networking := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		n.public.name: {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: spec.publicIP.String()}},
	}}
	created, err := n.docker.ContainerCreate(ctx, config, hostConfig, networking, nil, n.containerName(d.ID))
	if err != nil {
		return "", fmt.Errorf("creating container: %w", err)
	}
	id := created.ID
	fail := func(step string, err error) (string, error) {
		if rmErr := n.removeNode(context.WithoutCancel(ctx), id); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("removing the half-made node: %w", rmErr))
		}
		return "", fmt.Errorf("%s: %w", step, err)
	}
	if err := n.docker.CopyToContainer(ctx, id, "/etc", bytes.NewReader(spec.seed), container.CopyToContainerOptions{}); err != nil {
		return fail("seeding /etc/microswarm", err)
	}
	if err := n.docker.NetworkConnect(ctx, spec.vpc.name, id, &network.EndpointSettings{
		IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: spec.privateIP.String()},
	}); err != nil {
		return fail("connecting to the vpc network", err)
	}
	if err := n.docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fail("starting container", err)
	}
	return id, nil
}

// hostnameFor fits a droplet name into a Linux hostname (at most 63 characters).
func hostnameFor(name string) string {
	if len(name) <= 63 {
		return name
	}
	return strings.TrimRight(name[:63], "-.")
}

func (n *nodeBackend) startNode(ctx context.Context, id string) error {
	return n.docker.ContainerStart(ctx, id, container.StartOptions{})
}

// stopNode stops a node. graceful (shutdown, reboot) gives dockerd time to stop its
// containers; otherwise the power is cut, like DO's power_off: SIGKILL, so nothing on the
// node gets to say goodbye (a Consul agent is failed, not left; a swarm node just goes
// down), which is the failure self-healing must handle.
//
// A machine whose power is cut sends nothing more: the connections to it are not closed,
// their peers wait on them until a keepalive or the kernel gives up. Killing a container
// makes the kernel close its processes' sockets (a FIN to every peer), so the node's own
// packets are dropped first, in and out (its swarm tasks' forwarded traffic is not).
func (n *nodeBackend) stopNode(ctx context.Context, id string, graceful bool) error {
	if !graceful {
		_, _ = n.runInNode(ctx, id, cutTheNetwork) // not running: nothing to cut
		waitC, errC := n.docker.ContainerWait(ctx, id, container.WaitConditionNotRunning)
		if err := n.docker.ContainerKill(ctx, id, "KILL"); err != nil && !strings.Contains(err.Error(), "is not running") {
			return err
		}
		select { // until it is down, so that a power_on right after finds it stopped
		case <-waitC:
			return nil
		case err := <-errC:
			return err
		}
	}
	seconds := 20
	return n.docker.ContainerStop(ctx, id, container.StopOptions{Timeout: &seconds})
}

// cutTheNetwork drops every packet in and out of a node (its network namespace goes with
// it when the node stops).
const cutTheNetwork = "iptables -w 5 -I INPUT 1 -j DROP && iptables -w 5 -I OUTPUT 1 -j DROP"

func (n *nodeBackend) restartNode(ctx context.Context, id string, graceful bool) error {
	if err := n.stopNode(ctx, id, graceful); err != nil {
		return err
	}
	return n.startNode(ctx, id)
}

// removeNode removes a node container with its anonymous volumes; a missing one is fine.
func (n *nodeBackend) removeNode(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	err := n.docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("removing container %s: %w", shortID(id), err)
	}
	return nil
}

// listNodes returns every droplet container of this instance, running or not.
func (n *nodeBackend) listNodes(ctx context.Context) ([]container.Summary, error) {
	return n.docker.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: n.instanceFilter(filters.Arg("label", labelRole+"="+roleDroplet)),
	})
}

// nodeState is what the emulator needs to know about a container.
type nodeState struct {
	exists    bool
	running   bool
	publicIP  string
	privateIP string
}

func (n *nodeBackend) inspectNode(ctx context.Context, id string) (nodeState, error) {
	info, err := n.docker.ContainerInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return nodeState{}, nil
	}
	if err != nil {
		return nodeState{}, err
	}
	st := nodeState{exists: true, running: info.State != nil && info.State.Running}
	if info.NetworkSettings != nil {
		if ep := info.NetworkSettings.Networks[n.public.name]; ep != nil {
			st.publicIP = ep.IPAddress
			if st.publicIP == "" && ep.IPAMConfig != nil {
				st.publicIP = ep.IPAMConfig.IPv4Address
			}
		}
		for name, ep := range info.NetworkSettings.Networks { // the other one is its VPC's
			if name == n.public.name || ep == nil {
				continue
			}
			st.privateIP = ep.IPAddress
			if st.privateIP == "" && ep.IPAMConfig != nil {
				st.privateIP = ep.IPAMConfig.IPv4Address
			}
		}
	}
	return st, nil
}

// nodeReady reports whether a node is what DO calls active: running, sshd answering and
// the node's own Docker engine answering (both seen from inside: nodeProbe).
func (n *nodeBackend) nodeReady(ctx context.Context, id string) (bool, string) {
	st, err := n.inspectNode(ctx, id)
	switch {
	case err != nil:
		return false, err.Error()
	case !st.exists:
		return false, "container is gone"
	case !st.running:
		return false, "container is not running"
	}
	if err := n.innerServicesAnswer(ctx, id); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// nodeProbe checks, inside the node, that sshd sends its banner and that the inner dockerd
// answers. From inside, because a probe from the host is a client of the node like the
// provider: DigitalOcean's docker-20-04 firewall (`ufw limit ssh`) refuses a sixth new SSH
// connection from one address within 30 seconds, so polling the banner from outside would
// lock the host out of a node with that firewall.
const nodeProbe = `exec 3<>/dev/tcp/127.0.0.1/22 || { echo "sshd does not answer" >&2; exit 1; }
read -t 2 -r banner <&3 || true
case "$banner" in SSH-2.0*) ;; *) echo "sshd banner: unexpected '$banner'" >&2; exit 1 ;; esac
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || { echo "inner dockerd does not answer yet" >&2; exit 1; }`

// innerServicesAnswer runs nodeProbe inside the node through the host's engine.
func (n *nodeBackend) innerServicesAnswer(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := n.runInNode(ctx, id, nodeProbe); err != nil {
		return fmt.Errorf("node not ready: %s", strings.TrimSpace(cmp.Or(out, err.Error())))
	}
	return nil
}

// runInNode runs a bash script inside the node through the host's engine and returns its
// output (stdout and stderr); a non-zero exit is an error.
func (n *nodeBackend) runInNode(ctx context.Context, id, script string) (string, error) {
	exec, err := n.docker.ContainerExecCreate(ctx, id, container.ExecOptions{
		Cmd:          []string{"bash", "-c", script},
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		return "", fmt.Errorf("exec: %w", err)
	}
	attached, err := n.docker.ContainerExecAttach(ctx, exec.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", fmt.Errorf("exec attach: %w", err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = attached.Conn.SetDeadline(deadline)
	}
	var output bytes.Buffer
	_, _ = stdcopy.StdCopy(&output, &output, attached.Reader)
	attached.Close()
	result, err := n.docker.ContainerExecInspect(ctx, exec.ID)
	if err != nil {
		return output.String(), fmt.Errorf("exec inspect: %w", err)
	}
	if result.Running || result.ExitCode != 0 {
		return output.String(), fmt.Errorf("exit %d", result.ExitCode)
	}
	return output.String(), nil
}

// watchNodes calls onChange with the container id of every droplet container that starts,
// dies or is destroyed, until ctx ends; it resubscribes if the engine drops the stream.
func (n *nodeBackend) watchNodes(ctx context.Context, onChange func(id string, action events.Action)) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		msgs, errs := n.docker.Events(ctx, events.ListOptions{Filters: n.instanceFilter(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("label", labelRole+"="+roleDroplet),
		)})
	stream:
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if ctx.Err() == nil {
					n.logf("docker events: %v (resubscribing)", err)
				}
				break stream
			case m := <-msgs:
				switch m.Action {
				case events.ActionStart, events.ActionDie, events.ActionDestroy:
					onChange(m.Actor.ID, m.Action)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		}
	}
}

// removeEverything removes every container and network labelled with this instance.
func (n *nodeBackend) removeEverything(ctx context.Context) error {
	var errs []error
	all, err := n.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: n.instanceFilter()})
	if err != nil {
		errs = append(errs, err)
	}
	for _, c := range all {
		errs = append(errs, n.removeNode(ctx, c.ID))
	}
	networks, err := n.docker.NetworkList(ctx, network.ListOptions{Filters: n.instanceFilter()})
	if err != nil {
		errs = append(errs, err)
	}
	for _, nw := range networks {
		if err := n.docker.NetworkRemove(ctx, nw.ID); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing network %s: %w", nw.Name, err))
		}
	}
	return errors.Join(errs...)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// RunInDroplet runs a bash script as root on a droplet's machine, as at its console (for
// tests that break a node from outside the provider: stop sshd, stop the engine), and
// returns what it printed; a non-zero exit is an error.
func (c *Cloud) RunInDroplet(ctx context.Context, dropletID int, script string) (string, error) {
	c.mu.Lock()
	d := c.st.droplet(dropletID)
	containerID := ""
	if d != nil {
		containerID = d.ContainerID
	}
	c.mu.Unlock()
	if containerID == "" {
		return "", fmt.Errorf("droplet %d has no machine here", dropletID)
	}
	return c.nodes.runInNode(ctx, containerID, script)
}
