package provider

import (
	"fmt"
	"sync"
	"testing"
)

// The swarm's Connect runs on several nodes at once (workers join at once): the host keys
// it records must survive concurrent writers (a plain map write crashed the provider with
// "concurrent map writes" while two replaced workers joined).
func TestLockedSetterTakesConcurrentWriters(t *testing.T) {
	seen := map[string]string{}
	set := lockedSetter(seen)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			for j := range 500 {
				set(fmt.Sprintf("ssh://root@10.0.%d.%d", i, j%8), "ssh-ed25519 key")
			}
		})
	}
	wg.Wait()
	if len(seen) != 64*8 {
		t.Fatalf("%d hosts recorded, want %d", len(seen), 64*8)
	}
	lockedSetter(nil)("host", "key") // nil: nothing recorded, no panic
}
