package haproxy

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"
)

// Color names one of the two deployments of a service.
type Color string

const (
	Blue  Color = "blue"
	Green Color = "green"
)

// Colors lists the valid colors, for validators and docs.
var Colors = []Color{Blue, Green}

// Other is the color that is not c.
func (c Color) Other() Color {
	if c == Green {
		return Blue
	}
	return Green
}

// Valid reports whether c is blue or green.
func (c Color) Valid() bool { return c == Blue || c == Green }

// The keys of the routing map. HAProxy reads them on every request, so one `set map`
// changes where the next request goes.
const (
	// MapKeyActive maps to the color that takes the traffic: "blue" or "green".
	MapKeyActive = "active"
	// MapKeyCanary maps to the percentage (0..100) of requests sent to the other color.
	MapKeyCanary = "canary"
)

// Config describes the blue/green proxy of one service. Zero fields take the defaults
// listed beside them (see WithDefaults); only Service is required.
type Config struct {
	// Service is the logical service name; its colors are found in Docker's DNS as
	// tasks.<Service>-blue and tasks.<Service>-green.
	Service string
	// ServicePort is the port the service's tasks listen on (default 8080).
	ServicePort int
	// ListenPort is the port the proxy's frontend binds (default: ServicePort).
	ListenPort int
	// HealthPath is the path of the HTTP health check sent to every task (default /health).
	HealthPath string

	// MapPath is the routing map file loaded at start (default
	// /usr/local/etc/haproxy/bluegreen.map). `set map` changes only memory: whoever
	// switches must also rewrite this file (RenderMap) so a restart keeps the color.
	MapPath string
	// ServerStateFile is where a reload finds the servers' addresses and states (default
	// /usr/local/etc/haproxy/server-state). Write it from ServersStateFile just before a
	// reload: without it the new process starts with empty server slots (init-addr none)
	// and answers 503 until DNS fills them. A missing file is only a warning.
	ServerStateFile string
	// AdminSocketPath is the Runtime API socket (default /run/haproxy/admin.sock, a
	// directory the haproxy:2.6 image has; it has no /var/run).
	AdminSocketPath string

	// StatsPort serves the stats page at StatsPath and the proxy's own liveness at
	// MonitorPath (defaults 8404, /stats, /healthz).
	StatsPort   int
	StatsPath   string
	MonitorPath string

	// MaxInstancesPerColor is how many server slots server-template makes per color
	// (default 10). Tasks beyond it get no traffic.
	MaxInstancesPerColor int

	// Nameserver is Docker's embedded DNS (default 127.0.0.11:53).
	Nameserver string
	// ResolveInterval is how often names are resolved (`timeout resolve`, default 250ms),
	// DNSHoldValid how long a valid answer is reused (`hold valid`, default 500ms) and
	// DNSHoldObsolete how long an address that left the answer keeps its slot (`hold
	// obsolete`, default 500ms). Together they bound how soon a new task gets traffic.
	ResolveInterval time.Duration
	DNSHoldValid    time.Duration
	DNSHoldObsolete time.Duration

	// CheckInterval is the health check period (default 500ms); FastInterval the period
	// while a server is changing state (default 250ms); DownInterval the period while it
	// is down (default 250ms: a task found by DNS before it listens fails its first check,
	// and this bounds how soon it comes up); CheckFall/CheckRise how many failed/passed
	// checks mark a server down/up (defaults 2/2).
	CheckInterval time.Duration
	FastInterval  time.Duration
	DownInterval  time.Duration
	CheckFall     int
	CheckRise     int

	// ConnectTimeout bounds a connection to a task (default 500ms): a task that vanished
	// without a reset costs a request this long before it is retried elsewhere.
	ConnectTimeout time.Duration
	// ClientTimeout and ServerTimeout are HAProxy's inactivity timeouts (defaults 30s).
	ClientTimeout time.Duration
	ServerTimeout time.Duration

	// Retries is how many times a failed request is retried, each on another server
	// (`option redispatch 1`) (default 3).
	Retries int
	// RetryOn lists the `retry-on` events (default DefaultRetryOn).
	RetryOn []string
	// AccessLog logs every request to stdout (default false: only failed, retried or
	// redispatched requests and server state changes, which is what diagnoses a switch).
	AccessLog bool

	// RetryUnsafeMethods allows layer-7 retries of requests that are not GET, HEAD or
	// OPTIONS (default false: those are retried only when the connection failed, so a
	// POST is never sent twice).
	RetryUnsafeMethods bool
}

// DefaultRetryOn retries what a task that is going away produces: a refused or timed-out
// connection, a connection closed without an answer, and gateway errors.
var DefaultRetryOn = []string{"conn-failure", "empty-response", "junk-response", "response-timeout", "0rtt-rejected", "502", "503", "504"}

