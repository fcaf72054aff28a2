package loadgen

import (
	"strings"
	"testing"
	"time"
)

// Reports are built by hand here, on a fixed clock, so that the before / in flight /
// after rules are tested at their edges; loadgen_test.go checks them on real traffic.

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// ok is a successful request from start to end (in ms after t0) answered by version.
func ok(start, end int, version string) Result {
	color := map[string]string{"1.0.0": "blue", "2.0.0": "green"}[version]
	return Result{Start: ms(start), End: ms(end), Version: version, Color: color}
}

func failed(start, end int, class string) Result {
	return Result{Start: ms(start), End: ms(end), Err: class}
}

// report marks "switch" at 100 ms.
func report(results ...Result) Report {
	marks := map[string]time.Time{MarkStart: ms(0), "switch": ms(100), MarkEnd: ms(1000)}
	return newReport(ms(0), ms(1000), results, marks, nil, 0)
}

func TestChangedOnlyAfter(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		results []Result
		mark    string
		wantErr string // "" for none
	}{
		"old before, new after": {
			results: []Result{ok(0, 10, "1.0.0"), ok(90, 99, "1.0.0"), ok(100, 110, "2.0.0"), ok(120, 130, "2.0.0")},
		},
		"old still answering after the mark": {
			results: []Result{ok(0, 10, "1.0.0"), ok(100, 110, "1.0.0"), ok(105, 115, "2.0.0"), ok(150, 160, "1.0.0")},
		},
		"new in flight at the mark": {
			results: []Result{ok(90, 105, "2.0.0")},
		},
		"new ending exactly at the mark is in flight": {
			results: []Result{ok(90, 100, "2.0.0")},
		},
		"new ended before the mark": {
			results: []Result{ok(0, 10, "1.0.0"), ok(80, 90, "2.0.0")},
			wantErr: `2.0.0 answered a request that ended 10ms before "switch"`,
		},
		"a third version": {
			results: []Result{ok(0, 10, "1.0.0"), ok(110, 120, "3.0.0")},
			wantErr: `unexpected version "3.0.0"`,
		},
		"failures are not versions": {
			results: []Result{failed(0, 10, "HTTP 503"), ok(20, 30, "1.0.0")},
		},
		"unknown mark": {
			results: []Result{ok(0, 10, "1.0.0")},
			mark:    "nope",
			wantErr: `no mark "nope"`,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mark := tt.mark
			if mark == "" {
				mark = "switch"
			}
			err := report(tt.results...).ChangedOnlyAfter(mark, "1.0.0", "2.0.0")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFirstAfterLastBefore(t *testing.T) {
	t.Parallel()
	rep := report(
		ok(50, 60, "1.0.0"), ok(70, 80, "1.0.0"),
		ok(85, 101, "2.0.0"),                         // in flight: not proof that the switch happened
		ok(90, 120, "1.0.0"),                         // in flight: not "before"
		ok(100, 130, "2.0.0"), ok(105, 112, "2.0.0"), // the first answer after is the earliest end
	)
	tests := map[string]struct {
		got    func() (time.Duration, bool)
		want   time.Duration
		wantOK bool
	}{
		"first new after":       {got: func() (time.Duration, bool) { return rep.FirstAfter("switch", "2.0.0") }, want: 12 * time.Millisecond, wantOK: true},
		"first old after":       {got: func() (time.Duration, bool) { return rep.FirstAfter("switch", "1.0.0") }},
		"first after the start": {got: func() (time.Duration, bool) { return rep.FirstAfter(MarkStart, "1.0.0") }, want: 60 * time.Millisecond, wantOK: true},
		"last old before":       {got: func() (time.Duration, bool) { return rep.LastBefore("switch", "1.0.0") }, want: 20 * time.Millisecond, wantOK: true},
		"last new before":       {got: func() (time.Duration, bool) { return rep.LastBefore("switch", "2.0.0") }},
		"unknown mark":          {got: func() (time.Duration, bool) { return rep.FirstAfter("nope", "2.0.0") }},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, gotOK := tt.got()
			if got != tt.want || gotOK != tt.wantOK {
				t.Fatalf("got %s, %v; want %s, %v", got, gotOK, tt.want, tt.wantOK)
			}
		})
	}
}

func TestVersionsBetween(t *testing.T) {
	t.Parallel()
	rep := report(ok(0, 10, "1.0.0"), ok(95, 105, "1.0.0"), ok(100, 110, "2.0.0"), ok(990, 1001, "2.0.0"), failed(20, 30, "timeout"))
	tests := map[string]struct {
		from, to string
		want     map[string]int
		wantErr  bool
	}{
		"before the switch": {from: MarkStart, to: "switch", want: map[string]int{"1.0.0": 1}},
		"after the switch":  {from: "switch", to: MarkEnd, want: map[string]int{"2.0.0": 1}},
		"whole run":         {from: MarkStart, to: MarkEnd, want: map[string]int{"1.0.0": 2, "2.0.0": 1}},
		"unknown mark":      {from: "switch", to: "nope", wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := rep.VersionsBetween(tt.from, tt.to)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error: %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for v, n := range tt.want {
				if got[v] != n {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestReportCounts(t *testing.T) {
	t.Parallel()
	rep := report(ok(0, 10, "1.0.0"), ok(10, 30, "1.0.0"), ok(20, 50, "2.0.0"), ok(30, 70, "2.0.0"),
		failed(40, 45, "HTTP 503"), failed(50, 2050, "timeout"))
	if rep.Requests != 6 || rep.Failed != 2 {
		t.Fatalf("requests %d failed %d, want 6 and 2", rep.Requests, rep.Failed)
	}
	if rep.Errors["HTTP 503"] != 1 || rep.Errors["timeout"] != 1 {
		t.Fatalf("errors %v", rep.Errors)
	}
	if got := rep.Share("blue"); got != 0.5 {
		t.Fatalf("blue share %g, want 0.5", got)
	}
	// Latency is over the 4 successes only: 10, 20, 30, 40 ms.
	want := Latency{P50: 20 * time.Millisecond, P95: 40 * time.Millisecond, P99: 40 * time.Millisecond, Max: 40 * time.Millisecond}
	if rep.Latency != want {
		t.Fatalf("latency %+v, want %+v", rep.Latency, want)
	}
	if rep.RatePerSecond != 6 {
		t.Fatalf("rate %g, want 6 (6 requests in 1s)", rep.RatePerSecond)
	}
	s := rep.String()
	for _, part := range []string{"6 requests in 1s", "2 failed", "HTTP 503=1", "versions 1.0.0=2 2.0.0=2", "colors blue=2 green=2", "marks switch@100ms"} {
		if !strings.Contains(s, part) {
			t.Errorf("String() = %q, missing %q", s, part)
		}
	}
	if empty := (Report{}); empty.Share("blue") != 0 {
		t.Fatal("share of an empty report is not 0")
	}
}
