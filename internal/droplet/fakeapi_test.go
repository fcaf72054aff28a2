package droplet

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// dropletsAPI is the droplets part of the DigitalOcean API as the client uses it
// (create, get, list by tag, delete a tag), holding droplets in memory. loseCreates makes the next N
// creates succeed but answer 503, as when a proxy or the API fails after the droplet
// was made.
type dropletsAPI struct {
	t           *testing.T
	mu          sync.Mutex
	droplets    []map[string]any
	posts       int
	loseCreates int
}

func newDropletsAPI(t *testing.T) (*dropletsAPI, *Client) {
	t.Helper()
	api := &dropletsAPI{t: t}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c, err := NewClient(ClientOptions{Token: "t", BaseURL: srv.URL,
		Retry: RetryPolicy{MaxAttempts: 4, MinWait: 5 * time.Millisecond, MaxWait: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return api, c
}

func (a *dropletsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2/droplets":
		var req struct {
			Name   string   `json:"name"`
			Region string   `json:"region"`
			Size   string   `json:"size"`
			Tags   []string `json:"tags"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			a.t.Errorf("create body: %v", err)
		}
		a.posts++
		d := map[string]any{"id": 100 + len(a.droplets), "name": req.Name, "status": "new", "size_slug": req.Size,
			"region": map[string]any{"slug": req.Region}, "tags": req.Tags}
		a.droplets = append(a.droplets, d)
		if a.loseCreates > 0 {
			a.loseCreates--
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"id":"service_unavailable","message":"upstream timed out"}`))
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]any{"droplet": d})
	case r.Method == http.MethodGet && r.URL.Path == "/v2/droplets":
		tag := r.URL.Query().Get("tag_name")
		var out []map[string]any
		for _, d := range a.droplets {
			if tag == "" || slices.Contains(d["tags"].([]string), tag) {
				out = append(out, d)
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"droplets": out, "meta": map[string]any{"total": len(out)}})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/droplets/"):
		id, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/v2/droplets/"))
		for _, d := range a.droplets {
			if d["id"] == id {
				_ = json.NewEncoder(w).Encode(map[string]any{"droplet": d})
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"id":"not_found","message":"The resource you were accessing could not be found."}`))
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v2/tags/"):
		tag := strings.TrimPrefix(r.URL.Path, "/v2/tags/")
		found := false
		for _, d := range a.droplets {
			tags := d["tags"].([]string)
			if i := slices.Index(tags, tag); i >= 0 {
				d["tags"], found = slices.Delete(slices.Clone(tags), i, i+1), true
			}
		}
		if !found {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"id":"not_found","message":"The resource you were accessing could not be found."}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		a.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotImplemented)
	}
}

func (a *dropletsAPI) count() (droplets, posts int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.droplets), a.posts
}
