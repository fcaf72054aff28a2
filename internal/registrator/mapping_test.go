package registrator

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	consulapi "github.com/hashicorp/consul/api"
)

// The testdata files are `docker inspect` output captured on the local cloud (a 3-node
// swarm made by `make demo`):
//   - swarm_task_overlay.json: a task of `docker service create --name capweb --network
//     capnet --network capnet2 --endpoint-mode dnsrr --label microswarm.color=blue
//     --label SERVICE_TAGS=svc --container-label SERVICE_NAME=web --container-label
//     microswarm.version=1.0.0 -e SERVICE_CHECK_HTTP=/health microswarm/demo-app:1.0.0`
//   - swarm_task_host_port.json: a task of `--publish mode=host,published=18080,target=8080`
//   - plain_published.json: `docker run -p 19090:8080 -e SERVICE_8080_NAME=plain
//     -e SERVICE_TAGS=x,y -e SERVICE_FOO=bar microswarm/demo-app:1.0.0`
//   - host_network.json: `docker run --network host microswarm/demo-app:1.0.0`
func loadInspect(t *testing.T, name string) container.InspectResponse {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var inspect container.InspectResponse
	if err := json.Unmarshal(raw, &inspect); err != nil {
		t.Fatal(err)
	}
	return inspect
}

// withEnv returns a copy of the inspect with more env entries and labels.
func withEnv(inspect container.InspectResponse, env []string, labels map[string]string) container.InspectResponse {
	cfg := *inspect.Config
	cfg.Env = append(slices.Clone(cfg.Env), env...)
	cfg.Labels = map[string]string{}
	for k, v := range inspect.Config.Labels {
		cfg.Labels[k] = v
	}
	for k, v := range labels {
		cfg.Labels[k] = v
	}
	inspect.Config = &cfg
	return inspect
}

