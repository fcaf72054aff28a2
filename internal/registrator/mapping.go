package registrator

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	consulapi "github.com/hashicorp/consul/api"
)

// Swarm's labels on a task's container.
const (
	labelTaskID      = "com.docker.swarm.task.id"
	labelServiceName = "com.docker.swarm.service.name"
	labelServiceID   = "com.docker.swarm.service.id"
)

// Labels microswarm's resources put on services: their values become Consul tags
// (the color as is, the version as version=V) and Meta.
const (
	LabelColor   = "microswarm.color"
	LabelVersion = "microswarm.version"
)

// Check settings registrator uses when a container gives none.
const (
	defaultCheckInterval = "10s"
	// healthTTL bounds how long a mirrored Docker health state stays valid without a
	// refresh: a registrator that died stops vouching for its containers.
	healthTTL = "30s"
)

// Network is what the mapping needs to know of a network a container is attached to.
type Network struct {
	Driver  string
	Ingress bool
}

// Node is the Docker host the registrator runs on.
type Node struct {
	// Hostname starts every service ID: <hostname>:<container>:<port>.
	Hostname string
	// Address is where host-published ports answer (-ip, else the swarm advertise address).
	Address string
}

// Options are the registrator flags that shape a registration.
type Options struct {
	Internal bool
	Explicit bool
	Tags     []string
}

// Container is one running container as the mapping sees it.
type Container struct {
	Inspect container.InspectResponse
	// ServiceLabels are the swarm service's labels for a task, when the engine shows
	// them (managers only; a worker's engine cannot inspect services).
	ServiceLabels map[string]string
	// Networks describes the container's networks, by network name.
	Networks map[string]Network
	// GatewayAddress is the task's address on docker_gwbridge, the one address of an
	// overlay task that the node's own (host network) Consul agent can reach.
	GatewayAddress string
}

// Registration is one Consul service for one port of a container.
type Registration struct {
	ContainerID string
	Service     *consulapi.AgentServiceRegistration
	// HealthCheckID is the TTL check that mirrors the container's Docker HEALTHCHECK,
	// empty when the container has none.
	HealthCheckID string
}

// Registrations maps a running container to the Consul services registrator publishes
// for it: one per port, following registrator's conventions and, for swarm tasks, the
// task's overlay address. It returns none for ignored containers.
func Registrations(node Node, opts Options, c Container) ([]Registration, error) {
	inspect := c.Inspect
	if inspect.ContainerJSONBase == nil || inspect.Config == nil {
		return nil, fmt.Errorf("container inspect without config")
	}
	labels := inspect.Config.Labels
	md := readMetadata(inspect.Config.Env, c.ServiceLabels, labels)
	// Meta is published in the catalog, which every Consul client may read: it comes
	// from labels only, never from the environment, where secrets live
	// (SERVICE_DB_PASSWORD in env configures nothing and is not published).
	metaSource := readMetadata(nil, c.ServiceLabels, labels)
	if md.plain["ignore"] != "" {
		return nil, nil
	}
	containerName := strings.TrimPrefix(inspect.Name, "/")
	swarmTask := labels[labelTaskID] != ""
	defaultName := imageBasename(inspect.Config.Image)
	if swarmTask && labels[labelServiceName] != "" {
		defaultName = labels[labelServiceName]
	}

	ports := containerPorts(inspect, md)
	var regs []Registration
	for _, p := range ports {
		values, fromPort := md.forPort(p.port.Port())
		if values["ignore"] != "" {
			continue
		}
		addr, ok := choosePlacement(node, opts, c, p, values["network"])
		if !ok {
			continue
		}
		name := values["name"]
		if name == "" {
			if opts.Explicit {
				continue
			}
			name = defaultName
		}
		if len(ports) > 1 && !fromPort["name"] {
			name += "-" + p.port.Port()
		}
		id := values["id"]
		if id == "" {
			id = fmt.Sprintf("%s:%s:%s", node.Hostname, containerName, p.port.Port())
			if p.port.Proto() == "udp" {
				id += ":udp"
			}
		}
		tags := SplitTags(values["tags"])
		if color := firstNonEmpty(labels[LabelColor], c.ServiceLabels[LabelColor]); color != "" {
			tags = append(tags, color)
		}
		if version := firstNonEmpty(labels[LabelVersion], c.ServiceLabels[LabelVersion]); version != "" {
			tags = append(tags, "version="+version)
		}
		if p.port.Proto() == "udp" {
			tags = append(tags, "udp")
		}
		tags = append(tags, opts.Tags...)
		metaValues, _ := metaSource.forPort(p.port.Port())
		meta := serviceMeta(metaValues)
		if swarmTask {
			if meta == nil {
				meta = map[string]string{}
			}
			meta["swarm_task_id"] = labels[labelTaskID]
			meta["swarm_service_id"] = labels[labelServiceID]
		}
		svc := &consulapi.AgentServiceRegistration{
			ID:      id,
			Name:    name,
			Address: addr.address,
			Port:    addr.port,
			Tags:    dedupe(tags),
			Meta:    meta,
		}
		reg := Registration{ContainerID: inspect.ID, Service: svc}
		if check, err := userCheck(id, values, addr); err != nil {
			return nil, fmt.Errorf("container %s port %s: %w", containerName, p.port, err)
		} else if check != nil {
			svc.Checks = append(svc.Checks, check)
		}
		if hasHealthcheck(inspect.Config) {
			reg.HealthCheckID = id + ":docker-health"
			status, _ := HealthStatus(inspect)
			svc.Checks = append(svc.Checks, &consulapi.AgentServiceCheck{
				CheckID:                        reg.HealthCheckID,
				Name:                           "Docker HEALTHCHECK",
				Notes:                          "Mirrors the container's Docker health state, refreshed by registrator.",
				TTL:                            healthTTL,
				Status:                         status,
				DeregisterCriticalServiceAfter: values["check_deregister_after"],
			})
		}
		regs = append(regs, reg)
	}
	return regs, nil
}

