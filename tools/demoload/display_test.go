package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/loadgen"
)

func TestSecond(t *testing.T) {
	t.Parallel()
	ok := func(color, version string) loadgen.Result { return loadgen.Result{Color: color, Version: version} }
	d := newDisplay()
	first := d.second(time.Second, time.Second, []loadgen.Result{ok("blue", "1.0.0"), ok("blue", "1.0.0")})
	second := d.second(2*time.Second, time.Second, []loadgen.Result{
		ok("blue", "1.0.0"), ok("green", "2.0.0"), ok("green", "2.0.0"), ok("green", "2.0.0"),
		{Target: "http://172.18.0.2:80/", Err: "HTTP 503"},
	})
	tests := map[string]struct {
		line string
		want []string
	}{
		"blue only": {first, []string{"[load +1s]", "    2 req/s", "total       2", "failed 0", "blue v1 100%"}},
		"a switch":  {second, []string{"[load +2s]", "    5 req/s", "total       7", "failed 1", "blue v1  25%", "green v2  75%", "failed: http://172.18.0.2:80/: HTTP 503"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, w := range tt.want {
				if !strings.Contains(tt.line, w) {
					t.Errorf("%q lacks %q", tt.line, w)
				}
			}
		})
	}
	if strings.Contains(first, "green") {
		t.Errorf("%q names a color not seen yet", first)
	}
}

func TestShort(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"1.0.0": "v1", "2.0.0": "v2", "1.2.0": "v1.2", "1.2.3": "v1.2.3", "dev": "dev", "": ""} {
		if got := short(in); got != want {
			t.Errorf("short(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckTargets(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		targets []string
		ok      bool
	}{
		"node addresses": {[]string{"http://172.18.0.2:80", "http://10.1.2.3:8080"}, true},
		"loopback":       {[]string{"http://127.0.0.1:8080", "http://localhost:1"}, true},
		"none":           {nil, false},
		"public":         {[]string{"http://172.18.0.2:80", "http://8.8.8.8:80"}, false},
		"a name":         {[]string{"http://example.com/"}, false},
		"https":          {[]string{"https://127.0.0.1:8443"}, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := checkTargets(tt.targets); (err == nil) != tt.ok {
				t.Fatalf("checkTargets(%v) = %v, want ok %v", tt.targets, err, tt.ok)
			}
		})
	}
}

// TestSummary runs a real load against a stand-in app that switches from blue v1 to
// green v2 after the switch mark, and checks the summary names the switch.
func TestSummary(t *testing.T) {
	t.Parallel()
	var green atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a := map[string]string{"version": "1.0.0", "color": "blue"}
		if green.Load() {
			a = map[string]string{"version": "2.0.0", "color": "green"}
		}
		_ = json.NewEncoder(w).Encode(a)
	}))
	t.Cleanup(srv.Close)
	load, err := loadgen.Start(context.Background(), loadgen.Options{Targets: []string{srv.URL}, Concurrency: 2, Rate: 500,
		MaxRequests: 10000, MaxDuration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	load.Mark(markSwitch)
	time.Sleep(100 * time.Millisecond)
	green.Store(true)
	load.Mark(markSwitched)
	time.Sleep(200 * time.Millisecond)
	got := summary(load.Stop())
	for _, w := range []string{"0 failed of ", "v1 -> v2 at +", "(the apply took "} {
		if !strings.Contains(got, w) {
			t.Errorf("%q lacks %q", got, w)
		}
	}
}
