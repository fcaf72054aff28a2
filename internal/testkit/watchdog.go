package testkit

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"
)

// A test that hangs ends in go test's -timeout panic: a dump of every goroutine, with the
// running tests at its head. A CI log keeps only its tail, which then names neither the
// test nor where it waits. The watchdog fires shortly before that panic: it prints the
// whole dump, then, last, a few lines naming the running tests and where they and the
// provider's goroutines wait, and ends the run.

// watchdogMargin is how long before go test's own deadline the watchdog fires.
const watchdogMargin = 2 * time.Minute

// startWatchdog arms the watchdog for this run's -timeout (none without one); stop
// disarms it.
func startWatchdog() (stop func()) {
	if !flag.Parsed() {
		flag.Parse()
	}
	f := flag.Lookup("test.timeout")
	if f == nil {
		return func() {}
	}
	timeout, ok := f.Value.(flag.Getter).Get().(time.Duration)
	if !ok || timeout <= 2*watchdogMargin {
		return func() {}
	}
	timer := time.AfterFunc(timeout-watchdogMargin, func() {
		dump := allStacks()
		fmt.Fprintf(os.Stderr, "\ntestkit: watchdog: the run is about to pass its -timeout of %s; every goroutine:\n\n%s\n", timeout, dump)
		writeHangSummary(os.Stderr, dump)
		os.Exit(3)
	})
	return func() { timer.Stop() }
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// module is how this module's frames start.
const module = "github.com/microswarm/terraform-provider-microswarm/"

var (
	goroutineHeader = regexp.MustCompile(`^goroutine \d+ \[([^\]]*)\]:`)
	testFunc        = regexp.MustCompile(`\.(Test\w+)\(`)
)

// moduleRoot is the module's directory with a trailing slash, from this file's path.
func moduleRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return strings.TrimSuffix(file, "internal/testkit/watchdog.go")
}

// frame is one function and its file:line in a goroutine's stack.
type frame struct{ fn, at string }

// stackOf splits one goroutine's block into its state and frames, innermost first.
func stackOf(block string) (state string, frames []frame) {
	lines := strings.Split(strings.TrimSpace(block), "\n")
	if len(lines) == 0 {
		return "", nil
	}
	m := goroutineHeader.FindStringSubmatch(lines[0])
	if m == nil {
		return "", nil
	}
	for i := 1; i+1 < len(lines); i += 2 {
		at := strings.TrimSpace(lines[i+1])
		if j := strings.LastIndex(at, " +0x"); j > 0 {
			at = at[:j]
		}
		if root := moduleRoot(); root != "" && strings.HasPrefix(at, root) {
			at = at[len(root):]
		} else if j := strings.LastIndex(at, "/"); j >= 0 {
			at = at[j+1:]
		}
		frames = append(frames, frame{fn: lines[i], at: at})
	}
	return m[1], frames
}

// ours is the innermost frame in this module's code, outside the watchdog.
func ours(frames []frame) (frame, bool) {
	for _, f := range frames {
		if strings.HasPrefix(f.fn, module) && !strings.Contains(f.at, "testkit/watchdog.go") {
			return f, true
		}
	}
	return frame{}, false
}

// writeHangSummary writes, in about a dozen lines, the running tests (each with its
// innermost frame in this module) and where the module's other goroutines wait, the
// longest waits first.
func writeHangSummary(w io.Writer, dump string) {
	var tests []string
	waits := map[string]int{}
	for _, block := range strings.Split(dump, "\n\n") {
		state, frames := stackOf(block)
		if frames == nil {
			continue
		}
		test := ""
		for _, f := range frames {
			if m := testFunc.FindStringSubmatch(f.fn); m != nil && m[1] != "TestMain" && strings.HasPrefix(f.fn, module) {
				test = m[1]
			}
		}
		at, mine := ours(frames)
		switch {
		case test != "" && mine:
			tests = append(tests, fmt.Sprintf("  %s [%s] at %s", test, state, at.at))
		case mine:
			waits[fmt.Sprintf("[%s] %s", state, at.at)]++
		}
	}
	keys := make([]string, 0, len(waits))
	for k := range waits {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return waitMinutes(keys[i]) > waitMinutes(keys[j]) || (waitMinutes(keys[i]) == waitMinutes(keys[j]) && keys[i] < keys[j])
	})
	const maxWaits = 6
	fmt.Fprintln(w, "testkit: watchdog: where this module's other goroutines wait (count, longest first):")
	for i, k := range keys {
		if i == maxWaits {
			fmt.Fprintf(w, "  ... and %d more places\n", len(keys)-maxWaits)
			break
		}
		fmt.Fprintf(w, "  %d× %s\n", waits[k], k)
	}
	fmt.Fprintln(w, "testkit: watchdog: the tests still running, and where each waits:")
	sort.Strings(tests)
	for _, t := range tests {
		fmt.Fprintln(w, t)
	}
	if len(tests) == 0 {
		fmt.Fprintln(w, "  none found in this process (a terraform run's provider is another process)")
	}
}

var minutesIn = regexp.MustCompile(`(\d+) minutes`)

// waitMinutes is how many minutes a "[state, N minutes]" key says its goroutines waited.
func waitMinutes(key string) int {
	m := minutesIn.FindStringSubmatch(key)
	if m == nil {
		return 0
	}
	n := 0
	_, _ = fmt.Sscan(m[1], &n)
	return n
}
