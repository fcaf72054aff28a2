package bluegreen

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
)

// Labels on everything a microservice deploys.
const (
	LabelService = "microswarm.service"
	LabelColor   = "microswarm.color"
	LabelVersion = "microswarm.version"
	// LabelPort, on a color's service, is the service's port: which SERVICE_<port>_* keys
	// on its containers are the provider's.
	LabelPort = "microswarm.port"
)

// OwnedLabels are the container labels the provider sets on a color's tasks: the
// registrator's keys for the service's port and its own microswarm.* labels. A user's
// labels may not set them (they would be overwritten), and reading a service back
// leaves exactly these out.
func OwnedLabels(port int) []string {
	p := "SERVICE_" + strconv.Itoa(port) + "_"
	return []string{p + "NAME", p + "CHECK_HTTP", p + "CHECK_INTERVAL", p + "CHECK_TIMEOUT", LabelColor, LabelVersion, LabelService}
}

// IsOwnedLabel says whether key is one of OwnedLabels(port) or any microswarm.* label.
func IsOwnedLabel(key string, port int) bool {
	return strings.HasPrefix(key, "microswarm.") || slices.Contains(OwnedLabels(port), key)
}

// EndpointModes are the ways a color's tasks are found: dnsrr (tasks.NAME answers every
// task; what the proxy's server-template resolves) or vip.
var EndpointModes = []string{string(swarm.ResolutionModeDNSRR), string(swarm.ResolutionModeVIP)}

// ColorSpec is one color's deployment.
type ColorSpec struct {
	Image       string
	Replicas    uint64
	Env         map[string]string
	Labels      map[string]string
	Command     []string
	Args        []string
	Constraints []string
	// CPULimit in CPUs and MemoryLimitMB, zero for none.
	CPULimit      float64
	MemoryLimitMB int64
	// Healthcheck overrides the image's HEALTHCHECK (Test ["NONE"] turns it off); nil
	// keeps the image's.
	Healthcheck *container.HealthConfig
}

// Service is one logical service: two colors behind one proxy.
type Service struct {
	Name         string
	Network      string
	Port         int
	HealthPath   string
	EndpointMode string
}

// ServiceName is the swarm service of a color: NAME-blue, NAME-green.
func (s Service) ServiceName(c Color) string { return s.Name + "-" + string(c) }

// Version is what the registrator tags a color with: the image's tag (or digest).
func Version(image string) string {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return ""
	}
	if tagged, ok := named.(reference.Tagged); ok {
		return tagged.Tag()
	}
	if digested, ok := named.(reference.Digested); ok {
		return digested.Digest().String()
	}
	return "latest"
}

