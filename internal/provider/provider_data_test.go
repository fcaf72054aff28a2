package provider

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
)

// keysAPI is the account-keys part of the DigitalOcean API: what registering the
// provider's key talks to, and nothing else.
func keysAPI(t *testing.T) (*droplet.Client, func() int) {
	t.Helper()
	var mu sync.Mutex
	keys := map[string]bool{}
	creates := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/account/keys/"):
			fp := strings.TrimPrefix(r.URL.Path, "/v2/account/keys/")
			if !keys[fp] {
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(`{"id":"not_found","message":"The resource you were accessing could not be found."}`))
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"ssh_key": map[string]any{"id": 1, "fingerprint": fp}})
		case r.Method == http.MethodPost && r.URL.Path == "/v2/account/keys":
			var req struct {
				PublicKey string `json:"public_key"`
			}
			_ = json.NewDecoder(r.Body).Decode(&req)
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
			if err != nil {
				w.WriteHeader(http.StatusUnprocessableEntity)
				return
			}
			fp := ssh.FingerprintLegacyMD5(pub)
			keys[fp] = true
			creates++
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(map[string]any{"ssh_key": map[string]any{"id": 1, "fingerprint": fp}})
		default:
			t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := droplet.NewClient(droplet.ClientOptions{Token: "t", BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c, func() int { mu.Lock(); defer mu.Unlock(); return creates }
}

func TestRegisterProviderKeyRetriesAfterAFailure(t *testing.T) {
	t.Parallel()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	cloud, creates := keysAPI(t)
	r := &dropletNodeResource{data: &providerData{cloud: cloud, sshPublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))}}

	// The first node's create is cancelled (a timeout, Ctrl-C) while it registers the key.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.registerProviderKey(cancelled); err == nil {
		t.Fatal("registering with a cancelled context succeeded")
	}
	// The next node in the same run must not inherit that failure.
	var wg sync.WaitGroup
	fps := make([]string, 4)
	errs := make([]error, 4)
	for i := range fps {
		wg.Add(1)
		go func() { defer wg.Done(); fps[i], errs[i] = r.registerProviderKey(context.Background()) }()
	}
	wg.Wait()
	want := ssh.FingerprintLegacyMD5(sshPub)
	for i := range fps {
		if errs[i] != nil || fps[i] != want {
			t.Fatalf("register after a cancelled attempt: %q, %v; want %q", fps[i], errs[i], want)
		}
	}
	if n := creates(); n != 1 {
		t.Fatalf("the key was registered %d times, want once", n)
	}
}
