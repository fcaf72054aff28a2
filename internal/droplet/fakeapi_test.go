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
// (create, get, list by tag, untag, delete a tag), holding droplets in memory. loseCreates makes the next N
// creates succeed but answer 503, as when a proxy or the API fails after the droplet
// was made.
type dropletsAPI struct {
	t           *testing.T
	mu          sync.Mutex
	droplets    []map[string]any
	tags        []string // the account's tags: made by creates, deleted only by DELETE
	posts       int
	loseCreates int
	// dropCreates makes the next N creates succeed but drop the connection unanswered.
	dropCreates int
	// lag hides a new droplet from list-by-tag for this long after its create.
	lag     time.Duration
	created map[int]time.Time
	// throttle answers the next N requests 429 with Retry-After: retryAfter seconds.
	throttle   int
	retryAfter int
	throttled  []time.Time
	url        string
	// gets and lists count the requests for one droplet and for the list.
	gets, lists int
}

func newDropletsAPI(t *testing.T) (*dropletsAPI, *Client) {
	t.Helper()
	api := &dropletsAPI{t: t, created: map[int]time.Time{}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	api.url = srv.URL
	return api, api.client()
}

// client is a new Client of this API: another provider run.
func (a *dropletsAPI) client() *Client {
	c, err := NewClient(ClientOptions{Token: "t", BaseURL: a.url, LeaseTTL: testLeaseTTL, ListLag: 2 * time.Second,
		Retry: RetryPolicy{MaxAttempts: 4, MinWait: 5 * time.Millisecond, MaxWait: 50 * time.Millisecond}})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { c.lease.halt() })
	return c
}