// ColorServiceSpec is the swarm service of color c: on the service's overlay network,
// labelled so the registrator publishes every task in Consul as NAME with the color and
// version as tags and an HTTP check on the health path; updated one task at a time, the
// new task up before the old one stops.
func (s Service) ColorServiceSpec(c Color, spec ColorSpec) swarm.ServiceSpec {
	version := Version(spec.Image)
	containerLabels := maps.Clone(spec.Labels)
	if containerLabels == nil {
		containerLabels = map[string]string{}
	}
	port := strconv.Itoa(s.Port)
	// Container labels, not service labels: a worker's registrator sees only those.
	maps.Copy(containerLabels, map[string]string{
		"SERVICE_" + port + "_NAME":           s.Name,
		"SERVICE_" + port + "_CHECK_HTTP":     s.HealthPath,
		"SERVICE_" + port + "_CHECK_INTERVAL": "2s",
		"SERVICE_" + port + "_CHECK_TIMEOUT":  "1s",
		LabelColor:                            string(c),
		LabelVersion:                          version,
		LabelService:                          s.Name,
	})
	env := make([]string, 0, len(spec.Env))
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		env = append(env, k+"="+spec.Env[k])
	}
	replicas := spec.Replicas
	grace := 10 * time.Second
	cs := &swarm.ContainerSpec{
		Image:           spec.Image,
		Labels:          containerLabels,
		Env:             env,
		Command:         spec.Command,
		Args:            spec.Args,
		Healthcheck:     spec.Healthcheck,
		StopGracePeriod: &grace,
	}
	var placement *swarm.Placement
	if len(spec.Constraints) > 0 {
		placement = &swarm.Placement{Constraints: spec.Constraints}
	}
	var resources *swarm.ResourceRequirements
	if spec.CPULimit > 0 || spec.MemoryLimitMB > 0 {
		resources = &swarm.ResourceRequirements{Limits: &swarm.Limit{
			NanoCPUs: int64(spec.CPULimit * 1e9), MemoryBytes: spec.MemoryLimitMB << 20,
		}}
	}
	mode := swarm.ResolutionModeDNSRR
	if s.EndpointMode == string(swarm.ResolutionModeVIP) {
		mode = swarm.ResolutionModeVIP
	}
	delay := time.Second
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: s.ServiceName(c), Labels: map[string]string{
			LabelService: s.Name, LabelColor: string(c), LabelVersion: version, LabelPort: port,
		}},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			Placement:     placement,
			Resources:     resources,
			Networks:      []swarm.NetworkAttachmentConfig{{Target: s.Network}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &delay},
		},
		UpdateConfig: &swarm.UpdateConfig{
			Parallelism: 1, Order: swarm.UpdateOrderStartFirst, FailureAction: swarm.UpdateFailureActionRollback, Monitor: 5 * time.Second,
		},
		EndpointSpec: &swarm.EndpointSpec{Mode: mode},
	}
}

// SameImage says whether two image references name the same image: the engine stores
// `docker.io/library/haproxy:2.6` as `haproxy:2.6`, and the configuration's spelling must
// not show as drift.
func SameImage(a, b string) bool {
	if a == b {
		return true
	}
	na, errA := reference.ParseNormalizedNamed(a)
	nb, errB := reference.ParseNormalizedNamed(b)
	return errA == nil && errB == nil && reference.TagNameOnly(na).String() == reference.TagNameOnly(nb).String()
}

// ServicePort is the port a color's live service was deployed for: its LabelPort, or,
// for a service deployed before that label, the lowest port with a SERVICE_<port>_NAME
// label naming the service (deterministic, whatever the label order).
func ServicePort(spec swarm.ServiceSpec) (int, bool) {
	if p, err := strconv.Atoi(spec.Labels[LabelPort]); err == nil {
		return p, true
	}
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return 0, false
	}
	best := 0
	for k, v := range cs.Labels {
		rest, ok := strings.CutPrefix(k, "SERVICE_")
		port, key, found := strings.Cut(rest, "_")
		n, err := strconv.Atoi(port)
		if !ok || !found || key != "NAME" || err != nil || v != spec.Labels[LabelService] {
			continue
		}
		if best == 0 || n < best {
			best = n
		}
	}
	return best, best != 0
}

// ColorFromServiceSpec reads a color's deployment back from its live swarm service: the
// user's labels (SERVICE_* keys included) are kept, only the provider's own are left out.
func ColorFromServiceSpec(spec swarm.ServiceSpec) ColorSpec {
	var out ColorSpec
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return out
	}
	out.Image = cs.Image
	if r := spec.Mode.Replicated; r != nil && r.Replicas != nil {
		out.Replicas = *r.Replicas
	}
	for _, kv := range cs.Env {
		k, v, _ := strings.Cut(kv, "=")
		if out.Env == nil {
			out.Env = map[string]string{}
		}
		out.Env[k] = v
	}
	port, _ := ServicePort(spec)
	for k, v := range cs.Labels {
		if IsOwnedLabel(k, port) {
			continue
		}
		if out.Labels == nil {
			out.Labels = map[string]string{}
		}
		out.Labels[k] = v
	}
	out.Command, out.Args, out.Healthcheck = cs.Command, cs.Args, cs.Healthcheck
	if p := spec.TaskTemplate.Placement; p != nil {
		out.Constraints = p.Constraints
	}
	if r := spec.TaskTemplate.Resources; r != nil && r.Limits != nil {
		out.CPULimit = float64(r.Limits.NanoCPUs) / 1e9
		out.MemoryLimitMB = r.Limits.MemoryBytes >> 20
	}
	return out
}

