package swarmservice

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// stoppingEngine is a manager whose removed services' tasks stop stopAfter after their
// ServiceRemove, as a swarm's tasks do after their grace period.
type stoppingEngine struct {
	Engine    // only the methods below are called
	mu        sync.Mutex
	stopAfter time.Duration
	removedAt map[string]time.Time
	tasks     []string // service IDs, one task each
}

func (e *stoppingEngine) ServiceRemove(_ context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.removedAt[id] = time.Now()
	return nil
}

func (e *stoppingEngine) TaskList(context.Context, swarm.TaskListOptions) ([]swarm.Task, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []swarm.Task
	for _, id := range e.tasks {
		state := swarm.TaskStateRunning
		if at, ok := e.removedAt[id]; ok && time.Since(at) >= e.stopAfter {
			state = swarm.TaskStateShutdown
		}
		out = append(out, swarm.Task{ServiceID: id, NodeID: "n1", Status: swarm.TaskStatus{State: state}})
	}
	return out, nil
}

func (e *stoppingEngine) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	return []swarm.Node{{ID: "n1", Status: swarm.NodeStatus{State: swarm.NodeStateReady}}}, nil
}

// Services removed together stop together: the wait is one grace period, not one per
// service, and it ends only when every service's tasks have stopped.
func TestRemoveStopsServicesTogether(t *testing.T) {
	t.Parallel()
	e := &stoppingEngine{stopAfter: 500 * time.Millisecond, removedAt: map[string]time.Time{}, tasks: []string{"proxy", "blue", "green"}}
	start := time.Now()
	if err := Remove(context.Background(), e, "proxy", "blue", "green"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	tasks, _ := e.TaskList(context.Background(), swarm.TaskListOptions{})
	for _, task := range tasks {
		if task.Status.State != swarm.TaskStateShutdown {
			t.Errorf("service %s still has a running task after Remove returned", task.ServiceID)
		}
	}
	if took >= 3*e.stopAfter { // one after another takes at least 3 * stopAfter
		t.Errorf("Remove took %s for three services that each stop %s after their removal: they were removed one after another", took, e.stopAfter)
	}
}
