package localcloud

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests need no Docker engine: the API layer alone, with a fault switch.

// apiOnly is the emulator's HTTP API over an empty account, without nodes.
func apiOnly(t *testing.T, m Manners, faults ...Fault) (*Cloud, *httptest.Server) {
	t.Helper()
	cfg := Config{Token: "tok", StateDir: t.TempDir(), Logf: t.Logf}.withDefaults()
	c := &Cloud{cfg: cfg, st: newState(), limiter: &rateLimiter{limit: cfg.RateLimitPerMinute}, faults: newFaultSwitch(faults, m)}
	srv := httptest.NewServer(c.routes())
	t.Cleanup(srv.Close)
	return c, srv
}

func get(t *testing.T, client *http.Client, url string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func TestFaultsFailTheRequestsTheyMatch(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		fault  Fault
		status int    // 0: no answer
		header string // a header the answer must carry
	}{
		"429 with DigitalOcean's headers": {fault: Fault{Kind: FaultRateLimit, RetryAfter: 7}, status: 429, header: "Retry-After"},
		"500":                             {fault: Fault{Kind: FaultServerError}, status: 500},
		"503":                             {fault: Fault{Kind: FaultUnavailable}, status: 503},
		"dropped connection":              {fault: Fault{Kind: FaultDrop}},
		"slow past the client's timeout":  {fault: Fault{Kind: FaultSlow, Delay: 2 * time.Second}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.fault.Match, tc.fault.Count = "GET /v2/regions", 1
			c, srv := apiOnly(t, Manners{}, tc.fault)
			// No keep-alive: Go's transport itself retries a GET whose reused connection dropped.
			client := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
			if resp, err := get(t, client, srv.URL+"/v2/sizes"); err != nil || resp.StatusCode != 200 {
				t.Fatalf("a path the fault does not match: %v, %v", resp, err)
			}
			resp, err := get(t, client, srv.URL+"/v2/regions")
			switch {
			case tc.status == 0 && err == nil:
				t.Fatalf("answered %d, want no answer", resp.StatusCode)
			case tc.status != 0 && (err != nil || resp.StatusCode != tc.status):
				t.Fatalf("answered %v, %v; want %d", resp, err, tc.status)
			}
			if tc.header != "" {
				if resp.Header.Get(tc.header) != "7" || resp.Header.Get("Ratelimit-Remaining") != "0" || resp.Header.Get("Ratelimit-Reset") == "" {
					t.Fatalf("429 headers: %v", resp.Header)
				}
			}
			if resp, err := get(t, client, srv.URL+"/v2/regions"); err != nil || resp.StatusCode != 200 {
				t.Fatalf("after the fault's count: %v, %v", resp, err)
			}
			if n := c.FaultsFired()[tc.fault.Kind]; n != 1 {
				t.Fatalf("fired %d times, want 1", n)
			}
		})
	}
}

// A fault "after" lets the request take effect and loses its answer.
func TestFaultAfterLosesTheAnswerNotTheRequest(t *testing.T) {
	t.Parallel()
	c, srv := apiOnly(t, Manners{}, Fault{Kind: FaultUnavailable, Match: "POST /v2/tags", After: true, Count: 1})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v2/tags", strings.NewReader(`{"name":"made"}`))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("POST with a lost answer: %v, %v; want 503", resp, err)
	}
	resp.Body.Close()
	if !c.st.hasTag("made") {
		t.Fatal("the request behind the lost answer did not take effect")
	}
}

func TestFaultFractionFailsAShare(t *testing.T) {
	t.Parallel()
	_, srv := apiOnly(t, Manners{}, Fault{Kind: FaultServerError, Fraction: 0.3})
	failed := 0
	for range 200 {
		if resp, err := get(t, http.DefaultClient, srv.URL+"/v2/sizes"); err == nil && resp.StatusCode == 500 {
			failed++
		}
	}
	if failed < 30 || failed > 90 {
		t.Fatalf("%d of 200 failed, want about 60", failed)
	}
}

// Real manners: the hourly limit with DigitalOcean's headers.
func TestRealMannersLimitPerHour(t *testing.T) {
	t.Parallel()
	_, srv := apiOnly(t, Manners{PerHour: 3})
	for i := range 3 {
		resp, err := get(t, http.DefaultClient, srv.URL+"/v2/sizes")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: %v, %v", i, resp, err)
		}
		if resp.Header.Get("Ratelimit-Limit") != "3" || resp.Header.Get("Ratelimit-Remaining") != strconv.Itoa(2-i) {
			t.Fatalf("request %d: headers %v, want the hourly window's", i, resp.Header)
		}
	}
	resp, err := get(t, http.DefaultClient, srv.URL+"/v2/sizes")
	if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("request past the hourly limit: %v, %v; want 429 with Retry-After", resp, err)
	}
}

func TestParseFaults(t *testing.T) {
	t.Parallel()
	got, err := ParseFaults("503:0.2; drop:1:match=POST /v2/droplets:after=true:count=1;slow:delay=2m;429:retry_after=3")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Fraction != 0.2 || got[1].Match != "POST /v2/droplets" || !got[1].After || got[1].Count != 1 ||
		got[2].Delay != 2*time.Minute || got[3].RetryAfter != 3 {
		t.Fatalf("ParseFaults = %+v", got)
	}
	for _, bad := range []string{"418", "503:2", "drop:colour=red"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted", bad)
		}
	}
}