// ProxyDeployment is the service's HAProxy: one task on every node labelled for it, its frontend
// published on the node (host mode: no routing mesh is needed), on the service's overlay
// so it reaches every task, its routing map and admin socket in a node directory the
// provider reaches over SSH.
type ProxyDeployment struct {
	Service    Service
	Image      string
	ListenPort int
}

// Where the proxy keeps its state, on the node and in the container.
const (
	proxyContainerDir = "/var/lib/haproxy-bg"
	// proxyPort is the port the proxy binds inside its container; the node's listen
	// port is published to it, so the configuration does not depend on the listen port
	// and a listen port change changes only the service's published port.
	proxyPort = 8000
)

// ProxyName is the proxy's swarm service name.
func (p ProxyDeployment) ProxyName() string { return p.Service.Name + "-proxy" }

// NodeLabel marks the nodes that run the proxy.
func (p ProxyDeployment) NodeLabel() string { return "microswarm.proxy." + p.Service.Name }

// NodeDir is the directory on each proxy node holding the map, the server state and the
// admin socket.
func (p ProxyDeployment) NodeDir() string { return "/var/lib/microswarm/proxy/" + p.Service.Name }

// ContainerDir is NodeDir as the proxy container sees it.
func (p ProxyDeployment) ContainerDir() string { return proxyContainerDir }

// MapFile, AdminSocket: the node's paths (for the provider) of the routing map and the
// Runtime API socket.
func (p ProxyDeployment) MapFile() string     { return p.NodeDir() + "/bluegreen.map" }
func (p ProxyDeployment) AdminSocket() string { return p.NodeDir() + "/admin.sock" }

// ServerStateFile is where, on the node, a starting proxy finds its servers' state;
// ConfigFile holds its haproxy.cfg; MasterSocket is the master CLI, which reloads it.
func (p ProxyDeployment) ServerStateFile() string { return p.NodeDir() + "/server-state" }
func (p ProxyDeployment) ConfigFile() string      { return p.NodeDir() + "/haproxy.cfg" }
func (p ProxyDeployment) MasterSocket() string    { return p.NodeDir() + "/master.sock" }

// Spec is the proxy's swarm service. Its configuration is a file in the node directory,
// not part of the spec: a configuration change is a seamless reload of the running
// proxy (master-worker mode; the new worker takes the listening sockets over), not a
// new task. The arguments start with an option, so the official image's entrypoint
// runs them as `haproxy -W -db ARGS`.
func (p ProxyDeployment) Spec() swarm.ServiceSpec {
	grace := 10 * time.Second
	delay := time.Second
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: p.ProxyName(), Labels: map[string]string{LabelService: p.Service.Name}},
		Mode:        swarm.ServiceMode{Global: &swarm.GlobalService{}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:           p.Image,
				Args:            []string{"-f", proxyContainerDir + "/haproxy.cfg", "-S", proxyContainerDir + "/master.sock"},
				Labels:          map[string]string{LabelService: p.Service.Name, "SERVICE_NAME": p.ProxyName()},
				Mounts:          []mount.Mount{{Type: mount.TypeBind, Source: p.NodeDir(), Target: proxyContainerDir}},
				StopGracePeriod: &grace,
			},
			Placement:     &swarm.Placement{Constraints: []string{"node.labels." + p.NodeLabel() + "==true"}},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: p.Service.Network}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &delay},
		},
		// A host-mode port cannot be bound twice on a node: the old proxy stops first
		// (ensureProxy rolls a new port start-first).
		UpdateConfig: &swarm.UpdateConfig{Parallelism: 1, Order: swarm.UpdateOrderStopFirst, FailureAction: swarm.UpdateFailureActionRollback},
		EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{{
			Protocol: swarm.PortConfigProtocolTCP, TargetPort: proxyPort, PublishedPort: uint32(p.ListenPort),
			PublishMode: swarm.PortConfigPublishModeHost,
		}}},
	}
}
