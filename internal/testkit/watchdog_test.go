package testkit

import (
	"strings"
	"sync"
	"testing"
)

// parkedInTheModule waits in this module's code until released.
func parkedInTheModule(wg *sync.WaitGroup, release chan struct{}) {
	wg.Done()
	<-release
}

// The summary names the running test with its line in this module, and where the
// module's other goroutines wait, and stays short enough for a CI log's tail.
func TestWatchdogSummaryNamesTheTestAndTheWaits(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go parkedInTheModule(&wg, release)
	}
	wg.Wait()
	var out strings.Builder
	writeHangSummary(&out, allStacks())
	got := out.String()
	for _, want := range []string{
		"TestWatchdogSummaryNamesTheTestAndTheWaits [running] at internal/testkit/watchdog_test.go:",
		"3× [chan receive] internal/testkit/watchdog_test.go:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the summary lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n > 20 {
		t.Errorf("the summary runs to %d lines:\n%s", n, got)
	}
}
