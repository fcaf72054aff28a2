// Package testkit sets up acceptance tests: a real terraform binary, a DigitalOcean API
// (the local cloud, started in-process, unless DIGITALOCEAN_API_URL names one, or
// DIGITALOCEAN_TOKEN names a real account and MICROSWARM_ACC_REAL_CLOUD=1 consents to
// its bill) and an SSH key for the provider.
package testkit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/localcloud"
)

// Run is TestMain for packages with acceptance tests.
func Run(m *testing.M) int {
	defer startWatchdog()()
	if os.Getenv("TF_ACC_TERRAFORM_PATH") == "" {
		// Use the terraform on PATH rather than letting the test framework download one.
		if path, err := exec.LookPath("terraform"); err == nil {
			_ = os.Setenv("TF_ACC_TERRAFORM_PATH", path)
		}
	}
	if os.Getenv("TF_ACC") == "" {
		return m.Run()
	}
	buildPlugin()
	defer removePlugin()
	if pluginError != nil {
		fmt.Fprintln(os.Stderr, "testkit:", pluginError)
		return 1
	}
	if os.Getenv("MICROSWARM_SSH_PRIVATE_KEY") == "" && os.Getenv("MICROSWARM_SSH_PRIVATE_KEY_FILE") == "" {
		key, err := newPrivateKey()
		if err != nil {
			fmt.Fprintln(os.Stderr, "testkit: generating an SSH key:", err)
			return 1
		}
		_ = os.Setenv("MICROSWARM_SSH_PRIVATE_KEY", key)
	}
	if useLocalCloud(os.Getenv) {
		if os.Getenv("DIGITALOCEAN_TOKEN") != "" {
			fmt.Fprintf(os.Stderr, "testkit: DIGITALOCEAN_TOKEN is set but %s=1 is not: running on the local cloud, not the real one\n", envRealCloud)
		}
		ctx := context.Background()
		if swept, err := localcloud.Sweep(ctx, deadTestRun); err != nil {
			fmt.Fprintln(os.Stderr, "testkit: sweeping what earlier test runs left:", err)
		} else if len(swept) > 0 {
			fmt.Fprintln(os.Stderr, "testkit: removed the local clouds of dead test runs:", swept)
		}
		cloud, err := localcloud.Start(ctx, localcloud.Config{
			Name: fmt.Sprintf("%s%d", instancePrefix, os.Getpid()),
			Logf: func(string, ...any) {},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "testkit: starting the local cloud:", err)
			return 1
		}
		localCloud = cloud
		_ = os.Setenv("DIGITALOCEAN_API_URL", cloud.URL())
		_ = os.Setenv("DIGITALOCEAN_TOKEN", cloud.Token())
		code := m.Run()
		closeCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := cloud.Close(closeCtx); err != nil {
			fmt.Fprintln(os.Stderr, "testkit: cleaning up the local cloud:", err)
			if code == 0 {
				code = 1
			}
		}
		return code
	}
	return m.Run()
}

// envRealCloud must be 1 for acceptance tests to use a DIGITALOCEAN_TOKEN against the
// real, billable API: a developer's token exported for other work is not consent.
const envRealCloud = "MICROSWARM_ACC_REAL_CLOUD"

// useLocalCloud says whether the acceptance tests start the local cloud: unless an API
// URL names an endpoint, or a token comes with the explicit opt-in to the real cloud.
func useLocalCloud(getenv func(string) string) bool {
	if getenv("DIGITALOCEAN_API_URL") != "" {
		return false
	}
	return getenv("DIGITALOCEAN_TOKEN") == "" || getenv(envRealCloud) != "1"
}

// localCloud is the local cloud Run started, if any.
var localCloud *localcloud.Cloud

// LocalCloud is the local cloud the tests run against, for tests that switch its faults
// or manners; it skips (fails in CI) a test run against another API.
func LocalCloud(t *testing.T) *localcloud.Cloud {
	t.Helper()
	if localCloud == nil {
		SkipOrFailInCI(t, "this test switches the local cloud's faults: it needs the local cloud, started by testkit.Run")
	}
	return localCloud
}

// TagImage gives an image in the local cloud's registry another tag (repo as on Docker
// Hub, e.g. "hashicorp/consul"), which the nodes then pull like any image. On the real
// cloud the tag must exist on Docker Hub already.
func TagImage(t *testing.T, repo, from, to string) {
	t.Helper()
	if localCloud == nil {
		t.Fatalf("tagging %s:%s as %s needs the local cloud's registry", repo, from, to)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := localCloud.TagImage(ctx, repo, from, to); err != nil {
		t.Fatal(err)
	}
}

// instancePrefix names the local clouds of acceptance runs: acc<pid>.
const instancePrefix = "acc"

// deadTestRun reports whether a local cloud belongs to an acceptance run whose process
// is gone, so that nothing else can still be using it.
func deadTestRun(instance string) bool {
	pid, err := strconv.Atoi(strings.TrimPrefix(instance, instancePrefix))
	if err != nil || !strings.HasPrefix(instance, instancePrefix) || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// PreCheck fails a test early when the environment cannot run it.
func PreCheck(t *testing.T) {
	t.Helper()
	if os.Getenv("DIGITALOCEAN_TOKEN") == "" {
		t.Fatal("DIGITALOCEAN_TOKEN must be set for acceptance tests (testkit.Run sets it for the local cloud)")
	}
}

// SkipOrFailInCI skips a test whose environment lacks something it needs, and fails it
// under CI (CI set, as .ci/run does), where every test of the suite must run.
func SkipOrFailInCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must provide this: "+format, args...)
	}
	t.Skipf(format, args...)
}

// IsLocalCloud reports whether the tests run against the local cloud.
func IsLocalCloud() bool { return os.Getenv("DIGITALOCEAN_API_URL") != "" }

// Cloud returns a client for the API the tests run against.
func Cloud(t *testing.T) *droplet.Client {
	t.Helper()
	c, err := droplet.NewClient(droplet.ClientOptions{
		Token:   os.Getenv("DIGITALOCEAN_TOKEN"),
		BaseURL: os.Getenv("DIGITALOCEAN_API_URL"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Godo returns a raw godo client for the API the tests run against.
func Godo(t *testing.T) *godo.Client { return Cloud(t).Godo() }

func newPrivateKey() (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(block)), nil
}
