// Command demo-app is the small microservice the local cloud serves for demos and tests:
// `/` answers its version and color, `/health` answers 200 while it is healthy.
// `demo-app -check` is its Docker HEALTHCHECK; `-get URL` and `-post URL` make one request
// and print the answer, for tests that must ask from inside a network (the image has no
// shell or curl).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	addr := flag.String("listen", envOr("LISTEN", ":8080"), "address to serve on")
	check := flag.Bool("check", false, "exit 0 if the running app's /health answers 200 (HEALTHCHECK)")
	get := flag.String("get", "", "GET this URL, print the body, exit 0 on a 2xx answer")
	post := flag.String("post", "", "POST to this URL, print the body, exit 0 on a 2xx answer")
	flag.Parse()
	var err error
	switch {
	case *check:
		_, port, perr := net.SplitHostPort(*addr)
		if perr != nil {
			err = perr
			break
		}
		_, err = request(http.MethodGet, "http://127.0.0.1:"+port+"/health")
	case *get != "":
		err = printAnswer(request(http.MethodGet, *get))
	case *post != "":
		err = printAnswer(request(http.MethodPost, *post))
	default:
		serve(*addr)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// serve runs the app until SIGTERM.
func serve(addr string) {
	color := envOr("COLOR", "none")
	hostname, _ := os.Hostname()
	var healthy atomic.Bool
	healthy.Store(os.Getenv("START_UNHEALTHY") == "")
	// FAIL_AFTER makes an instance turn unhealthy that long after it started: a release
	// that degrades only after it took traffic, for rollback tests.
	if after := os.Getenv("FAIL_AFTER"); after != "" {
		d, err := time.ParseDuration(after)
		if err != nil {
			log.Fatalf("FAIL_AFTER: %v", err)
		}
		time.AfterFunc(d, func() { healthy.Store(false) })
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"version": version, "color": color, "hostname": hostname,
		})
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	// Lets fault tests make an instance fail its health check without killing it.
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		healthy.Store(false)
		w.WriteHeader(http.StatusNoContent)
	})

	server := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("demo-app %s (%s) listening on %s", version, color, addr)
	// On SIGTERM keep serving for SHUTDOWN_DELAY (while registries and proxies learn
	// that this instance is going), then finish the requests in flight and exit.
	shutdownDelay, err := time.ParseDuration(envOr("SHUTDOWN_DELAY", "0s"))
	if err != nil {
		log.Fatalf("SHUTDOWN_DELAY: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Printf("stopping: serving %s more, then draining", shutdownDelay)
		time.Sleep(shutdownDelay)
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdownCtx)
	}()
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// request makes one request and returns the body of a 2xx answer.
func request(method, url string) ([]byte, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, err
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return body, fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return body, nil
}

func printAnswer(body []byte, err error) error {
	_, _ = os.Stdout.Write(body)
	return err
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