// Default locations inside the proxy container.
const (
	DefaultMapPath         = "/usr/local/etc/haproxy/bluegreen.map"
	DefaultServerStateFile = "/usr/local/etc/haproxy/server-state"
	DefaultAdminSocketPath = "/run/haproxy/admin.sock"
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setStr := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	setDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setInt(&c.ServicePort, 8080)
	setInt(&c.ListenPort, c.ServicePort)
	setStr(&c.HealthPath, "/health")
	setStr(&c.MapPath, DefaultMapPath)
	setStr(&c.AdminSocketPath, DefaultAdminSocketPath)
	setStr(&c.ServerStateFile, DefaultServerStateFile)
	setInt(&c.StatsPort, 8404)
	setStr(&c.StatsPath, "/stats")
	setStr(&c.MonitorPath, "/healthz")
	setInt(&c.MaxInstancesPerColor, 10)
	setStr(&c.Nameserver, "127.0.0.11:53")
	setDur(&c.ResolveInterval, 250*time.Millisecond)
	setDur(&c.DNSHoldValid, 500*time.Millisecond)
	setDur(&c.DNSHoldObsolete, 500*time.Millisecond)
	setDur(&c.CheckInterval, 500*time.Millisecond)
	setDur(&c.FastInterval, 250*time.Millisecond)
	setDur(&c.DownInterval, 250*time.Millisecond)
	setInt(&c.CheckFall, 2)
	setInt(&c.CheckRise, 2)
	setDur(&c.ConnectTimeout, 500*time.Millisecond)
	setDur(&c.ClientTimeout, 30*time.Second)
	setDur(&c.ServerTimeout, 30*time.Second)
	setInt(&c.Retries, 3)
	if len(c.RetryOn) == 0 {
		c.RetryOn = DefaultRetryOn
	}
	return c
}

// serviceName is what Docker accepts as a swarm service name (NAME-blue must be one too).
var serviceName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// cfgWord is what may appear unquoted as one word in the config (paths, paths in URIs).
var cfgWord = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=~-]+$`)

// Validate reports the first field (after defaults) that would make a broken config.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if !serviceName.MatchString(c.Service) || len(c.Service) > 57 {
		return fmt.Errorf("service name %q: want letters, digits, '_', '.', '-', at most 57 characters", c.Service)
	}
	for name, port := range map[string]int{"service port": c.ServicePort, "listen port": c.ListenPort, "stats port": c.StatsPort} {
		if port < 1 || port > 65535 {
			return fmt.Errorf("%s %d: out of range 1-65535", name, port)
		}
	}
	if c.StatsPort == c.ListenPort {
		return fmt.Errorf("stats port %d is also the listen port", c.StatsPort)
	}
	for name, v := range map[string]string{
		"health path": c.HealthPath, "stats path": c.StatsPath, "monitor path": c.MonitorPath,
		"map path": c.MapPath, "admin socket path": c.AdminSocketPath, "server state file": c.ServerStateFile,
	} {
		if !strings.HasPrefix(v, "/") || !cfgWord.MatchString(v) {
			return fmt.Errorf("%s %q: want an absolute path without spaces or quotes", name, v)
		}
	}
	if c.MaxInstancesPerColor < 1 || c.MaxInstancesPerColor > 1000 {
		return fmt.Errorf("max instances per color %d: out of range 1-1000", c.MaxInstancesPerColor)
	}
	if !cfgWord.MatchString(c.Nameserver) {
		return fmt.Errorf("nameserver %q: want host:port", c.Nameserver)
	}
	for name, d := range map[string]time.Duration{
		"resolve interval": c.ResolveInterval, "dns hold valid": c.DNSHoldValid, "dns hold obsolete": c.DNSHoldObsolete,
		"check interval": c.CheckInterval, "fast interval": c.FastInterval, "down interval": c.DownInterval, "connect timeout": c.ConnectTimeout,
		"client timeout": c.ClientTimeout, "server timeout": c.ServerTimeout,
	} {
		if d < time.Millisecond {
			return fmt.Errorf("%s %s: want at least 1ms", name, d)
		}
	}
	if c.CheckFall < 1 || c.CheckRise < 1 || c.Retries < 0 {
		return fmt.Errorf("check fall %d, rise %d, retries %d: want fall and rise >= 1, retries >= 0", c.CheckFall, c.CheckRise, c.Retries)
	}
	for _, event := range c.RetryOn {
		if !cfgWord.MatchString(event) {
			return fmt.Errorf("retry-on event %q: want one word", event)
		}
	}
	return nil
}

// Render returns haproxy.cfg for the service's blue/green proxy.
func (c Config) Render() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	c = c.WithDefaults()
	var out bytes.Buffer
	if err := configTemplate.Execute(&out, c); err != nil {
		return "", err
	}
	return out.String(), nil
}

// RenderMap returns the routing map file: what HAProxy loads at start, so it must be
// rewritten after every switch for the color to survive a restart.
func RenderMap(active Color, canaryPercent int) (string, error) {
	if !active.Valid() {
		return "", fmt.Errorf("active color %q: want blue or green", active)
	}
	if canaryPercent < 0 || canaryPercent > 100 {
		return "", fmt.Errorf("canary %d%%: want 0-100", canaryPercent)
	}
	return fmt.Sprintf("%s %s\n%s %d\n", MapKeyActive, active, MapKeyCanary, canaryPercent), nil
}

// ms renders a duration in HAProxy's time format.
func ms(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}

var configTemplate = template.Must(template.New("haproxy.cfg").Funcs(template.FuncMap{
	"ms":        ms,
	"join":      strings.Join,
	"colors":    func() []Color { return Colors },
	"keyActive": func() string { return MapKeyActive },
	"keyCanary": func() string { return MapKeyCanary },
}).Parse(`# Blue/green proxy for service {{.Service}}; generated by terraform-provider-microswarm.
# Routing is read per request from {{.MapPath}}; switch with the Runtime API
# ("set map {{.MapPath}} active green"), not by editing and reloading this file.
global
  log stdout format raw local0
  # expose-fd listeners lets a new process take over the sockets on a reload without
  # closing them.
  stats socket {{.AdminSocketPath}} mode 600 level admin expose-fd listeners
  stats timeout 30s
  server-state-file {{.ServerStateFile}}