func TestRegistrations(t *testing.T) {
	t.Parallel()
	node := Node{Hostname: "demo-0", Address: "172.19.0.4"}
	overlays := map[string]Network{"capnet": {Driver: "overlay"}, "capnet2": {Driver: "overlay"}}
	overlay := loadInspect(t, "swarm_task_overlay.json")
	hostPort := loadInspect(t, "swarm_task_host_port.json")
	plain := loadInspect(t, "plain_published.json")
	hostNet := loadInspect(t, "host_network.json")

	type want struct {
		id, name, address string
		port              int
		tags              []string
		meta              map[string]string
		checks            []string // HTTP/TCP/TTL target of each check, in order
	}
	cases := map[string]struct {
		opts      Options
		container Container
		want      []want
	}{
		"overlay task: overlay address, container port, service name and labels, check on gwbridge": {
			container: Container{
				Inspect:        overlay,
				ServiceLabels:  map[string]string{LabelColor: "blue", "SERVICE_TAGS": "svc"},
				Networks:       overlays,
				GatewayAddress: "172.20.0.3",
			},
			want: []want{{
				id: "demo-0:capweb.2.nypdnxnzo02ieexwzlutbca2l:8080", name: "web", address: "10.0.1.2", port: 8080,
				tags: []string{"svc", "blue", "version=1.0.0"},
				meta: map[string]string{"swarm_task_id": "nypdnxnzo02ieexwzlutbca2l", "swarm_service_id": "3b15z6dyqv1f05hzzfnfac78g"},
				// SERVICE_CHECK_HTTP aims at the gwbridge address; the HEALTHCHECK is mirrored as a TTL.
				checks: []string{"http://172.20.0.3:8080/health", "ttl:30s"},
			}},
		},
		"overlay task on a worker (no service labels): container labels and env only": {
			container: Container{Inspect: overlay, Networks: overlays, GatewayAddress: "172.20.0.3"},
			want: []want{{
				id: "demo-0:capweb.2.nypdnxnzo02ieexwzlutbca2l:8080", name: "web", address: "10.0.1.2", port: 8080,
				tags:   []string{"version=1.0.0"},
				meta:   map[string]string{"swarm_task_id": "nypdnxnzo02ieexwzlutbca2l", "swarm_service_id": "3b15z6dyqv1f05hzzfnfac78g"},
				checks: []string{"http://172.20.0.3:8080/health", "ttl:30s"},
			}},
		},
		"SERVICE_NETWORK picks the second overlay": {
			container: Container{Inspect: withEnv(overlay, nil, map[string]string{"SERVICE_NETWORK": "capnet2"}), Networks: overlays, GatewayAddress: "172.20.0.3"},
			want: []want{{
				id: "demo-0:capweb.2.nypdnxnzo02ieexwzlutbca2l:8080", name: "web", address: "10.0.2.2", port: 8080,
				tags:   []string{"version=1.0.0"},
				meta:   map[string]string{"swarm_task_id": "nypdnxnzo02ieexwzlutbca2l", "swarm_service_id": "3b15z6dyqv1f05hzzfnfac78g"},
				checks: []string{"http://172.20.0.3:8080/health", "ttl:30s"},
			}},
		},
		"the ingress network is never chosen": {
			container: Container{Inspect: overlay, Networks: map[string]Network{"capnet": {Driver: "overlay", Ingress: true}, "capnet2": {Driver: "overlay"}}, GatewayAddress: "172.20.0.3"},
			want: []want{{
				id: "demo-0:capweb.2.nypdnxnzo02ieexwzlutbca2l:8080", name: "web", address: "10.0.2.2", port: 8080,
				tags:   []string{"version=1.0.0"},
				meta:   map[string]string{"swarm_task_id": "nypdnxnzo02ieexwzlutbca2l", "swarm_service_id": "3b15z6dyqv1f05hzzfnfac78g"},
				checks: []string{"http://172.20.0.3:8080/health", "ttl:30s"},
			}},
		},
		"host-mode published task: node address and host port, named after its service": {
			container: Container{Inspect: hostPort},
			want: []want{{
				id: "demo-0:cappub.1.no2tu3a1hw7wqk5to4s8sibp9:8080", name: "cappub", address: "172.19.0.4", port: 18080,
				meta:   map[string]string{"swarm_task_id": "no2tu3a1hw7wqk5to4s8sibp9", "swarm_service_id": "6ltg4i93hdf7ljhya9pp0p1y1"},
				checks: []string{"ttl:30s"},
			}},
		},
		"plain container: per-port name, tags, -tags appended; env keys never reach Meta": {
			opts:      Options{Tags: []string{"node-a"}},
			container: Container{Inspect: plain},
			want: []want{{
				id: "demo-0:capplain:8080", name: "plain", address: "172.19.0.4", port: 19090,
				tags:   []string{"x", "y", "node-a"},
				checks: []string{"ttl:30s"},
			}},
		},
		"Meta comes from labels only: a secret in env is not published in the catalog": {
			container: Container{
				Inspect: withEnv(plain, []string{"SERVICE_DB_PASSWORD=s3cret-from-env", "SERVICE_8080_API_KEY=k3y-from-env"},
					map[string]string{"SERVICE_TEAM": "payments", "SERVICE_8080_TIER": "web"}),
				ServiceLabels: map[string]string{"SERVICE_OWNER": "ops"},
			},
			want: []want{{
				id: "demo-0:capplain:8080", name: "plain", address: "172.19.0.4", port: 19090,
				tags: []string{"x", "y"}, meta: map[string]string{"team": "payments", "tier": "web", "owner": "ops"},
				checks: []string{"ttl:30s"},
			}},
		},
		"labels win over env; per-port keys win over plain ones": {
			container: Container{Inspect: withEnv(plain, []string{"SERVICE_NAME=from-env", "SERVICE_8080_TAGS=port-tag"}, map[string]string{"SERVICE_FOO": "label", "SERVICE_ID": "custom-id"})},
			want: []want{{
				id: "custom-id", name: "plain", address: "172.19.0.4", port: 19090,
				tags: []string{"port-tag"}, meta: map[string]string{"foo": "label"},
				checks: []string{"ttl:30s"},
			}},
		},
		"-internal: the container's bridge address and exposed port": {
			opts:      Options{Internal: true},
			container: Container{Inspect: plain},
			want: []want{{
				id: "demo-0:capplain:8080", name: "plain", address: "172.17.0.3", port: 8080,
				tags: []string{"x", "y"}, checks: []string{"ttl:30s"},
			}},
		},
		"host network: node address, image basename": {
			container: Container{Inspect: hostNet},
			want: []want{{
				id: "demo-0:caphost:8080", name: "demo-app", address: "172.19.0.4", port: 8080,
				checks: []string{"ttl:30s"},
			}},
		},
		"SERVICE_IGNORE": {
			container: Container{Inspect: withEnv(plain, []string{"SERVICE_IGNORE=true"}, nil)},
		},
		"SERVICE_<port>_IGNORE": {
			container: Container{Inspect: withEnv(plain, []string{"SERVICE_8080_IGNORE=1"}, nil)},
		},
		"-explicit skips a container without SERVICE_NAME": {
			opts:      Options{Explicit: true},
			container: Container{Inspect: hostNet},
		},
		"-explicit keeps one with it": {
			opts:      Options{Explicit: true},
			container: Container{Inspect: withEnv(hostNet, []string{"SERVICE_NAME=api", "SERVICE_CHECK_TCP=true", "SERVICE_CHECK_INTERVAL=3s"}, nil)},
			want: []want{{
				id: "demo-0:caphost:8080", name: "api", address: "172.19.0.4", port: 8080,
				checks: []string{"tcp:172.19.0.4:8080", "ttl:30s"},
			}},
		},
		"a port named only in SERVICE_<port>_* keys is registered": {
			container: Container{Inspect: withEnv(hostNet, []string{"SERVICE_9000_NAME=admin"}, nil)},
			want: []want{
				{id: "demo-0:caphost:8080", name: "demo-app-8080", address: "172.19.0.4", port: 8080, checks: []string{"ttl:30s"}},
				{id: "demo-0:caphost:9000", name: "admin", address: "172.19.0.4", port: 9000, checks: []string{"ttl:30s"}},
			},
		},
		"overlay task without a known overlay and without -internal is not registered": {
			container: Container{Inspect: overlay, Networks: map[string]Network{}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			regs, err := Registrations(node, tc.opts, tc.container)
			if err != nil {
				t.Fatal(err)
			}
			if len(regs) != len(tc.want) {
				t.Fatalf("got %d registrations, want %d: %+v", len(regs), len(tc.want), regs)
			}
			for i, w := range tc.want {
				s := regs[i].Service
				if s.ID != w.id || s.Name != w.name || s.Address != w.address || s.Port != w.port {
					t.Errorf("got %s %s %s:%d, want %s %s %s:%d", s.ID, s.Name, s.Address, s.Port, w.id, w.name, w.address, w.port)
				}
				if !slices.Equal(s.Tags, w.tags) {
					t.Errorf("tags %q, want %q", s.Tags, w.tags)
				}
				if !equalMeta(s.Meta, w.meta) {
					t.Errorf("meta %v, want %v", s.Meta, w.meta)
				}
				var checks []string
				for _, c := range s.Checks {
					checks = append(checks, checkTarget(c))
				}
				if !slices.Equal(checks, w.checks) {
					t.Errorf("checks %q, want %q", checks, w.checks)
				}
			}
		})
	}
}