// portSpec is one port of a container and where it is published on the host, if at all.
type portSpec struct {
	port     nat.Port
	hostIP   string
	hostPort string
}

// containerPorts lists the exposed and published ports, and the TCP ports that
// SERVICE_<port>_* keys name (an image need not EXPOSE the port its service is
// registered on), sorted so IDs and names do not depend on map order.
func containerPorts(inspect container.InspectResponse, md metadata) []portSpec {
	seen := map[nat.Port]portSpec{}
	for p := range inspect.Config.ExposedPorts {
		seen[p] = portSpec{port: p}
	}
	for port := range md.byPort {
		p := nat.Port(port + "/tcp")
		if _, ok := seen[p]; !ok {
			if _, udp := seen[nat.Port(port+"/udp")]; !udp {
				seen[p] = portSpec{port: p}
			}
		}
	}
	if inspect.NetworkSettings != nil {
		for p, bindings := range inspect.NetworkSettings.Ports {
			spec := portSpec{port: p}
			for _, b := range bindings {
				if b.HostPort != "" && !strings.Contains(b.HostIP, ":") {
					spec.hostIP, spec.hostPort = b.HostIP, b.HostPort
					break
				}
			}
			seen[p] = spec
		}
	}
	out := make([]portSpec, 0, len(seen))
	for _, s := range seen {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].port.Int() != out[j].port.Int() {
			return out[i].port.Int() < out[j].port.Int()
		}
		return out[i].port.Proto() < out[j].port.Proto()
	})
	return out
}

// placement is where a registered port answers (address) and where the node's Consul
// agent can check it (checkAddress).
type placement struct {
	address      string
	port         int
	checkAddress string
	checkPort    int
}

// choosePlacement decides the address and port a port is registered with:
//   - a host-network container: the node's address and the port;
//   - a swarm task on an overlay: its overlay address and the container port (what a
//     proxy on that overlay reaches); checks go to its docker_gwbridge address;
//   - -internal: the container's address and the exposed port (as registrator does);
//   - published on the host: the node's address (or the binding's) and the host port.
//
// It returns false for a port registrator does not publish.
func choosePlacement(node Node, opts Options, c Container, p portSpec, wantNetwork string) (placement, bool) {
	inspect := c.Inspect
	if inspect.HostConfig != nil && inspect.HostConfig.NetworkMode.IsHost() {
		return placement{address: node.Address, port: p.port.Int(), checkAddress: node.Address, checkPort: p.port.Int()}, true
	}
	if inspect.Config.Labels[labelTaskID] != "" && p.hostPort == "" {
		if ip := overlayAddress(c, wantNetwork); ip != "" {
			check := c.GatewayAddress
			if check == "" {
				check = ip
			}
			return placement{address: ip, port: p.port.Int(), checkAddress: check, checkPort: p.port.Int()}, true
		}
	}
	if opts.Internal {
		if ip := firstAddress(inspect, wantNetwork); ip != "" {
			return placement{address: ip, port: p.port.Int(), checkAddress: ip, checkPort: p.port.Int()}, true
		}
		return placement{}, false
	}
	if p.hostPort != "" {
		hp, err := strconv.Atoi(p.hostPort)
		if err != nil {
			return placement{}, false
		}
		addr := node.Address
		if p.hostIP != "" && p.hostIP != "0.0.0.0" {
			addr = p.hostIP
		}
		return placement{address: addr, port: hp, checkAddress: addr, checkPort: hp}, true
	}
	return placement{}, false
}

