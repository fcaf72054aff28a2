package bluegreen

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"
)

// tasksEngine is a node's engine listing swarm task containers; a kill of one named in
// failKill fails, and every kill is recorded.
type tasksEngine struct {
	mu       sync.Mutex
	all      []container.Summary
	failKill string
	killed   []string
}

func (e *tasksEngine) ContainerList(_ context.Context, opts container.ListOptions) ([]container.Summary, error) {
	if !opts.All {
		var running []container.Summary
		for _, c := range e.all {
			if c.State == container.StateRunning {
				running = append(running, c)
			}
		}
		return running, nil
	}
	return e.all, nil
}

func (e *tasksEngine) ContainerKill(_ context.Context, id, _ string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.killed = append(e.killed, id)
	if id == e.failKill {
		return errors.New("engine busy")
	}
	return nil
}

func taskContainer(id, service, task string, state container.ContainerState) container.Summary {
	return container.Summary{ID: id, State: state, Labels: map[string]string{serviceIDLabel: service, taskIDLabel: task}}
}

// A node kills its running containers of the services asked for, and says which tasks it
// saw stopped: those it killed, and those that had exited already (whose stop the manager
// may not have heard of yet). Not one whose kill failed, nor another service's.
func TestEngineTasksKillSaysWhichTasksItSawStopped(t *testing.T) {
	t.Parallel()
	e := &tasksEngine{failKill: "c4", all: []container.Summary{
		taskContainer("c1", "web-blue", "t1", container.StateRunning),
		taskContainer("c2", "web-blue", "t2", container.StateExited),
		taskContainer("c3", "db", "t3", container.StateRunning),
		taskContainer("c4", "web-green", "t4", container.StateRunning),
	}}
	stopped, err := EngineTasks{Engine: e}.Kill(context.Background(), []string{"web-blue", "web-green"})
	if err == nil || !strings.Contains(err.Error(), "c4") {
		t.Errorf("err = %v, want the failed kill of c4", err)
	}
	slices.Sort(stopped)
	if !slices.Equal(stopped, []string{"t1", "t2"}) {
		t.Errorf("saw stopped %v, want [t1 t2]", stopped)
	}
	slices.Sort(e.killed)
	if !slices.Equal(e.killed, []string{"c1", "c4"}) {
		t.Errorf("killed %v, want [c1 c4]", e.killed)
	}
}