func checkTarget(c *consulapi.AgentServiceCheck) string {
	switch {
	case c.HTTP != "":
		return c.HTTP
	case c.TCP != "":
		return "tcp:" + c.TCP
	default:
		return "ttl:" + c.TTL
	}
}

func TestRegistrationsMirrorDockerHealth(t *testing.T) {
	t.Parallel()
	node := Node{Hostname: "demo-0", Address: "172.19.0.4"}
	inspect := loadInspect(t, "plain_published.json")
	for docker, consul := range map[string]string{
		container.Healthy:   consulapi.HealthPassing,
		container.Unhealthy: consulapi.HealthCritical,
		container.Starting:  consulapi.HealthCritical,
	} {
		state := *inspect.State
		health := *state.Health
		health.Status = docker
		state.Health = &health
		base := *inspect.ContainerJSONBase
		base.State = &state
		c := inspect
		c.ContainerJSONBase = &base
		regs, err := Registrations(node, Options{}, Container{Inspect: c})
		if err != nil {
			t.Fatal(err)
		}
		if len(regs) != 1 || regs[0].HealthCheckID != "demo-0:capplain:8080:docker-health" {
			t.Fatalf("registrations %+v", regs)
		}
		check := regs[0].Service.Checks[len(regs[0].Service.Checks)-1]
		if check.Status != consul {
			t.Errorf("docker %s: consul status %q, want %q", docker, check.Status, consul)
		}
	}
}