// overlayAddress is a task's address on the network its SERVICE_NETWORK names, else on
// the first (by name) overlay network that is not the ingress network.
func overlayAddress(c Container, want string) string {
	nets := c.Inspect.NetworkSettings
	if nets == nil {
		return ""
	}
	if want != "" {
		if ep := nets.Networks[want]; ep != nil {
			return ep.IPAddress
		}
		return ""
	}
	names := make([]string, 0, len(nets.Networks))
	for name := range nets.Networks {
		n := c.Networks[name]
		if n.Driver == "overlay" && !n.Ingress && nets.Networks[name] != nil && nets.Networks[name].IPAddress != "" {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return nets.Networks[names[0]].IPAddress
}

// firstAddress is the container's address on the named network, else on the first
// network by name that gives it one.
func firstAddress(inspect container.InspectResponse, want string) string {
	nets := inspect.NetworkSettings
	if nets == nil {
		return ""
	}
	if want != "" {
		if ep := nets.Networks[want]; ep != nil {
			return ep.IPAddress
		}
		return ""
	}
	names := make([]string, 0, len(nets.Networks))
	for name, ep := range nets.Networks {
		if ep != nil && ep.IPAddress != "" {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return nets.Networks[names[0]].IPAddress
}

// userCheck is the check a container asks for with SERVICE_CHECK_HTTP, _HTTPS, _TCP or
// _TTL, aimed at an address the node's Consul agent can reach.
func userCheck(serviceID string, values map[string]string, at placement) (*consulapi.AgentServiceCheck, error) {
	check := &consulapi.AgentServiceCheck{
		CheckID:                        serviceID + ":check",
		Interval:                       firstNonEmpty(values["check_interval"], defaultCheckInterval),
		Timeout:                        values["check_timeout"],
		Status:                         values["check_initial_status"],
		DeregisterCriticalServiceAfter: values["check_deregister_after"],
	}
	target := fmt.Sprintf("%s:%d", at.checkAddress, at.checkPort)
	if strings.Contains(at.checkAddress, ":") {
		target = fmt.Sprintf("[%s]:%d", at.checkAddress, at.checkPort)
	}
	switch {
	case values["check_http"] != "":
		check.Name = "HTTP " + values["check_http"]
		check.HTTP = "http://" + target + checkPath(values["check_http"])
	case values["check_https"] != "":
		check.Name = "HTTPS " + values["check_https"]
		check.HTTP = "https://" + target + checkPath(values["check_https"])
	case values["check_tcp"] != "":
		check.Name = "TCP " + target
		check.TCP = target
	case values["check_ttl"] != "":
		check.Name = "TTL"
		check.TTL = values["check_ttl"]
		check.Interval, check.Timeout = "", ""
	default:
		return nil, nil
	}
	switch check.Status {
	case "", consulapi.HealthPassing, consulapi.HealthWarning, consulapi.HealthCritical:
	default:
		return nil, fmt.Errorf("SERVICE_CHECK_INITIAL_STATUS %q: want passing, warning or critical", check.Status)
	}
	return check, nil
}

func checkPath(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return "/" + p
}

// hasHealthcheck reports whether the container runs a Docker HEALTHCHECK.
func hasHealthcheck(cfg *container.Config) bool {
	hc := cfg.Healthcheck
	return hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE"
}

// HealthStatus is the Consul status mirroring a container's Docker health, and the
// last health check output as the check's output.
func HealthStatus(inspect container.InspectResponse) (status, output string) {
	if inspect.State == nil || inspect.State.Health == nil {
		return consulapi.HealthCritical, "no health state yet"
	}
	h := inspect.State.Health
	if n := len(h.Log); n > 0 {
		output = strings.TrimSpace(h.Log[n-1].Output)
	}
	return ConsulStatus(h.Status), output
}

// ConsulStatus maps a Docker health status to Consul's: only healthy is passing; a
// container still starting is not ready for traffic.
func ConsulStatus(docker string) string {
	if docker == container.Healthy {
		return consulapi.HealthPassing
	}
	return consulapi.HealthCritical
}

// imageBasename is registrator's default service name: the image's last path element
// without tag or digest.
func imageBasename(image string) string {
	image, _, _ = strings.Cut(image, "@")
	base := path.Base(image)
	if i := strings.LastIndex(base, ":"); i >= 0 {
		base = base[:i]
	}
	return base
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func dedupe(tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	out := make([]string, 0, len(tags))
	seen := map[string]bool{}
	for _, t := range tags {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}