resolvers docker
  nameserver dns {{.Nameserver}}
  accepted_payload_size 8192
  resolve_retries 3
  timeout resolve {{ms .ResolveInterval}}
  timeout retry {{ms .ResolveInterval}}
  hold valid {{ms .DNSHoldValid}}
  hold obsolete {{ms .DNSHoldObsolete}}
  hold other {{ms .DNSHoldValid}}
  hold refused {{ms .DNSHoldValid}}
  hold nx {{ms .DNSHoldValid}}
  hold timeout {{ms .DNSHoldValid}}

defaults
  mode http
  log global
  load-server-state-from-file global
  option httplog
  option dontlognull
{{- if not .AccessLog}}
  option dontlog-normal
{{- end}}
  timeout connect {{ms .ConnectTimeout}}
  timeout client {{ms .ClientTimeout}}
  timeout server {{ms .ServerTimeout}}
  timeout http-request 10s
  timeout queue {{ms .ConnectTimeout}}
  timeout check {{ms .ConnectTimeout}}
  retries {{.Retries}}
  # Every retry goes to another server, so a request to a task that just went away is
  # answered by one that is still there.
  option redispatch 1
  retry-on {{join .RetryOn " "}}

frontend {{.Service}}
  bind :{{.ListenPort}}
  # Routing is looked up in the map for every request, so set map applies to the next one.
  http-request set-var(txn.active) str({{keyActive}}),map_str({{.MapPath}},blue)
  # map_str, not map_str_int: the map holds the color too, and map_str_int would reject
  # it at load. sub() below casts the string to an integer.
  http-request set-var(txn.canary) str({{keyCanary}}),map_str({{.MapPath}},0)
  # One random draw per request, compared with the canary share.
  http-request set-var(txn.roll) rand(100)
{{- if not .RetryUnsafeMethods}}
  http-request disable-l7-retry if !METH_GET !METH_HEAD !METH_OPTIONS
{{- end}}
  acl active_is_green var(txn.active) -m str green
  acl canary_hit var(txn.roll),sub(txn.canary) lt 0
  acl blue_up nbsrv(blue) gt 0
  acl green_up nbsrv(green) gt 0
  # No share goes to a color with no usable server while the other has one: a canary
  # share would only fail, and an active color whose every server went down (a release
  # that degraded after the switch) would answer 503 until it is rolled back. With no
  # usable server in either color, the active one answers.
  use_backend green if active_is_green !canary_hit green_up
  use_backend green if active_is_green !blue_up
  use_backend green if !active_is_green canary_hit green_up
  use_backend green if !active_is_green !blue_up green_up
  default_backend blue
{{range colors}}
backend {{.}}
  balance roundrobin
  option httpchk GET {{$.HealthPath}}
  http-check expect status 200
  default-server check inter {{ms $.CheckInterval}} fastinter {{ms $.FastInterval}} downinter {{ms $.DownInterval}} fall {{$.CheckFall}} rise {{$.CheckRise}} resolvers docker resolve-prefer ipv4 init-addr last,none
  server-template {{.}} {{$.MaxInstancesPerColor}} tasks.{{$.Service}}-{{.}}:{{$.ServicePort}}
{{end}}
frontend stats
  bind :{{.StatsPort}}
  monitor-uri {{.MonitorPath}}
  stats enable
  stats uri {{.StatsPath}}
  stats refresh 5s
`))
