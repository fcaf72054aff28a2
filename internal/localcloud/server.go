package localcloud

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// apiError is an error the API reports to the client in DigitalOcean's error body shape.
type apiError struct {
	status  int
	id      string
	message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.id, e.message) }

func errNotFound() *apiError {
	return &apiError{http.StatusNotFound, "not_found", "The resource you were accessing could not be found."}
}

func errUnprocessable(format string, args ...any) *apiError {
	return &apiError{http.StatusUnprocessableEntity, "unprocessable_entity", fmt.Sprintf(format, args...)}
}

func errBadRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

// apiHandler returns an error instead of writing one, so every failure gets the same body.
type apiHandler func(w http.ResponseWriter, r *http.Request) error

const requestIDHeader = "X-Request-Id"

func (c *Cloud) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h apiHandler) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				c.writeError(w, err)
			}
		})
	}

	handle("GET /v2/account", c.getAccount)
	handle("GET /v2/regions", c.listRegions)
	handle("GET /v2/sizes", c.listSizes)
	handle("GET /v2/images", c.listImages)
	handle("GET /v2/images/{image}", c.getImage)
	handle("GET /v2/vpcs", c.listVPCs)
	handle("GET /v2/vpcs/{id}", c.getVPC)
	handle("POST /v2/vpcs", c.createVPC)
	handle("PUT /v2/vpcs/{id}", c.updateVPC)
	handle("PATCH /v2/vpcs/{id}", c.updateVPC)
	handle("DELETE /v2/vpcs/{id}", c.deleteVPC)

	handle("POST /v2/droplets", c.createDroplets)
	handle("GET /v2/droplets", c.listDroplets)
	handle("DELETE /v2/droplets", c.deleteDropletsByTag)
	handle("GET /v2/droplets/{id}", c.getDroplet)
	handle("DELETE /v2/droplets/{id}", c.deleteDroplet)

	handle("POST /v2/droplets/actions", c.postDropletActionByTag)
	handle("POST /v2/droplets/{id}/actions", c.postDropletAction)
	handle("GET /v2/droplets/{id}/actions", c.listDropletActions)
	handle("GET /v2/droplets/{id}/actions/{action}", c.getDropletAction)
	handle("GET /v2/actions", c.listActions)
	handle("GET /v2/actions/{action}", c.getAction)

	handle("GET /v2/account/keys", c.listKeys)
	handle("POST /v2/account/keys", c.createKey)
	handle("GET /v2/account/keys/{key}", c.getKey)
	handle("PUT /v2/account/keys/{key}", c.updateKey)
	handle("DELETE /v2/account/keys/{key}", c.deleteKey)

	handle("GET /v2/tags", c.listTags)
	handle("POST /v2/tags", c.createTag)
	handle("GET /v2/tags/{name}", c.getTag)
	handle("DELETE /v2/tags/{name}", c.deleteTag)
	handle("POST /v2/tags/{name}/resources", c.tagResources)
	handle("DELETE /v2/tags/{name}/resources", c.untagResources)

	handle("GET /v2/firewalls", c.listFirewalls)
	handle("POST /v2/firewalls", c.createFirewall)
	handle("GET /v2/firewalls/{id}", c.getFirewall)
	handle("PUT /v2/firewalls/{id}", c.updateFirewall)
	handle("DELETE /v2/firewalls/{id}", c.deleteFirewall)

	// Anything else, including a known path with an unknown method, is a JSON 404 like DO's.
	handle("/", func(http.ResponseWriter, *http.Request) error { return errNotFound() })

	return c.withRequestID(c.withFaults(c.withRateLimit(c.withAuth(mux))))
}

func (c *Cloud) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(requestIDHeader, newRequestID())
		next.ServeHTTP(w, r)
	})
}

func (c *Cloud) withAuth(next http.Handler) http.Handler {
	want := []byte("Bearer " + c.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			c.writeError(w, &apiError{http.StatusUnauthorized, "Unauthorized", "Unable to authenticate you"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (c *Cloud) withRateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allowed, remaining, reset := c.limiter.take(time.Now())
		h := w.Header()
		if h.Get("Ratelimit-Limit") == "" { // real manners report the hourly window (withFaults)
			h.Set("Ratelimit-Limit", strconv.Itoa(c.limiter.limit))
			h.Set("Ratelimit-Remaining", strconv.Itoa(remaining))
			h.Set("Ratelimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		}
		if !allowed {
			h.Set("Retry-After", strconv.Itoa(max(1, int(time.Until(reset).Seconds()+0.999))))
			c.writeError(w, &apiError{http.StatusTooManyRequests, "too_many_requests", "API Rate limit exceeded."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// rateLimiter is a fixed window (a minute unless set), which is how DO's limits behave
// closely enough for clients that back off on 429 and read ratelimit-reset.
type rateLimiter struct {
	limit       int
	window      time.Duration
	mu          sync.Mutex
	windowStart time.Time
	used        int
}

func (l *rateLimiter) take(now time.Time) (allowed bool, remaining int, reset time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	length := l.window
	if length == 0 {
		length = time.Minute
	}
	window := now.Truncate(length)
	if !window.Equal(l.windowStart) {
		l.windowStart, l.used = window, 0
	}
	reset = window.Add(length)
	if l.used >= l.limit {
		return false, 0, reset
	}
	l.used++
	return true, l.limit - l.used, reset
}

func (c *Cloud) writeError(w http.ResponseWriter, err error) {
	var apiErr *apiError
	if !errors.As(err, &apiErr) {
		c.logf("internal error: %v", err)
		apiErr = &apiError{http.StatusInternalServerError, "server_error", "Server was unable to give you a response."}
	}
	writeJSON(w, apiErr.status, map[string]string{
		"id":         apiErr.id,
		"message":    apiErr.message,
		"request_id": w.Header().Get(requestIDHeader),
	})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(body); err != nil {
		// The client went away; nothing useful is left to do.
		return
	}
}

// decodeBody reads a JSON request body into v; an empty body leaves v untouched.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return errBadRequest("could not read the request body")
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return errBadRequest("unable to parse the request body: %v", err)
	}
	return nil
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	s := hex.EncodeToString(b)
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// baseURL is the API root as the client addressed it, for links the client will follow.
func baseURL(r *http.Request) string {
	return "http://" + r.Host + "/"
}

func pathInt(r *http.Request, name string) (int, error) {
	n, err := strconv.Atoi(r.PathValue(name))
	if err != nil || n < 1 {
		return 0, errNotFound()
	}
	return n, nil
}
