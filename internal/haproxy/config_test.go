package haproxy

import (
	"strings"
	"testing"
	"time"
)

func TestRenderDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Config{Service: "web"}.Render()
	if err != nil {
		t.Fatal(err)
	}
	// Lines the blue/green behaviour depends on; the real-HAProxy test proves they work.
	for _, want := range []string{
		"stats socket /run/haproxy/admin.sock mode 600 level admin expose-fd listeners",
		"nameserver dns 127.0.0.11:53",
		"hold valid 500ms",
		"default-server check inter 500ms fastinter 250ms downinter 250ms fall 2 rise 2 resolvers docker resolve-prefer ipv4 init-addr last,none",
		"option redispatch 1",
		"retry-on conn-failure empty-response junk-response response-timeout 0rtt-rejected 502 503 504",
		"timeout connect 500ms",
		"timeout server 30s",
		"bind :8080",
		"str(active),map_str(/usr/local/etc/haproxy/bluegreen.map,blue)",
		"str(canary),map_str(/usr/local/etc/haproxy/bluegreen.map,0)",
		"http-request disable-l7-retry if !METH_GET !METH_HEAD !METH_OPTIONS",
		"use_backend green if !active_is_green canary_hit green_up",
		"server-template blue 10 tasks.web-blue:8080",
		"server-template green 10 tasks.web-green:8080",
		"option httpchk GET /health",
		"init-addr last,none",
		"server-state-file /usr/local/etc/haproxy/server-state",
		"load-server-state-from-file global",
		"option dontlog-normal",
		"bind :8404",
		"monitor-uri /healthz",
	} {
		if !strings.Contains(cfg, want+"\n") {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
}

func TestRenderKnobs(t *testing.T) {
	t.Parallel()
	cfg, err := Config{
		Service: "api", ServicePort: 3000, ListenPort: 80, HealthPath: "/ready",
		MapPath: "/etc/haproxy/api.map", AdminSocketPath: "/run/haproxy/api.sock",
		MaxInstancesPerColor: 4, ResolveInterval: 2 * time.Second, CheckInterval: 1500 * time.Millisecond,
		Retries: 5, RetryOn: []string{"conn-failure"}, RetryUnsafeMethods: true,
	}.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"bind :80\n", "server-template green 4 tasks.api-green:3000\n", "option httpchk GET /ready\n",
		"map_str(/etc/haproxy/api.map,blue)", "stats socket /run/haproxy/api.sock ", "timeout resolve 2s\n",
		"inter 1500ms", "retries 5\n", "retry-on conn-failure\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "disable-l7-retry") {
		t.Error("RetryUnsafeMethods kept disable-l7-retry")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := map[string]Config{
		"no service":         {},
		"service with space": {Service: "my app"},
		"service too long":   {Service: strings.Repeat("a", 58)},
		"port out of range":  {Service: "web", ServicePort: 70000},
		"stats on listen":    {Service: "web", ListenPort: 8404},
		"relative map path":  {Service: "web", MapPath: "bluegreen.map"},
		"quote in path":      {Service: "web", HealthPath: `/he"alth`},
		"zero instances":     {Service: "web", MaxInstancesPerColor: -1},
		"sub-ms interval":    {Service: "web", CheckInterval: time.Microsecond},
		"retry-on two words": {Service: "web", RetryOn: []string{"conn-failure 503"}},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := cfg.Render(); err == nil {
				t.Errorf("rendered %+v", cfg)
			}
		})
	}
}

func TestRenderMap(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		active  Color
		canary  int
		want    string
		wantErr bool
	}{
		"blue":         {active: Blue, want: "active blue\ncanary 0\n"},
		"green canary": {active: Green, canary: 20, want: "active green\ncanary 20\n"},
		"bad color":    {active: "red", wantErr: true},
		"bad canary":   {active: Blue, canary: -1, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := RenderMap(tt.active, tt.canary)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
			if err != nil {
				return
			}
			// What HAProxy will load is what ReadRouting understands.
			var entries []MapEntry
			for line := range strings.SplitSeq(strings.TrimSpace(got), "\n") {
				k, v, _ := strings.Cut(line, " ")
				entries = append(entries, MapEntry{Key: k, Value: v})
			}
			if r, err := routingFromEntries("m", entries); err != nil || r != (Routing{tt.active, tt.canary}) {
				t.Errorf("read back %+v, %v", r, err)
			}
		})
	}
}

func TestColorOther(t *testing.T) {
	t.Parallel()
	if Blue.Other() != Green || Green.Other() != Blue {
		t.Error("Other does not swap blue and green")
	}
}
