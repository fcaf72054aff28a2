package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/microswarm/terraform-provider-microswarm/internal/loadgen"
)

// Mark names: the switch's terraform apply began, and ended.
const (
	markSwitch   = "switch"
	markSwitched = "switched"
)

// display turns what a run has counted so far into one line per second, and its Report
// into a summary. It remembers which version each color answered with, for the labels.
type display struct {
	total, failed int
	versions      map[string]string // color -> the version it last answered with
}

func newDisplay() *display { return &display{versions: map[string]string{}} }

// second is the line for the results counted during the window (about a second) that
// ended elapsed into the run.
func (d *display) second(elapsed, window time.Duration, results []loadgen.Result) string {
	byColor := map[string]int{}
	failed := 0
	var examples []string
	for _, r := range results {
		if !r.OK() {
			failed++
			if len(examples) < 3 {
				examples = append(examples, fmt.Sprintf("%s: %s", r.Target, r.Err))
			}
			continue
		}
		byColor[r.Color]++
		d.versions[r.Color] = r.Version
	}
	d.total += len(results)
	d.failed += failed
	var b strings.Builder
	rate := 0
	if window > 0 {
		rate = int(float64(len(results))/window.Seconds() + 0.5)
	}
	fmt.Fprintf(&b, "[load %3s] %5d req/s  total %7d  failed %d ", clock(elapsed), rate, d.total, d.failed)
	ok := len(results) - failed
	for _, color := range slices.Sorted(maps.Keys(d.versions)) {
		share := 0
		if ok > 0 {
			share = (100*byColor[color] + ok/2) / ok
		}
		fmt.Fprintf(&b, " %s %s %3d%%", color, short(d.versions[color]), share)
	}
	for _, ex := range examples {
		fmt.Fprintf(&b, "\n[load %3s]   failed: %s", clock(elapsed), ex)
	}
	return b.String()
}

// event is the line for a moment of note, such as a mark.
func event(elapsed time.Duration, what string) string {
	return fmt.Sprintf("[load +%.1fs] %s", elapsed.Seconds(), what)
}

// summary says whether any request failed and when the new version took over: the first
// answer of the version that came after the switch began, counted from that moment.
func summary(rep loadgen.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d failed of %d requests", rep.Failed, rep.Requests)
	if rep.Retried > 0 {
		fmt.Fprintf(&b, " (%d sent again by the client after a kept-alive connection closed)", rep.Retried)
	}
	if rep.Duration > 0 {
		fmt.Fprintf(&b, " in %s (%.0f/s)", rep.Duration.Round(100*time.Millisecond), rep.RatePerSecond)
	}
	b.WriteString("; ")
	b.WriteString(takeover(rep))
	if rep.Failed > 0 {
		for _, k := range slices.Sorted(maps.Keys(rep.Errors)) {
			fmt.Fprintf(&b, "\n  %d x %s", rep.Errors[k], k)
		}
		for _, ex := range rep.Examples {
			fmt.Fprintf(&b, "\n  e.g. %s", ex)
		}
	}
	return b.String()
}

// takeover describes the change of version around the switch mark.
func takeover(rep loadgen.Report) string {
	before, err := rep.VersionsBetween(loadgen.MarkStart, markSwitch)
	if err != nil {
		return fmt.Sprintf("versions %s (no switch marked)", counts(rep.ByVersion))
	}
	after, _ := rep.VersionsBetween(markSwitch, loadgen.MarkEnd)
	old := most(before)
	var news []string
	for v := range after {
		if v != old {
			news = append(news, v)
		}
	}
	slices.Sort(news)
	switch {
	case old == "":
		return fmt.Sprintf("no answer before the switch; after it %s", counts(after))
	case len(news) == 0:
		return fmt.Sprintf("%s throughout: no other version answered", short(old))
	}
	parts := make([]string, 0, len(news))
	for _, v := range news {
		at, _ := rep.FirstAfter(markSwitch, v)
		parts = append(parts, fmt.Sprintf("%s -> %s at +%s", short(old), short(v), at.Round(100*time.Millisecond)))
	}
	s := strings.Join(parts, ", ")
	if applied, ok := rep.Marks[markSwitched]; ok {
		s += fmt.Sprintf(" (the apply took %s)", applied.Sub(rep.Marks[markSwitch]).Round(100*time.Millisecond))
	}
	return s
}

// most is the key with the highest count ("" for none).
func most(m map[string]int) string {
	best := ""
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if best == "" || m[k] > m[best] {
			best = k
		}
	}
	return best
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", short(k), m[k]))
	}
	return strings.Join(parts, " ")
}

// short labels a version: 1.0.0 is v1, 1.2.0 is v1.2, anything else is shown as it is.
func short(version string) string {
	v := strings.TrimSuffix(strings.TrimSuffix(version, ".0"), ".0")
	if v == "" || strings.ContainsFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }) {
		return version
	}
	return "v" + v
}

// clock is an elapsed time in whole seconds, as +Ns.
func clock(d time.Duration) string { return fmt.Sprintf("+%ds", int(d.Seconds())) }
