package haproxy

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

// TestRealProxy runs the rendered config in HAProxy 2.6 in front of two blue (v1) and
// two green (v2) demo apps and checks what clients of the service see while the Runtime
// API switches, splits and loses instances.
func TestRealProxy(t *testing.T) {
	f := newProxyFixture(t)
	f.runApp("blue1", Blue, appImageV1)
	f.runApp("blue2", Blue, appImageV1)
	f.runApp("green1", Green, appImageV2)
	f.runApp("green2", Green, appImageV2)
	f.runProxy(Blue)
	ctx := context.Background()
	mapPath := f.config.MapPath

	ready := waitFor(t, 15*time.Second, "two healthy servers per color", func() bool {
		return f.healthy(Blue) == 2 && f.healthy(Green) == 2
	})
	t.Logf("all four instances passed their checks %s after the admin socket answered", ready.Round(time.Millisecond))

	t.Run("runtime API", func(t *testing.T) {
		info, err := f.api.ShowInfo(ctx)
		if err != nil || !strings.HasPrefix(info.Version, "2.6.") {
			t.Fatalf("show info: %+v, %v; want version 2.6.x", info, err)
		}
		routing, err := f.api.ReadRouting(ctx, mapPath)
		if err != nil || routing != (Routing{Active: Blue}) {
			t.Errorf("routing at start: %+v, %v; want blue, canary 0", routing, err)
		}
		var complaint *CommandError
		if err := f.api.SetMap(ctx, mapPath, "nokey", "green"); !errors.As(err, &complaint) {
			t.Errorf("set map of a missing key: %v, want a CommandError", err)
		}
		if _, err := f.api.ShowMap(ctx, "/nonexistent.map"); !errors.As(err, &complaint) {
			t.Errorf("show map of an unknown map: %v, want a CommandError", err)
		}
		if _, err := f.api.ShowServersState(ctx, "nosuch"); !errors.As(err, &complaint) {
			t.Errorf("show servers state of an unknown backend: %v, want a CommandError", err)
		}
		if err := f.api.SetServerState(ctx, "green", "nosuch", StateDrain); !errors.As(err, &complaint) {
			t.Errorf("set server of an unknown server: %v, want a CommandError", err)
		}
		if _, err := f.api.Execute(ctx, "show nonsense"); err != nil {
			t.Errorf("Execute returns HAProxy's answer, not an error: %v", err)
		}

		// A key added at run time is visible to show map and goes away with del map.
		if err := f.api.AddMap(ctx, mapPath, "extra", "1"); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := f.api.MapValue(ctx, mapPath, "extra"); err != nil || !ok || v != "1" {
			t.Errorf("after add map: %q %v %v", v, ok, err)
		}
		if err := f.api.DelMap(ctx, mapPath, "extra"); err != nil {
			t.Fatal(err)
		}
		if err := f.api.DelMap(ctx, mapPath, "extra"); !errors.As(err, &complaint) {
			t.Errorf("del map of a deleted key: %v, want a CommandError", err)
		}

		// Drain one green server and bring it back; both show in servers state.
		states, err := f.api.ShowServersState(ctx, "green")
		if err != nil {
			t.Fatal(err)
		}
		var server string
		for _, s := range states {
			if s.Address == f.appAddress("green1") {
				server = s.Server
			}
		}
		if server == "" {
			t.Fatalf("green1 (%s) in no slot of %+v", f.appAddress("green1"), states)
		}
		for _, state := range []AdminState{StateDrain, StateReady} {
			if err := f.api.SetServerState(ctx, "green", server, state); err != nil {
				t.Fatal(err)
			}
			states, err := f.api.ShowServersState(ctx, "green")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range states {
				if s.Server == server && s.AdminState.Draining() != (state == StateDrain) {
					t.Errorf("after state %s: admin flags %#x", state, int(s.AdminState))
				}
			}
		}
		waitFor(t, 5*time.Second, "green back to two healthy servers", func() bool { return f.healthy(Green) == 2 })

		// The monitor URI answers for the proxy itself.
		resp, err := http.Get(f.statsURL + f.config.MonitorPath)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("monitor %s: %v %v", f.config.MonitorPath, resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	})

	t.Run("switch blue green blue without a failed request", func(t *testing.T) {
		// The gate the resource applies: the target color's servers passed their checks.
		if n := f.healthy(Green); n != 2 {
			t.Fatalf("show stat: %d healthy green servers before the switch, want 2", n)
		}
		traffic := startLoad(f.url, 20000, 30*time.Second)
		traffic.awaitCount(t, 200, 10*time.Second)

		switchTo := func(color Color) (time.Time, time.Time) {
			start := time.Now()
			if err := f.api.SetActive(ctx, mapPath, color); err != nil {
				t.Fatal(err)
			}
			return start, time.Now()
		}
		toGreenStart, toGreenDone := switchTo(Green)
		traffic.awaitCount(t, traffic.count()+400, 10*time.Second)
		toBlueStart, toBlueDone := switchTo(Blue)
		traffic.awaitCount(t, traffic.count()+400, 10*time.Second)
		answers := traffic.Stop()

		if failed := failures(answers); len(failed) > 0 {
			t.Errorf("%d of %d requests failed across the switches: %v", len(failed), len(answers), failed)
		}
		expect := func(phase string, color Color, version string, in func(answer) bool) {
			n := 0
			for _, a := range answers {
				if a.err != nil || !in(a) {
					continue
				}
				n++
				if a.Color != color || a.Version != version {
					t.Errorf("%s: request at %s answered by %s %s, want %s %s", phase,
						a.start.Format("15:04:05.000"), a.Color, a.Version, color, version)
					return
				}
			}
			if n < 100 {
				t.Errorf("%s: only %d requests, too few to judge", phase, n)
			}
		}
		expect("before the switch", Blue, "1.0.0", func(a answer) bool { return a.end.Before(toGreenStart) })
		expect("after the switch", Green, "2.0.0", func(a answer) bool { return a.start.After(toGreenDone) && a.end.Before(toBlueStart) })
		expect("after the switch back", Blue, "1.0.0", func(a answer) bool { return a.start.After(toBlueDone) })

		firstOf := func(color Color, after time.Time) time.Duration {
			for _, a := range answers {
				if a.err == nil && a.Color == color && a.end.After(after) {
					return a.end.Sub(after)
				}
			}
			return time.Hour
		}
		toGreen, toBlue := firstOf(Green, toGreenStart), firstOf(Blue, toBlueStart)
		t.Logf("%d requests, %d failed; first green answer %s after set map was sent (set map took %s), first blue answer %s after the switch back",
			len(answers), len(failures(answers)), toGreen.Round(time.Microsecond), toGreenDone.Sub(toGreenStart).Round(time.Microsecond), toBlue.Round(time.Microsecond))
		if toGreen > time.Second || toBlue > time.Second {
			t.Errorf("new color first answered %s / %s after set map, want within 1s", toGreen, toBlue)
		}
	})

	t.Run("canary 20 percent", func(t *testing.T) {
		if err := f.api.SetCanary(ctx, mapPath, 20); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.api.SetCanary(ctx, mapPath, 0) })
		const requests = 2000
		traffic := startLoad(f.url, requests, 60*time.Second)
		traffic.awaitCount(t, requests, 60*time.Second)
		answers := traffic.Stop()
		if failed := failures(answers); len(failed) > 0 {
			t.Errorf("%d of %d requests failed: %v", len(failed), len(answers), failed)
		}
		green := 0
		for _, a := range answers {
			if a.Color == Green {
				green++
			}
		}
		share := float64(green) / float64(len(answers)) * 100
		t.Logf("canary 20: %d of %d requests (%.1f %%) went to green", green, len(answers), share)
		if len(answers) < requests || share < 15 || share > 25 {
			t.Errorf("canary 20: %.1f %% of %d requests went to green, want 20 ± 5 over at least %d", share, len(answers), requests)
		}
	})

	// onlyBlueAnswers puts every green server in maintenance, sends 500 requests after set
	// routed them, and checks that none failed and blue answered every one.
	onlyBlueAnswers := func(t *testing.T, set func() (undo func())) {
		var greens []string
		rows, err := f.api.ShowStat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Proxy == "green" && r.Healthy() {
				greens = append(greens, r.Server)
			}
		}
		setGreens := func(state AdminState) {
			for _, server := range greens {
				if err := f.api.SetServerState(ctx, "green", server, state); err != nil {
					t.Fatal(err)
				}
			}
		}
		setGreens(StateMaint)
		defer func() {
			setGreens(StateReady)
			waitFor(t, 5*time.Second, "green healthy again", func() bool { return f.healthy(Green) == len(greens) })
		}()
		defer set()()
		traffic := startLoad(f.url, 500, 30*time.Second)
		traffic.awaitCount(t, 500, 30*time.Second)
		answers := traffic.Stop()
		if failed := failures(answers); len(failed) > 0 {
			t.Errorf("%d of %d requests failed with every green server in maintenance: %v", len(failed), len(answers), failed)
		}
		for _, a := range answers {
			if a.err == nil && a.Color != Blue {
				t.Fatalf("answer from %s while every green server is in maintenance", a.Color)
			}
		}
	}

	t.Run("canary to a color with no usable server fails no request", func(t *testing.T) {
		onlyBlueAnswers(t, func() func() {
			if err := f.api.SetCanary(ctx, mapPath, 50); err != nil {
				t.Fatal(err)
			}
			return func() { _ = f.api.SetCanary(ctx, mapPath, 0) }
		})
	})

	t.Run("an active color with no usable server falls back to the other", func(t *testing.T) {
		// Green is live and every green server is down, as a release that degrades after
		// the switch: until it is rolled back, blue answers instead of a 503.
		onlyBlueAnswers(t, func() func() {
			if err := f.api.SetActive(ctx, mapPath, Green); err != nil {
				t.Fatal(err)
			}
			return func() { _ = f.api.SetActive(ctx, mapPath, Blue) }
		})
	})

	t.Run("new instance picked up from DNS", func(t *testing.T) {
		// What a swarm scale-up looks like to the proxy: one more task behind tasks.NAME-green.
		created := time.Now()
		f.runApp("green3", Green, appImageV2)
		address := f.appAddress("green3")
		start := time.Now() // the task runs: from here on, the time is the proxy's
		var inSlot time.Duration
		waitFor(t, 5*time.Second, "green3 to pass its checks", func() bool {
			rows, err := f.api.ShowStat(ctx)
			if err != nil {
				return false
			}
			for _, r := range rows {
				if r.Proxy == "green" && strings.HasPrefix(r.Address, address+":") {
					if inSlot == 0 {
						inSlot = time.Since(start)
					}
					return r.Healthy()
				}
			}
			return false
		})
		healthy := time.Since(start)
		t.Logf("green3: address in a server slot %s and healthy %s after its container started (%s to create and start it)",
			inSlot.Round(time.Millisecond), healthy.Round(time.Millisecond), start.Sub(created).Round(time.Millisecond))
		if healthy > 1500*time.Millisecond {
			t.Errorf("new instance healthy after %s, want about a second at most", healthy)
		}

		// An instance failing its check is in a slot but never counted healthy.
		f.runApp("green4", Green, appImageV2, "START_UNHEALTHY=1")
		sick := f.appAddress("green4")
		waitFor(t, 5*time.Second, "green4 to be checked and found down", func() bool {
			rows, err := f.api.ShowStat(ctx)
			if err != nil {
				return false
			}
			for _, r := range rows {
				if r.Proxy == "green" && strings.HasPrefix(r.Address, sick+":") {
					return r.Status == "DOWN" && r.CheckCode == http.StatusServiceUnavailable
				}
			}
			return false
		})
		if n := f.healthy(Green); n != 3 {
			t.Errorf("%d healthy green servers, want 3 (green4 fails its check)", n)
		}
	})

	t.Run("stopping an instance of the live color fails no request", func(t *testing.T) {
		// What a swarm rolling update does to a task: SIGTERM, and the app closes its
		// keep-alive connections, racing requests the proxy is sending on them.
		if err := f.api.SetActive(ctx, mapPath, Green); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := f.api.SetActive(ctx, mapPath, Blue); err != nil {
				t.Error(err)
			}
		}()
		traffic := startLoad(f.url, 20000, 30*time.Second)
		traffic.awaitCount(t, 200, 10*time.Second)
		stopped := time.Now()
		grace := 5
		if err := f.docker.ContainerStop(ctx, f.apps["green1"], container.StopOptions{Timeout: &grace}); err != nil {
			t.Fatal(err)
		}
		// Past the DNS hold and the health checks, so requests meet every state.
		traffic.keepGoing(t, 2*time.Second, 200)
		answers := traffic.Stop()
		if failed := failures(answers); len(failed) > 0 {
			t.Errorf("%d of %d requests failed while an instance stopped: %v", len(failed), len(answers), failed)
		}
		after := 0
		for _, a := range answers {
			if a.start.After(stopped) {
				after++
			}
		}
		t.Logf("stopped green1: %d requests, %d after the stop, %d failed, slowest answer after the stop %s",
			len(answers), after, len(failures(answers)), slowest(answers, stopped).Round(time.Millisecond))
	})

	t.Run("killing one of two blue instances fails no request", func(t *testing.T) {
		traffic := startLoad(f.url, 20000, 30*time.Second)
		traffic.awaitCount(t, 200, 10*time.Second)
		killed := time.Now()
		if err := f.docker.ContainerKill(ctx, f.apps["blue2"], "KILL"); err != nil {
			t.Fatal(err)
		}
		down := waitFor(t, 10*time.Second, "one healthy blue server", func() bool { return f.healthy(Blue) == 1 })
		// Keep the traffic going past the DNS hold, so requests meet the proxy in every
		// state: the server still listed, checked down, gone from DNS.
		traffic.keepGoing(t, 2*time.Second, 200)
		answers := traffic.Stop()
		if failed := failures(answers); len(failed) > 0 {
			t.Errorf("%d of %d requests failed after killing an instance: %v", len(failed), len(answers), failed)
		}
		after, failedAfter := 0, 0
		for _, a := range answers {
			if a.start.After(killed) && a.err != nil {
				failedAfter++
			}
			if a.start.After(killed) && a.err == nil {
				after++
				if a.Color != Blue {
					t.Errorf("request after the kill answered by %s", a.Color)
					break
				}
			}
		}
		rows, err := f.api.ShowStat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Proxy == "blue" && r.Type == TypeBackend {
				t.Logf("killed blue2: %d requests after the kill, %d failed, slowest answer %s; not counted healthy %s after the kill; blue backend retries %d, redispatches %d",
					after+failedAfter, failedAfter, slowest(answers, killed).Round(time.Millisecond), down.Round(time.Millisecond), r.Retries, r.Redispatches)
			}
		}
		if after+failedAfter < 100 {
			t.Errorf("only %d requests after the kill, too few to judge", after+failedAfter)
		}
	})

	t.Run("active color survives a proxy restart", func(t *testing.T) {
		// What the resource does on a switch: the map file for the next process, then
		// set map for the running one.
		mapFile := filepath.Join(f.hostDir(filepath.Dir(mapPath)), filepath.Base(mapPath))
		write := func(_ context.Context, content string) error { return os.WriteFile(mapFile, []byte(content), 0o644) }
		if err := f.api.ApplyRouting(ctx, mapPath, Routing{Active: Green}, write); err != nil {
			t.Fatal(err)
		}
		if a := get(ctx, http.DefaultClient, f.url); a.err != nil || a.Color != Green {
			t.Fatalf("after ApplyRouting: %+v, want an answer from green", a)
		}
		if err := f.docker.ContainerRestart(ctx, f.proxyID, container.StopOptions{}); err != nil {
			t.Fatal(err)
		}
		f.awaitProxy()
		if got, err := f.api.ReadRouting(ctx, mapPath); err != nil || got.Active != Green {
			t.Fatalf("after restart the map says %+v, %v; want green", got, err)
		}
		waitFor(t, 10*time.Second, "green healthy after the restart", func() bool { return f.healthy(Green) >= 1 })
		a := get(ctx, http.DefaultClient, f.url)
		if a.err != nil || a.Color != Green {
			t.Errorf("after restart: %+v, want an answer from green", a)
		}
	})

	t.Run("a reload fails no request and reloads routing from the map file", func(t *testing.T) {
		// The map file says green (the previous step wrote it); memory says blue, as
		// after a set map whose file write never happened.
		if err := f.api.SetActive(ctx, mapPath, Blue); err != nil {
			t.Fatal(err)
		}
		before, err := f.api.ShowInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		traffic := startLoad(f.url, 100000, 30*time.Second)
		traffic.awaitCount(t, 200, 10*time.Second)
		state, err := f.api.ServersStateFile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.writeFile(filepath.Join(f.hostDir(filepath.Dir(f.config.ServerStateFile)), filepath.Base(f.config.ServerStateFile)), state)
		// SIGUSR2 to the master (PID 1): a new worker takes over the listeners, which
		// the old one hands over through the admin socket (expose-fd listeners).
		if err := f.docker.ContainerKill(ctx, f.proxyID, "USR2"); err != nil {
			t.Fatal(err)
		}
		reloaded := waitFor(t, 10*time.Second, "a new worker", func() bool {
			info, err := f.api.ShowInfo(ctx)
			return err == nil && info.Pid != before.Pid
		})
		traffic.keepGoing(t, time.Second, 200)
		answers := traffic.Stop()
		if failed := failures(answers); len(failed) > 0 {
			t.Errorf("%d of %d requests failed across a reload: %v", len(failed), len(answers), failed)
		}
		routing, err := f.api.ReadRouting(ctx, mapPath)
		if err != nil || routing.Active != Green {
			t.Errorf("after the reload the map says %+v, %v; want green, from the file", routing, err)
		}
		last := answers[len(answers)-1]
		if last.Color != Green {
			t.Errorf("last answer after the reload from %s, want green", last.Color)
		}
		t.Logf("reload: %d requests, %d failed; new worker answering %s after the signal; routing back to the file's %s",
			len(answers), len(failures(answers)), reloaded.Round(time.Millisecond), routing.Active)
	})
}

