// Command demo-app is the small microservice the local cloud serves for demos and tests:
// `/` answers its version and color, `/health` answers 200 while it is healthy.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	addr := flag.String("listen", envOr("LISTEN", ":8080"), "address to serve on")
	flag.Parse()

	color := envOr("COLOR", "none")
	hostname, _ := os.Hostname()
	var healthy atomic.Bool
	healthy.Store(os.Getenv("START_UNHEALTHY") == "")

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

	server := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("demo-app %s (%s) listening on %s", version, color, *addr)
	log.Fatal(server.ListenAndServe())
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
