package haproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

const (
	proxyImage = "haproxy:2.6"
	appImageV1 = "microswarm/demo-app:1.0.0"
	appImageV2 = "microswarm/demo-app:2.0.0"
)

// hostEngine is this machine's Docker engine with the images the test runs.
func hostEngine(t *testing.T) *client.Client {
	t.Helper()
	return testkit.HostEngine(t, proxyImage, appImageV1, appImageV2)
}

// proxyFixture is a blue/green proxy for service `service` in front of demo apps, all on
// a bridge network of the test's own, where Docker's DNS answers tasks.<service>-<color>
// as swarm's does.
type proxyFixture struct {
	t        *testing.T
	docker   *client.Client
	network  string
	service  string
	config   Config
	proxyID  string
	api      *Client
	url      string // the frontend, published on loopback
	statsURL string
	apps     map[string]string // container name -> ID
}

func newProxyFixture(t *testing.T) *proxyFixture {
	docker := hostEngine(t)
	ctx := context.Background()
	suffix := fmt.Sprintf("%08x", rand.Uint32())
	f := &proxyFixture{t: t, docker: docker, service: "hap" + suffix, apps: map[string]string{}}
	f.network = "haproxy-test-" + suffix
	if _, err := docker.NetworkCreate(ctx, f.network, network.CreateOptions{Driver: "bridge"}); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-registered first: the containers go before their network.
	t.Cleanup(func() { _ = docker.NetworkRemove(context.Background(), f.network) })
	return f
}

// runApp starts one instance of a color, answering as version.
func (f *proxyFixture) runApp(name string, color Color, image string, env ...string) {
	t := f.t
	t.Helper()
	ctx := context.Background()
	created, err := f.docker.ContainerCreate(ctx,
		&container.Config{Image: image, Env: append([]string{"COLOR=" + string(color)}, env...)},
		&container.HostConfig{},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			f.network: {Aliases: []string{"tasks." + f.service + "-" + string(color)}},
		}},
		nil, f.service+"-"+name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = f.docker.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	if err := f.docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	f.apps[name] = created.ID
}

// appAddress is an app's address on the test network.
func (f *proxyFixture) appAddress(name string) string {
	inspect, err := f.docker.ContainerInspect(context.Background(), f.apps[name])
	if err != nil {
		f.t.Fatal(err)
	}
	return inspect.NetworkSettings.Networks[f.network].IPAddress
}

// runProxy starts HAProxy with the rendered config and map, the config directory and
// the admin socket's directory bind-mounted from the host, so the test reaches the
// Runtime API as the provider will: through a unix socket.
func (f *proxyFixture) runProxy(active Color) {
	t := f.t
	t.Helper()
	f.config = Config{Service: f.service}.WithDefaults()
	cfg, err := f.config.Render()
	if err != nil {
		t.Fatal(err)
	}
	routing, err := RenderMap(active, 0)
	if err != nil {
		t.Fatal(err)
	}
	// os.MkdirTemp, not t.TempDir: a unix socket path must stay under 108 bytes.
	configDir, socketDir := f.tempDir(), f.tempDir()
	f.writeFile(filepath.Join(configDir, "haproxy.cfg"), cfg)
	f.writeFile(filepath.Join(configDir, filepath.Base(f.config.MapPath)), routing)

	ctx := context.Background()
	ports := nat.PortMap{}
	for _, p := range []int{f.config.ListenPort, f.config.StatsPort} {
		ports[nat.Port(fmt.Sprintf("%d/tcp", p))] = []nat.PortBinding{{HostIP: "127.0.0.1", HostPort: "0"}}
	}
	exposed := nat.PortSet{}
	for p := range ports {
		exposed[p] = struct{}{}
	}
	created, err := f.docker.ContainerCreate(ctx,
		&container.Config{Image: proxyImage, ExposedPorts: exposed},
		&container.HostConfig{
			Binds: []string{
				configDir + ":" + filepath.Dir(f.config.MapPath),
				socketDir + ":" + filepath.Dir(f.config.AdminSocketPath),
			},
			PortBindings: ports,
		},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{f.network: {}}},
		nil, f.service+"-proxy")
	if err != nil {
		t.Fatal(err)
	}
	f.proxyID = created.ID
	t.Cleanup(func() {
		if t.Failed() {
			f.logProxy()
		}
		_ = f.docker.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	f.api = NewUnixClient(filepath.Join(socketDir, filepath.Base(f.config.AdminSocketPath)))
	if err := f.docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	f.awaitProxy()
}

// awaitProxy waits for the admin socket to answer and learns the published ports, which
// a restart may change.
func (f *proxyFixture) awaitProxy() {
	t := f.t
	t.Helper()
	waitFor(t, 10*time.Second, "the admin socket to answer", func() bool {
		_, err := f.api.ShowInfo(context.Background())
		return err == nil
	})
	inspect, err := f.docker.ContainerInspect(context.Background(), f.proxyID)
	if err != nil {
		t.Fatal(err)
	}
	published := func(port int) string {
		binding := inspect.NetworkSettings.Ports[nat.Port(fmt.Sprintf("%d/tcp", port))]
		if len(binding) == 0 {
			t.Fatalf("port %d not published: %v", port, inspect.NetworkSettings.Ports)
		}
		return "http://127.0.0.1:" + binding[0].HostPort
	}
	f.url, f.statsURL = published(f.config.ListenPort), published(f.config.StatsPort)
}

// hostDir is the host directory mounted at dir in the proxy.
func (f *proxyFixture) hostDir(dir string) string {
	inspect, err := f.docker.ContainerInspect(context.Background(), f.proxyID)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, m := range inspect.Mounts {
		if m.Destination == dir {
			return m.Source
		}
	}
	f.t.Fatalf("nothing mounted at %s", dir)
	return ""
}

func (f *proxyFixture) logProxy() {
	logs, err := f.docker.ContainerLogs(context.Background(), f.proxyID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "40"})
	if err != nil {
		return
	}
	defer logs.Close()
	out, _ := io.ReadAll(logs)
	f.t.Logf("proxy log (last 40 lines, with Docker's stream headers):\n%s", out)
}

