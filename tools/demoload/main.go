// Command demoload shows, live, what a client of the demo app sees while it switches
// colors: it sends requests (internal/loadgen) to the app's endpoints and prints one line
// a second (requests/s, total, failed, and each color's share of the answers), then a
// summary. It exits 1 if any request failed.
//
//	demoload [flags] http://NODE:PORT ...
//
// Signals drive it from a script that runs it in the background around an apply:
// SIGUSR1 marks the switch's start, SIGUSR2 its end (the run goes on for -tail, then
// ends), SIGINT or SIGTERM end it at once. Only loopback and private addresses are asked
// (the local cloud's nodes): it is a demo tool, not a load tester for other hosts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/loadgen"
)

func main() {
	// First, so that a signal sent as soon as the process exists is not fatal.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGTERM)

	rate := flag.Float64("rate", 500, "requests per second over all endpoints (0: as fast as the clients go)")
	concurrency := flag.Int("concurrency", 8, "concurrent clients")
	maxDuration := flag.Duration("max", 10*time.Minute, "end the run after this long in any case")
	tail := flag.Duration("tail", 2*time.Second, "how long the run goes on after SIGUSR2")
	ready := flag.String("ready", "", "create this file once the load runs")
	newConn := flag.Bool("new-conn", false, "open a new connection for every request (no kept-alive connection, so no silent resend by the client)")
	flag.Parse()
	if err := checkTargets(flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "demoload:", err)
		os.Exit(2)
	}
	ok, err := run(sigs, loadgen.Options{
		Targets: flag.Args(), Concurrency: *concurrency, Rate: *rate,
		MaxRequests: 100_000_000, MaxDuration: *maxDuration, DisableKeepAlive: *newConn,
	}, *tail, *ready)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demoload:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// run shows the load until a signal or its bounds end it; ok is false if a request failed.
func run(sigs <-chan os.Signal, opts loadgen.Options, tail time.Duration, ready string) (ok bool, err error) {
	load, err := loadgen.Start(context.Background(), opts)
	if err != nil {
		return false, err
	}
	if ready != "" {
		if err := os.WriteFile(ready, nil, 0o644); err != nil {
			load.Stop()
			return false, err
		}
	}
	start := time.Now()
	d := newDisplay()
	seen, last := 0, start
	flush := func() {
		results := load.Results(seen)
		seen += len(results)
		now := time.Now()
		fmt.Println(d.second(now.Sub(start), now.Sub(last), results))
		last = now
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var end <-chan time.Time
loop:
	for {
		select {
		case <-tick.C:
			flush()
		case s := <-sigs:
			switch s {
			case syscall.SIGUSR1:
				load.Mark(markSwitch)
				fmt.Println(event(time.Since(start), "the switch began (terraform apply)"))
			case syscall.SIGUSR2:
				load.Mark(markSwitched)
				fmt.Println(event(time.Since(start), "the apply ended"))
				end = time.After(tail)
			default:
				break loop
			}
		case <-end:
			break loop
		case <-load.Done():
			break loop
		}
	}
	rep := load.Stop()
	if time.Since(last) > 100*time.Millisecond {
		flush()
	}
	fmt.Println("[load] " + summary(rep))
	return rep.Failed == 0, nil
}

// checkTargets refuses anything but http URLs of loopback or private addresses.
func checkTargets(targets []string) error {
	if len(targets) == 0 {
		return errors.New("no endpoint given (usage: demoload [flags] http://NODE:PORT ...)")
	}
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil || u.Scheme != "http" {
			return fmt.Errorf("%q is not an http URL", t)
		}
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() == "localhost" {
			ip = net.IPv4(127, 0, 0, 1)
		}
		if ip == nil || (!ip.IsLoopback() && !ip.IsPrivate()) {
			return fmt.Errorf("%s is not a loopback or private address: demoload only asks the local cloud's nodes", u.Host)
		}
	}
	return nil
}
