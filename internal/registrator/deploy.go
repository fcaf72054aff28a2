package registrator

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
)

// Deployment is the registrator as a global swarm service: one task per eligible node,
// on the host network, reading the node's Docker socket and writing to the node-local
// Consul agent.
type Deployment struct {
	Name    string
	Image   string
	Backend string // consul://127.0.0.1:8500

	Internal      bool
	Explicit      bool
	Cleanup       bool
	Resync        int // seconds
	Tags          []string
	Deregister    string
	RetryAttempts int
	RetryInterval int // milliseconds
	// ExtraArgs go to the program after the flags above and before the backend URI.
	ExtraArgs   []string
	Constraints []string

	// TokenSecret, when set, is a swarm secret holding the Consul ACL token; the task
	// reads it through CONSUL_HTTP_TOKEN_FILE, so the token never shows in the spec.
	TokenSecret *swarm.SecretReference
	// TLSSecrets, for a consul-tls:// backend, are swarm secrets holding the Consul CA
	// and the client certificate and key, by their file name (TLSFiles); the task finds
	// them through CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY.
	TLSSecrets []*swarm.SecretReference
}

// TokenFile is where a task finds the Consul token secret.
const TokenFile = "/run/secrets/consul_token"

// TLSFiles are the TLS secrets' file names under /run/secrets and the variable each is
// named by, as every Consul client reads them.
var TLSFiles = map[string]string{
	"consul_ca.pem":         "CONSUL_CACERT",
	"consul_client.pem":     "CONSUL_CLIENT_CERT",
	"consul_client_key.pem": "CONSUL_CLIENT_KEY",
}

// FlagNames are the flags Deployment sets itself, in the order it passes them; extra
// arguments must not repeat them.
var FlagNames = []string{"internal", "explicit", "cleanup", "resync", "tags", "deregister", "retry-attempts", "retry-interval"}

// Args is the registrator's command line: every flag in -name=value form, so that it
// reads back unambiguously, then the extra arguments, then the backend URI.
func (d Deployment) Args() []string {
	values := map[string]string{
		"internal":       strconv.FormatBool(d.Internal),
		"explicit":       strconv.FormatBool(d.Explicit),
		"cleanup":        strconv.FormatBool(d.Cleanup),
		"resync":         strconv.Itoa(d.Resync),
		"tags":           strings.Join(d.Tags, ","),
		"deregister":     d.Deregister,
		"retry-attempts": strconv.Itoa(d.RetryAttempts),
		"retry-interval": strconv.Itoa(d.RetryInterval),
	}
	args := make([]string, 0, len(FlagNames)+len(d.ExtraArgs)+1)
	for _, name := range FlagNames {
		args = append(args, "-"+name+"="+values[name])
	}
	args = append(args, d.ExtraArgs...)
	return append(args, d.Backend)
}

// Spec is the swarm service spec of the deployment.
func (d Deployment) Spec() swarm.ServiceSpec {
	grace := 10 * time.Second
	cs := &swarm.ContainerSpec{
		Image: d.Image,
		Args:  d.Args(),
		// The node's own hostname starts every service ID it registers.
		Hostname: "{{.Node.Hostname}}",
		Labels:   map[string]string{"SERVICE_IGNORE": "true"},
		Mounts: []mount.Mount{{
			Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/var/run/docker.sock", ReadOnly: true,
		}},
		StopGracePeriod: &grace,
	}
	if d.TokenSecret != nil {
		cs.Secrets = []*swarm.SecretReference{d.TokenSecret}
		cs.Env = []string{"CONSUL_HTTP_TOKEN_FILE=" + TokenFile}
	}
	for _, ref := range d.TLSSecrets {
		cs.Secrets = append(cs.Secrets, ref)
		cs.Env = append(cs.Env, TLSFiles[ref.File.Name]+"=/run/secrets/"+ref.File.Name)
	}
	var placement *swarm.Placement
	if len(d.Constraints) > 0 {
		placement = &swarm.Placement{Constraints: d.Constraints}
	}
	delay := 2 * time.Second
	monitor := 10 * time.Second
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: d.Name},
		Mode:        swarm.ServiceMode{Global: &swarm.GlobalService{}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			Placement:     placement,
			Networks:      []swarm.NetworkAttachmentConfig{{Target: "host"}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &delay},
		},
		// One node at a time, the new registrator up before the old one stops, so every
		// node keeps a registrator; a new version that never turns healthy rolls back.
		UpdateConfig: &swarm.UpdateConfig{
			Parallelism: 1, Order: swarm.UpdateOrderStartFirst, FailureAction: swarm.UpdateFailureActionRollback, Monitor: monitor,
		},
	}
}

// DeploymentFromSpec reads a deployment back from a live service spec, for drift
// detection and import.
func DeploymentFromSpec(spec swarm.ServiceSpec) (Deployment, error) {
	d := Deployment{Name: spec.Name}
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return d, fmt.Errorf("service %s has no container spec", spec.Name)
	}
	d.Image = cs.Image
	if p := spec.TaskTemplate.Placement; p != nil {
		d.Constraints = p.Constraints
	}
	for _, ref := range cs.Secrets {
		if ref.File != nil && TLSFiles[ref.File.Name] != "" {
			d.TLSSecrets = append(d.TLSSecrets, ref)
		} else if d.TokenSecret == nil {
			d.TokenSecret = ref
		}
	}
	args := cs.Args
	if len(args) == 0 {
		return d, fmt.Errorf("service %s runs no backend URI", spec.Name)
	}
	d.Backend = args[len(args)-1]
	args = args[:len(args)-1]
	i := 0
	for ; i < len(args); i++ {
		name, value, ok := strings.Cut(strings.TrimPrefix(args[i], "-"), "=")
		if !ok || !strings.HasPrefix(args[i], "-") || !slices.Contains(FlagNames, name) {
			break
		}
		var err error
		switch name {
		case "internal":
			d.Internal, err = strconv.ParseBool(value)
		case "explicit":
			d.Explicit, err = strconv.ParseBool(value)
		case "cleanup":
			d.Cleanup, err = strconv.ParseBool(value)
		case "resync":
			d.Resync, err = strconv.Atoi(value)
		case "tags":
			d.Tags = SplitTags(value)
		case "deregister":
			d.Deregister = value
		case "retry-attempts":
			d.RetryAttempts, err = strconv.Atoi(value)
		case "retry-interval":
			d.RetryInterval, err = strconv.Atoi(value)
		}
		if err != nil {
			return d, fmt.Errorf("service %s: -%s=%s: %w", spec.Name, name, value, err)
		}
	}
	if i < len(args) {
		d.ExtraArgs = args[i:]
	}
	return d, nil
}
