package localcloud

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"
)

// requireLocalCloud skips tests that need the Docker engine and the node image.
func requireLocalCloud(t *testing.T) {
	t.Helper()
	if os.Getenv("TF_ACC") == "" && os.Getenv("LOCALCLOUD_TEST") == "" {
		t.Skip("set LOCALCLOUD_TEST=1 (or TF_ACC=1) to run tests that start droplet containers")
	}
}

func uniqueName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "lct-" + hex.EncodeToString(b)
}

// startCloud starts an emulator with a unique name that is removed when the test ends.
func startCloud(t *testing.T, cfg Config) *Cloud {
	t.Helper()
	requireLocalCloud(t)
	if cfg.Name == "" {
		cfg.Name = uniqueName()
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	if cfg.RateLimitPerMinute == 0 {
		cfg.RateLimitPerMinute = 5000 // tests poll fast; TestRateLimit checks the limit itself
	}
	cloud, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := cloud.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if cloud.keep.Load() {
			return
		}
		docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			t.Error(err)
			return
		}
		defer docker.Close()
		if containers, networks := instanceObjects(ctx, t, docker, cfg.Name); containers+networks != 0 {
			t.Errorf("after Close: %d containers and %d networks left", containers, networks)
		}
	})
	return cloud
}

type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func godoClient(t *testing.T, cloud *Cloud, token string) *godo.Client {
	t.Helper()
	c, err := godo.New(&http.Client{Transport: bearerTransport{token}}, godo.SetBaseURL(cloud.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dockerClient(t *testing.T) *client.Client {
	t.Helper()
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker.Close() })
	return docker
}

// userKey is an SSH key pair registered with the account.
type userKey struct {
	signer ssh.Signer
	godo   *godo.Key
}

func registerKey(t *testing.T, do *godo.Client, name string) userKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + name
	key, _, err := do.Keys.Create(t.Context(), &godo.KeyCreateRequest{Name: name, PublicKey: authorized})
	if err != nil {
		t.Fatalf("Keys.Create: %v", err)
	}
	if key.Fingerprint != ssh.FingerprintLegacyMD5(signer.PublicKey()) {
		t.Fatalf("fingerprint %q, want %q", key.Fingerprint, ssh.FingerprintLegacyMD5(signer.PublicKey()))
	}
	return userKey{signer: signer, godo: key}
}

// waitActive polls the droplet until it is active and returns it with the time it took.
func waitActive(t *testing.T, do *godo.Client, id int, since time.Time) (*godo.Droplet, time.Duration) {
	t.Helper()
	d, err := pollStatus(t.Context(), do, id, "active", 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return d, time.Since(since)
}

// pollStatus waits, within the given time, until a droplet reports a status; unlike the
// wait helpers it is safe in goroutines other than the test's.
func pollStatus(ctx context.Context, do *godo.Client, id int, want string, within time.Duration) (*godo.Droplet, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		d, _, err := do.Droplets.Get(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("Droplets.Get(%d): %w", id, err)
		}
		if d.Status == want {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("droplet %d still %q, want %q: %w", id, d.Status, want, ctx.Err())
		case <-ticker.C:
		}
	}
}

// waitAction polls a droplet action until it is no longer in progress and returns its status.
func waitAction(t *testing.T, do *godo.Client, dropletID, actionID int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		a, _, err := do.DropletActions.Get(ctx, dropletID, actionID)
		if err != nil {
			t.Fatalf("DropletActions.Get: %v", err)
		}
		if a.Status != "in-progress" {
			return a.Status
		}
		select {
		case <-ctx.Done():
			t.Fatalf("action %d still in progress: %v", actionID, ctx.Err())
		case <-ticker.C:
		}
	}
}

// sshRun runs command as root on ip; hostKey, if set, must be the key the server presents.
// It returns the output and the host key seen.
func sshRun(t *testing.T, ip string, user ssh.Signer, hostKey ssh.PublicKey, command string) (string, ssh.PublicKey) {
	t.Helper()
	var seen ssh.PublicKey
	config := &ssh.ClientConfig{
		User:    "root",
		Auth:    []ssh.AuthMethod{ssh.PublicKeys(user)},
		Timeout: 10 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			seen = key
			if hostKey != nil && !bytes.Equal(key.Marshal(), hostKey.Marshal()) {
				return errors.New("host key mismatch")
			}
			return nil
		},
	}
	if hostKey != nil {
		config.HostKeyAlgorithms = []string{hostKey.Type()}
	} else {
		config.HostKeyAlgorithms = []string{ssh.KeyAlgoED25519}
	}
	conn, err := ssh.Dial("tcp", net.JoinHostPort(ip, "22"), config)
	if err != nil {
		t.Fatalf("ssh root@%s: %v", ip, err)
	}
	defer conn.Close()
	session, err := conn.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	out, err := session.CombinedOutput(command)
	if err != nil {
		t.Fatalf("ssh root@%s %q: %v\n%s", ip, command, err, out)
	}
	return string(out), seen
}

// instanceObjects counts the containers and networks labelled with the instance's name.
func instanceObjects(ctx context.Context, t *testing.T, docker *client.Client, name string) (containers, networks int) {
	t.Helper()
	f := filters.NewArgs(filters.Arg("label", labelInstance+"="+name))
	cs, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := docker.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return len(cs), len(ns)
}

func publicIP(t *testing.T, d *godo.Droplet) string {
	t.Helper()
	ip, err := d.PublicIPv4()
	if err != nil || ip == "" {
		t.Fatalf("droplet %d has no public address: %v %+v", d.ID, err, d.Networks)
	}
	return ip
}
