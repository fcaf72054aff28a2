package consul

import (
	"context"
	"errors"
	"testing"

	"github.com/docker/docker/api/types/container"
)

func leaveAs(c *Container) (Spec, bool) { return c.Spec, true }

// The container and its volume go even when the agent cannot leave (here: exec fails),
// and the failed leave is reported, not swallowed.
func TestDeleteRemovesEverythingEvenWhenTheLeaveFails(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	mustEnsure(t, f, agentSpec())
	got, err := Delete(context.Background(), f, "consul-agent", leaveAs)
	if err != nil {
		t.Fatal(err)
	}
	if got.LeaveErr == nil || got.Foreign != nil {
		t.Errorf("Deleted = %+v, want the leave error", got)
	}
	if len(f.containers) != 0 || len(f.volumes) != 0 {
		t.Errorf("left behind: %d containers, %d volumes", len(f.containers), len(f.volumes))
	}
}

// A delete cut short is finished by the next: what is gone is fine.
func TestDeleteToleratesWhatIsGone(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	mustEnsure(t, f, agentSpec())
	delete(f.containers, "consul-agent") // the container went, the volume stayed
	for i := range 2 {
		if _, err := Delete(context.Background(), f, "consul-agent", leaveAs); err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
	}
	if len(f.volumes) != 0 {
		t.Errorf("the volume was left: %v", f.volumes)
	}
}

// A container of that name that microswarm did not make is left alone; the volume goes.
func TestDeleteLeavesAForeignContainerAlone(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	f.containers["consul-agent"] = &fakeContainer{id: "foreign", config: &container.Config{Image: "nginx", Labels: map[string]string{}}, running: true}
	f.volumes["consul-agent-data"] = true
	got, err := Delete(context.Background(), f, "consul-agent", leaveAs)
	var notManaged *NotManagedError
	if err != nil || !errors.As(got.Foreign, &notManaged) {
		t.Fatalf("Delete = %+v, %v; want Foreign set", got, err)
	}
	if f.containers["consul-agent"] == nil || f.volumes["consul-agent-data"] {
		t.Errorf("foreign container kept: %v; volume removed: %v", f.containers["consul-agent"] != nil, !f.volumes["consul-agent-data"])
	}
}

// A step that fails says which; the steps before it were done.
func TestDeleteSaysWhichStepFailed(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	mustEnsure(t, f, agentSpec())
	f.volumeRemoveErr = errors.New("volume is in use")
	_, err := Delete(context.Background(), f, "consul-agent", leaveAs)
	var de *DeleteError
	if !errors.As(err, &de) || de.Step != StepRemoveVolume {
		t.Fatalf("err = %v, want a DeleteError at %s", err, StepRemoveVolume)
	}
	if len(f.containers) != 0 {
		t.Errorf("the container was kept although its step came first")
	}
}

// A server whose whole cluster is going is removed without a leave (no exec into it).
func TestDeleteWithoutLeave(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	mustEnsure(t, f, agentSpec())
	got, err := Delete(context.Background(), f, "consul-agent", func(c *Container) (Spec, bool) { return c.Spec, false })
	if err != nil {
		t.Fatal(err)
	}
	if !got.NoLeave || got.LeaveErr != nil {
		t.Errorf("Deleted = %+v, want NoLeave and no leave error", got)
	}
	if len(f.containers) != 0 || len(f.volumes) != 0 {
		t.Errorf("left behind: %d containers, %d volumes", len(f.containers), len(f.volumes))
	}
}