func TestRegistrationsMultiplePortsAndUDP(t *testing.T) {
	t.Parallel()
	inspect := loadInspect(t, "host_network.json")
	cfg := *inspect.Config
	cfg.ExposedPorts = nat.PortSet{}
	for _, p := range []string{"9090/tcp", "53/udp", "8080/tcp"} {
		cfg.ExposedPorts[nat.Port(p)] = struct{}{}
	}
	cfg.Env = append(slices.Clone(cfg.Env), "SERVICE_9090_NAME=metrics")
	cfg.Healthcheck = nil
	inspect.Config = &cfg
	regs, err := Registrations(Node{Hostname: "h", Address: "10.1.1.1"}, Options{}, Container{Inspect: inspect})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range regs {
		got = append(got, r.Service.ID+" "+r.Service.Name+" "+r.Service.Address)
	}
	want := []string{
		"h:caphost:53:udp demo-app-53 10.1.1.1",
		"h:caphost:8080 demo-app-8080 10.1.1.1",
		"h:caphost:9090 metrics 10.1.1.1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if !slices.Contains(regs[0].Service.Tags, "udp") {
		t.Errorf("the udp port is not tagged udp: %q", regs[0].Service.Tags)
	}
}

func TestRegistrationsRejectBadInitialStatus(t *testing.T) {
	t.Parallel()
	inspect := withEnv(loadInspect(t, "plain_published.json"), []string{"SERVICE_CHECK_HTTP=/health", "SERVICE_CHECK_INITIAL_STATUS=green"}, nil)
	if _, err := Registrations(Node{Hostname: "h", Address: "10.1.1.1"}, Options{}, Container{Inspect: inspect}); err == nil {
		t.Fatal("an invalid SERVICE_CHECK_INITIAL_STATUS was accepted")
	}
}

func TestImageBasename(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"microswarm/demo-app:1.0.0":         "demo-app",
		"redis":                             "redis",
		"registry.local:5000/team/api:2":    "api",
		"registry.local:5000/team/api":      "api",
		"nginx@sha256:0123456789abcdef0000": "nginx",
	} {
		if got := imageBasename(in); got != want {
			t.Errorf("imageBasename(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConsulConfig(t *testing.T) {
	t.Parallel()
	for uri, want := range map[string]string{
		"consul://127.0.0.1:8500":            "http 127.0.0.1:8500",
		"consul-tls://node.example:8501":     "https node.example:8501",
		"consul-unix:///var/run/consul.sock": "http unix:///var/run/consul.sock",
		"etcd://127.0.0.1:2379":              "error",
		"consul://":                          "error",
		"consul-unix://":                     "error",
	} {
		cfg, err := ConsulConfig(uri)
		got := "error"
		if err == nil {
			got = cfg.Scheme + " " + cfg.Address
		}
		if got != want {
			t.Errorf("ConsulConfig(%q) = %s, want %s", uri, got, want)
		}
	}
}