func (a *dropletsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if a.throttle > 0 {
		a.throttle--
		a.throttled = append(a.throttled, time.Now())
		w.Header().Set("Retry-After", strconv.Itoa(a.retryAfter))
		w.Header().Set("Ratelimit-Limit", "250")
		w.Header().Set("Ratelimit-Remaining", "0")
		w.Header().Set("Ratelimit-Reset", strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10))
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"id":"too_many_requests","message":"API Rate limit exceeded."}`))
		return
	}
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
		for _, t := range req.Tags {
			if !slices.Contains(a.tags, t) {
				a.tags = append(a.tags, t)
			}
		}
		d := map[string]any{"id": 100 + len(a.droplets), "name": req.Name, "status": "new", "size_slug": req.Size,
			"region": map[string]any{"slug": req.Region}, "tags": req.Tags}
		a.droplets = append(a.droplets, d)
		a.created[d["id"].(int)] = time.Now()
		if a.dropCreates > 0 {
			a.dropCreates--
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		if a.loseCreates > 0 {
			a.loseCreates--
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"id":"service_unavailable","message":"upstream timed out"}`))
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]any{"droplet": d})
	case r.Method == http.MethodGet && r.URL.Path == "/v2/droplets":
		a.lists++
		tag := r.URL.Query().Get("tag_name")
		var out []map[string]any
		for _, d := range a.droplets {
			if tag != "" && time.Since(a.created[d["id"].(int)]) < a.lag {
				continue // not indexed by tag yet
			}
			if tag == "" || slices.Contains(tagsOf(d), tag) {
				out = append(out, d)
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"droplets": out, "meta": map[string]any{"total": len(out)}})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v2/droplets/"):
		id, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/v2/droplets/"))
		if a.dropletLocked(id) == nil {
			a.notFound(w)
			return
		}
		a.droplets = slices.DeleteFunc(a.droplets, func(d map[string]any) bool { return d["id"] == id })
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/droplets/"):
		a.gets++
		id, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/v2/droplets/"))
		if d := a.dropletLocked(id); d != nil {
			_ = json.NewEncoder(w).Encode(map[string]any{"droplet": d})
			return
		}
		a.notFound(w)
	case r.Method == http.MethodPost && r.URL.Path == "/v2/tags":
		var req struct {
			Name string `json:"name"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			a.t.Errorf("tag body: %v", err)
		}
		if !slices.Contains(a.tags, req.Name) {
			a.tags = append(a.tags, req.Name)
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"tag": map[string]any{"name": req.Name}})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/tags/"):
		tag := strings.TrimPrefix(r.URL.Path, "/v2/tags/")
		if !slices.Contains(a.tags, tag) {
			a.notFound(w)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"tag": map[string]any{"name": tag}})
	case r.Method == http.MethodGet && r.URL.Path == "/v2/tags":
		var out []map[string]any
		for _, t := range a.tags {
			n := 0
			for _, d := range a.droplets {
				if slices.Contains(tagsOf(d), t) {
					n++
				}
			}
			out = append(out, map[string]any{"name": t, "resources": map[string]any{"count": n, "droplets": map[string]any{"count": n}}})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"tags": out, "meta": map[string]any{"total": len(out)}})
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v2/tags/") && strings.HasSuffix(r.URL.Path, "/resources"):
		tag := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/tags/"), "/resources")
		var req struct {
			Resources []struct {
				ID string `json:"resource_id"`
			} `json:"resources"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			a.t.Errorf("tag resources body: %v", err)
		}
		if !slices.Contains(a.tags, tag) {
			a.notFound(w)
			return
		}
		for _, res := range req.Resources {
			id, _ := strconv.Atoi(res.ID)
			d := a.dropletLocked(id)
			if d == nil {
				a.notFound(w)
				return
			}
			if !slices.Contains(tagsOf(d), tag) {
				d["tags"] = append(slices.Clone(tagsOf(d)), tag)
			}
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v2/tags/") && strings.HasSuffix(r.URL.Path, "/resources"):
		tag := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/tags/"), "/resources")
		var req struct {
			Resources []struct {
				ID string `json:"resource_id"`
			} `json:"resources"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			a.t.Errorf("untag body: %v", err)
		}
		if !slices.Contains(a.tags, tag) {
			a.notFound(w)
			return
		}
		for _, res := range req.Resources {
			id, _ := strconv.Atoi(res.ID)
			d := a.dropletLocked(id)
			if d == nil {
				a.notFound(w)
				return
			}
			d["tags"] = slices.DeleteFunc(slices.Clone(tagsOf(d)), func(t string) bool { return t == tag })
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v2/tags/"):
		tag := strings.TrimPrefix(r.URL.Path, "/v2/tags/")
		if !slices.Contains(a.tags, tag) {
			a.notFound(w)
			return
		}
		a.tags = slices.DeleteFunc(a.tags, func(t string) bool { return t == tag })
		for _, d := range a.droplets {
			d["tags"] = slices.DeleteFunc(slices.Clone(tagsOf(d)), func(t string) bool { return t == tag })
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		a.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotImplemented)
	}
}

func (a *dropletsAPI) dropletLocked(id int) map[string]any {
	for _, d := range a.droplets {
		if d["id"] == id {
			return d
		}
	}
	return nil
}

func (a *dropletsAPI) notFound(w http.ResponseWriter) {
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"id":"not_found","message":"The resource you were accessing could not be found."}`))
}

// hasTag reports whether the account knows the tag.
func (a *dropletsAPI) hasTag(tag string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.tags, tag)
}

func (a *dropletsAPI) count() (droplets, posts int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.droplets), a.posts
}

// testLeaseTTL is the fake clients' lease: renewed every 100ms.
const testLeaseTTL = 300 * time.Millisecond

// leaseTags are the account's run leases.
func (a *dropletsAPI) leaseTags() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(a.tags), func(t string) bool { return !strings.HasPrefix(t, LeaseTagPrefix) })
}

// tagsOf is a fake droplet's tags.
func tagsOf(d map[string]any) []string {
	tags, _ := d["tags"].([]string)
	return tags
}
