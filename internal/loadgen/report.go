package loadgen

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Where a response lies relative to a mark, by its request's start and end:
//   - before the mark: it ended before the mark;
//   - after the mark: it started at or after the mark;
//   - in flight at the mark: it started before and ended at or after the mark.
//
// Only "after" says that the target had seen the mark's event when it chose an answer;
// an in-flight request may have been routed on either side of it.

// Report is what a run saw. Results holds every request that was not abandoned, in order
// of start, for checks the methods do not cover.
type Report struct {
	// Requests counts the requests that ended, failed ones included; Failed counts
	// those that failed: a connection error, a timeout, a non-2xx status, or a body
	// without the app's version and color.
	Requests, Failed int
	// Abandoned counts requests cut short by Stop or the run's bounds; they are in no
	// other count.
	Abandoned int
	// Retried counts requests the transport sent more than once because a reused
	// keep-alive connection closed before answering; they count once above, by their
	// last attempt. Always 0 with DisableKeepAlive.
	Retried int
	// Errors counts failures by class ("HTTP 503", "timeout", "bad body: ...", or the
	// connection error); Examples describes the first few in full.
	Errors   map[string]int
	Examples []string
	// ByVersion and ByColor count successful answers.
	ByVersion, ByColor map[string]int
	// Duration is from the start to the moment the last client stopped.
	Duration      time.Duration
	RatePerSecond float64
	// Latency is over successful requests.
	Latency Latency
	// Marks holds every mark, MarkStart and MarkEnd included.
	Marks   map[string]time.Time
	Results []Result
}

// Latency is the nearest-rank percentiles of request durations.
type Latency struct {
	P50, P95, P99, Max time.Duration
}

func newReport(start, end time.Time, results []Result, marks map[string]time.Time, examples []string, abandoned int) Report {
	rep := Report{
		Requests:  len(results),
		Abandoned: abandoned,
		Errors:    map[string]int{},
		Examples:  slices.Clone(examples),
		ByVersion: map[string]int{},
		ByColor:   map[string]int{},
		Duration:  end.Sub(start),
		Marks:     maps.Clone(marks),
		Results:   slices.Clone(results),
	}
	// Clients append as their requests end; readers think in starts.
	slices.SortStableFunc(rep.Results, func(a, b Result) int { return a.Start.Compare(b.Start) })
	var took []time.Duration
	for _, r := range rep.Results {
		if r.Retries > 0 {
			rep.Retried++
		}
		if !r.OK() {
			rep.Failed++
			rep.Errors[r.Err]++
			continue
		}
		rep.ByVersion[r.Version]++
		rep.ByColor[r.Color]++
		took = append(took, r.End.Sub(r.Start))
	}
	if rep.Duration > 0 {
		rep.RatePerSecond = float64(rep.Requests) / rep.Duration.Seconds()
	}
	slices.Sort(took)
	rep.Latency = Latency{
		P50: percentile(took, 50), P95: percentile(took, 95), P99: percentile(took, 99),
		Max: percentile(took, 100),
	}
	return rep
}

// percentile is the nearest-rank p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

func (rep Report) mark(name string) (time.Time, error) {
	t, ok := rep.Marks[name]
	if !ok {
		return time.Time{}, fmt.Errorf("no mark %q (marks: %s)", name, strings.Join(slices.Sorted(maps.Keys(rep.Marks)), ", "))
	}
	return t, nil
}