func (f *proxyFixture) tempDir() string {
	dir, err := os.MkdirTemp("", "hap")
	if err != nil {
		f.t.Fatal(err)
	}
	// The official image runs HAProxy as haproxy (99:99): it creates its admin socket
	// here, as the provider's proxy nodes' directories let it.
	if err := os.Chown(dir, 99, 99); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (f *proxyFixture) writeFile(path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// healthy counts the servers of a color that passed their health check.
func (f *proxyFixture) healthy(color Color) int {
	rows, err := f.api.ShowStat(context.Background())
	if err != nil {
		return -1
	}
	return HealthyServers(rows, string(color))
}

func waitFor(t *testing.T, within time.Duration, what string, done func() bool) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	start := time.Now()
	err := wait.Until(ctx, wait.Options{What: what, Interval: 10 * time.Millisecond, Factor: 1},
		func(context.Context) (bool, string, error) { return done(), "", nil })
	if err != nil {
		t.Fatalf("%s: not within %s", what, within)
	}
	return time.Since(start)
}

// answer is what one request through the proxy got.
type answer struct {
	start, end time.Time
	err        error // a connection error or a non-2xx status
	Version    string
	Color      Color
	Hostname   string
}

// load is a bounded stream of requests from a few concurrent clients to the proxy on
// loopback: it stops at maxRequests, at Stop, or after maxDuration.
type load struct {
	mu      sync.Mutex
	answers []answer
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

// loadClients is how many clients startLoad runs.
const loadClients = 4

func startLoad(url string, maxRequests int, maxDuration time.Duration) *load {
	clients := loadClients
	ctx, cancel := context.WithTimeout(context.Background(), maxDuration)
	l := &load{cancel: cancel}
	httpClient := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients},
	}
	for range clients {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for ctx.Err() == nil && l.count() < maxRequests {
				a := get(ctx, httpClient, url)
				if ctx.Err() != nil && a.err != nil {
					return // cut short by Stop, not by the proxy
				}
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func get(ctx context.Context, c *http.Client, url string) answer {
	a := answer{start: time.Now()}
	defer func() { a.end = time.Now() }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if err != nil {
		a.err = err
		return a
	}
	resp, err := c.Do(req)
	if err != nil {
		a.err = err
		a.end = time.Now()
		return a
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	a.end = time.Now()
	switch {
	case err != nil:
		a.err = err
	case resp.StatusCode/100 != 2:
		a.err = fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(body)))
	default:
		a.err = json.Unmarshal(body, &a)
	}
	return a
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.answers)
}

// awaitCount waits until n answers arrived (bounded by within).
func (l *load) awaitCount(t *testing.T, n int, within time.Duration) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("%d answers", n), func() bool { return l.count() >= n })
}

// keepGoing lets the load run for d more, with at least minAnswers more answers.
func (l *load) keepGoing(t *testing.T, d time.Duration, minAnswers int) {
	t.Helper()
	deadline := time.Now().Add(d)
	l.awaitCount(t, l.count()+minAnswers, d+10*time.Second)
	waitFor(t, d+time.Second, fmt.Sprintf("%s more of traffic", d), func() bool { return time.Now().After(deadline) })
}

// slowest is the longest answer time among answers started after since.
func slowest(answers []answer, since time.Time) time.Duration {
	var longest time.Duration
	for _, a := range answers {
		if a.start.After(since) {
			longest = max(longest, a.end.Sub(a.start))
		}
	}
	return longest
}

// Stop ends the load and returns every answer.
func (l *load) Stop() []answer {
	l.cancel()
	l.done.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]answer(nil), l.answers...)
}

// failures returns the failed answers, for the message.
func failures(answers []answer) []string {
	var failed []string
	for _, a := range answers {
		if a.err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", a.start.Format("15:04:05.000"), a.err))
		}
	}
	return failed
}