// TestRealProxyBeforeTheOtherColorExists is a first deploy: tasks.NAME-green has no
// address at all (Docker's DNS forwards the name and gets no answer), yet blue serves,
// and a green task that appears is picked up.
func TestRealProxyBeforeTheOtherColorExists(t *testing.T) {
	f := newProxyFixture(t)
	f.runApp("blue1", Blue, appImageV1)
	f.runProxy(Blue)
	ctx := context.Background()
	waitFor(t, 15*time.Second, "blue healthy", func() bool { return f.healthy(Blue) == 1 })

	// A canary share too: with no green it must stay on blue.
	if err := f.api.SetCanary(ctx, f.config.MapPath, 30); err != nil {
		t.Fatal(err)
	}
	traffic := startLoad(f.url, 1000, 30*time.Second)
	traffic.awaitCount(t, 1000, 30*time.Second)
	answers := traffic.Stop()
	if failed := failures(answers); len(failed) > 0 {
		t.Errorf("%d of %d requests failed with no green at all: %v", len(failed), len(answers), failed)
	}
	for _, a := range answers {
		if a.err == nil && a.Color != Blue {
			t.Fatalf("answer from %s with no green task", a.Color)
		}
	}

	f.runApp("green1", Green, appImageV2)
	started := time.Now()
	waitFor(t, 10*time.Second, "the first green task to pass its checks", func() bool { return f.healthy(Green) == 1 })
	t.Logf("first green task healthy %s after it started (the name had no address before)", time.Since(started).Round(time.Millisecond))
}