// FirstAfter is the time from mark to the first answer (by end) of version among
// requests started after the mark: how long until a client held proof of the new
// version. It includes that request's own latency, so it is an upper bound on when the
// target switched. false if the mark is unknown or version never answered after it.
func (rep Report) FirstAfter(mark, version string) (time.Duration, bool) {
	at, err := rep.mark(mark)
	if err != nil {
		return 0, false
	}
	var first time.Time
	for _, r := range rep.Results {
		if r.OK() && r.Version == version && !r.Start.Before(at) && (first.IsZero() || r.End.Before(first)) {
			first = r.End
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return first.Sub(at), true
}

// LastBefore is the time from the last answer (by end) of version among requests that
// ended before mark, to the mark: how fresh the evidence of version was when the mark
// was set. false if the mark is unknown or version never answered before it.
func (rep Report) LastBefore(mark, version string) (time.Duration, bool) {
	at, err := rep.mark(mark)
	if err != nil {
		return 0, false
	}
	var last time.Time
	for _, r := range rep.Results {
		if r.OK() && r.Version == version && r.End.Before(at) && r.End.After(last) {
			last = r.End
		}
	}
	if last.IsZero() {
		return 0, false
	}
	return at.Sub(last), true
}

// VersionsBetween counts the answers by version of requests that started at or after
// fromMark and ended before toMark. MarkStart and MarkEnd bound the whole run.
func (rep Report) VersionsBetween(fromMark, toMark string) (map[string]int, error) {
	from, err := rep.mark(fromMark)
	if err != nil {
		return nil, err
	}
	to, err := rep.mark(toMark)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, r := range rep.Results {
		if r.OK() && !r.Start.Before(from) && r.End.Before(to) {
			counts[r.Version]++
		}
	}
	return counts, nil
}

// ChangedOnlyAfter checks that a switch from oldVersion to newVersion happened at mark:
// every answer before the mark is oldVersion, newVersion appears only in requests in
// flight at or after the mark, and no other version answered at all. The old version may
// go on answering after the mark (a switch takes effect after its start), and failed
// requests are not looked at: check Failed.
func (rep Report) ChangedOnlyAfter(mark, oldVersion, newVersion string) error {
	at, err := rep.mark(mark)
	if err != nil {
		return err
	}
	var bad []string
	for _, r := range rep.Results {
		if !r.OK() {
			continue
		}
		before := r.End.Before(at)
		switch {
		case r.Version == oldVersion:
		case r.Version == newVersion && !before:
		case r.Version == newVersion:
			bad = append(bad, fmt.Sprintf("%s answered a request that ended %s before %q", newVersion, at.Sub(r.End), mark))
		default:
			bad = append(bad, fmt.Sprintf("unexpected version %q at %s from %q", r.Version, r.Start.Sub(at), mark))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	shown := bad[:min(len(bad), 3)]
	return fmt.Errorf("versions did not change only after %q (%d of %d answers wrong): %w", mark, len(bad), rep.Requests-rep.Failed,
		errors.New(strings.Join(shown, "; ")))
}

// Share is the fraction of successful answers from color, 0 when there were none.
func (rep Report) Share(color string) float64 {
	ok := rep.Requests - rep.Failed
	if ok == 0 {
		return 0
	}
	return float64(rep.ByColor[color]) / float64(ok)
}

// String is a one-line summary for test logs.
func (rep Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %s (%.0f/s), %d failed", rep.Requests, rep.Duration.Round(time.Millisecond), rep.RatePerSecond, rep.Failed)
	if rep.Retried > 0 {
		fmt.Fprintf(&b, ", %d retried", rep.Retried)
	}
	if rep.Abandoned > 0 {
		fmt.Fprintf(&b, ", %d abandoned", rep.Abandoned)
	}
	writeCounts(&b, "errors", rep.Errors)
	writeCounts(&b, "versions", rep.ByVersion)
	writeCounts(&b, "colors", rep.ByColor)
	l := rep.Latency
	fmt.Fprintf(&b, "; latency p50 %s p95 %s p99 %s max %s", l.P50, l.P95, l.P99, l.Max)
	start := rep.Marks[MarkStart]
	var marks []string
	for name, t := range rep.Marks {
		if name != MarkStart && name != MarkEnd {
			marks = append(marks, fmt.Sprintf("%s@%s", name, t.Sub(start).Round(time.Millisecond)))
		}
	}
	if len(marks) > 0 {
		slices.Sort(marks)
		fmt.Fprintf(&b, "; marks %s", strings.Join(marks, " "))
	}
	return b.String()
}

func writeCounts(b *strings.Builder, what string, counts map[string]int) {
	if len(counts) == 0 {
		return
	}
	fmt.Fprintf(b, "; %s", what)
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(b, " %s=%d", k, counts[k])
	}
}
