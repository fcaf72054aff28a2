package localcloud

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	// mirrorPort is where droplets find the registry mirror, on the public network's gateway.
	mirrorPort         = 5000
	registryConfigName = "registry.yml"
	registryLogName    = "registry.log"
	registryStartLimit = 30 * time.Second
)

// registryMirror is a distribution registry on loopback serving the images that
// tools/images/build.sh pushed, plus a reverse proxy that exposes it to the droplets on the
// public network's gateway only, so nothing listens on every interface.
type registryMirror struct {
	cmd    *exec.Cmd
	exited chan struct{}
	proxy  *http.Server
	// url is the registry itself, on loopback.
	url string
}

func startRegistryMirror(ctx context.Context, cfg Config, gateway string) (*registryMirror, error) {
	binary, err := registryBinary(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.RegistryDataDir, 0o755); err != nil {
		return nil, err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(cfg.StateDir, registryConfigName)
	if err := os.WriteFile(configPath, []byte(registryConfig(cfg.RegistryDataDir, port)), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(cfg.StateDir, registryLogName)
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child keeps its own descriptor

	m := &registryMirror{exited: make(chan struct{})}
	m.cmd = exec.Command(binary, "serve", configPath)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	m.cmd.SysProcAttr = dieWithParent()
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	go func() {
		_ = m.cmd.Wait()
		close(m.exited)
	}()

	upstream := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	if err := m.waitAnswering(ctx, upstream.String()+"/v2/", logPath); err != nil {
		_ = m.stop()
		return nil, err
	}

	listener, err := net.Listen("tcp", net.JoinHostPort(gateway, strconv.Itoa(mirrorPort)))
	if err != nil {
		_ = m.stop()
		return nil, fmt.Errorf("mirror proxy: %w", err)
	}
	m.url = upstream.String()
	m.proxy = &http.Server{Handler: httputil.NewSingleHostReverseProxy(upstream), ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = m.proxy.Serve(listener) }()
	cfg.Logf("registry mirror: %s -> %s (storage %s)", listener.Addr(), upstream.Host, cfg.RegistryDataDir)
	return m, nil
}

// registryConfig is the same configuration tools/images/build.sh pushes with, on another port.
func registryConfig(dataDir string, port int) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:%d
`, dataDir, port)
}

func (m *registryMirror) waitAnswering(ctx context.Context, probeURL, logPath string) error {
	ctx, cancel := context.WithTimeout(ctx, registryStartLimit)
	defer cancel()
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	probe := &http.Client{Timeout: time.Second}
	for {
		if resp, err := probe.Get(probeURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-m.exited:
			logged, _ := os.ReadFile(logPath)
			return fmt.Errorf("registry exited at start: %s", lastLines(string(logged), 10))
		case <-ctx.Done():
			return fmt.Errorf("registry did not answer on %s: %w", probeURL, ctx.Err())
		case <-ticker.C:
		}
	}
}

func (m *registryMirror) stop() error {
	var errs []error
	if m.proxy != nil {
		errs = append(errs, m.proxy.Close())
	}
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(os.Interrupt)
		select {
		case <-m.exited:
		case <-time.After(5 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
	}
	return errors.Join(errs...)
}

// registryBinary finds the registry: Config, then $MICROSWARM_REGISTRY_BIN, then the
// repository's gobin.sh, which builds it once and caches it.
func registryBinary(ctx context.Context, cfg Config) (string, error) {
	if cfg.RegistryBinary != "" {
		return cfg.RegistryBinary, nil
	}
	if bin := os.Getenv("MICROSWARM_REGISTRY_BIN"); bin != "" {
		return bin, nil
	}
	root, err := repoRoot(ctx)
	if err != nil {
		// Outside the repository, a binary gobin.sh built earlier still serves.
		if cached, _ := filepath.Glob(filepath.Join(DefaultCacheDir(), "bin", "registry-*")); len(cached) > 0 {
			sort.Strings(cached)
			return cached[len(cached)-1], nil
		}
		return "", fmt.Errorf("no registry binary: set MICROSWARM_REGISTRY_BIN or run inside the repository: %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "tools", "images", "gobin.sh"), "registry")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("tools/images/gobin.sh registry: %w: %s", err, lastLines(stderr.String(), 10))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), nil
}

// repoRoot finds the repository from the working directory, or from `go env GOMOD`.
func repoRoot(ctx context.Context) (string, error) {
	const marker = "tools/images/gobin.sh"
	if dir, err := os.Getwd(); err == nil {
		for ; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, marker)); err == nil {
				return dir, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	dir := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
		return "", err
	}
	return dir, nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("listener address %v is not TCP", l.Addr())
	}
	return addr.Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// manifestTypes are the manifest kinds a tag can name, as a registry client asks for them.
var manifestTypes = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// TagImage makes repo:to name what repo:from names in the registry the droplets pull
// through (repo as on Docker Hub: "hashicorp/consul", or "library/haproxy"), so that a
// new tag reaches the nodes by the ordinary pull path, with nothing put on them.
func (c *Cloud) TagImage(ctx context.Context, repo, from, to string) error {
	if c.mirror == nil {
		return errors.New("the local cloud has no registry")
	}
	manifest := func(tag string) string { return c.mirror.url + "/v2/" + repo + "/manifests/" + tag }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, manifest(from), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", strings.Join(manifestTypes, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the registry has no %s:%s (%s)", repo, from, resp.Status)
	}
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, manifest(to), bytes.NewReader(body))
	if err != nil {
		return err
	}
	put.Header.Set("Content-Type", resp.Header.Get("Content-Type"))
	answer, err := http.DefaultClient.Do(put)
	if err != nil {
		return err
	}
	answer.Body.Close()
	if answer.StatusCode != http.StatusCreated {
		return fmt.Errorf("tagging %s:%s as %s: the registry answered %s", repo, from, to, answer.Status)
	}
	return nil
}
