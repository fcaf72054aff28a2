package bluegreen

import (
	"maps"
	"strings"
	"testing"
)

// A user's labels, registrator SERVICE_* keys included, come back from the live service
// as they were given, and the port is read back the same way whatever the label order:
// a second SERVICE_<port>_CHECK_HTTP must not flip it (port forces replacement).
func TestUserLabelsAndThePortRoundTrip(t *testing.T) {
	t.Parallel()
	svc := Service{Name: "web", Network: "web-net", Port: 8080, HealthPath: "/health"}
	user := map[string]string{
		"SERVICE_9090_NAME": "web-metrics", "SERVICE_9090_CHECK_HTTP": "/metrics", "SERVICE_TAGS": "prod", "team": "payments",
	}
	for range 20 { // map order differs run to run
		spec := svc.ColorServiceSpec(Blue, ColorSpec{Image: "web:1.0.0", Replicas: 2, Labels: user})
		back := ColorFromServiceSpec(spec)
		if !maps.Equal(back.Labels, user) {
			t.Fatalf("labels read back %v, want %v", back.Labels, user)
		}
		if port, ok := ServicePort(spec); !ok || port != 8080 {
			t.Fatalf("port read back %d, want 8080", port)
		}
		// A service deployed before the port label: the port is still the service's own.
		delete(spec.Labels, LabelPort)
		if port, ok := ServicePort(spec); !ok || port != 8080 {
			t.Fatalf("port read back without its label %d, want 8080", port)
		}
	}
}

func TestOwnedLabels(t *testing.T) {
	t.Parallel()
	for key, owned := range map[string]bool{
		"SERVICE_8080_NAME": true, "SERVICE_8080_CHECK_HTTP": true, "microswarm.anything": true,
		"SERVICE_9090_NAME": false, "SERVICE_TAGS": false, "team": false,
	} {
		if IsOwnedLabel(key, 8080) != owned {
			t.Errorf("%s: owned %v, want %v", key, !owned, owned)
		}
	}
}

func TestSameImage(t *testing.T) {
	t.Parallel()
	for pair, same := range map[[2]string]bool{
		{"haproxy:2.6", "docker.io/library/haproxy:2.6"}:                 true,
		{"haproxy", "haproxy:latest"}:                                    true,
		{"haproxy:2.6", "haproxy:2.8"}:                                   false,
		{"haproxy:2.6", "haproxy:2.6@sha256:" + strings.Repeat("a", 64)}: false,
	} {
		if SameImage(pair[0], pair[1]) != same {
			t.Errorf("SameImage(%q, %q) = %v", pair[0], pair[1], !same)
		}
	}
}
