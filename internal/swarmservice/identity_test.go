package swarmservice

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
)

// selfEngine is a node's engine: the swarm task containers it runs, and its Info.
type selfEngine struct {
	tasks []container.Summary
	info  system.Info
	infos int
}

func (e *selfEngine) ContainerList(_ context.Context, opts container.ListOptions) ([]container.Summary, error) {
	var out []container.Summary
	for _, c := range e.tasks {
		if opts.Filters.ExactMatch("status", c.State) && c.Labels[NodeIDLabel] != "" {
			out = append(out, c)
		}
	}
	return out, nil
}

func (e *selfEngine) Info(context.Context) (system.Info, error) {
	e.infos++
	return e.info, nil
}

// nodeList is a manager's node list.
type nodeList []swarm.Node

func (l nodeList) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	return l, nil
}
func (l nodeList) NodeInspectWithRaw(context.Context, string) (swarm.Node, []byte, error) {
	return swarm.Node{}, nil, nil
}
func (l nodeList) NodeUpdate(context.Context, string, swarm.Version, swarm.NodeSpec) error {
	return nil
}

func readyNode(id, hostname string, state swarm.NodeState) swarm.Node {
	return swarm.Node{ID: id, Description: swarm.NodeDescription{Hostname: hostname}, Status: swarm.NodeStatus{State: state}}
}

// A node that runs a swarm task is identified by the task's label and the manager's node
// list, without its Info (Docker runs runc and docker-init to answer that); a node with
// no running task, or one the list does not show ready, is asked for its Info.
func TestIdentifyAsksForTheInfoOnlyWhenNoTaskSays(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	names := NewNodeNames()
	names.Read(ctx, nodeList{readyNode("n1", "demo-1", swarm.NodeStateReady), readyNode("n2", "demo-2", swarm.NodeStateDown)})
	info := system.Info{Name: "from-info", Swarm: swarm.Info{NodeID: "from-info-id"}}
	task := func(node, state string) container.Summary {
		return container.Summary{State: state, Labels: map[string]string{NodeIDLabel: node}}
	}
	for name, tc := range map[string]struct {
		tasks            []container.Summary
		wantName, wantID string
		wantInfos        int
	}{
		"a running task on a ready node": {tasks: []container.Summary{task("n1", "running")}, wantName: "demo-1", wantID: "n1"},
		"no task":                        {wantName: "from-info", wantID: "from-info-id", wantInfos: 1},
		"only an exited task":            {tasks: []container.Summary{task("n1", "exited")}, wantName: "from-info", wantID: "from-info-id", wantInfos: 1},
		"a task of a node not ready":     {tasks: []container.Summary{task("n2", "running")}, wantName: "from-info", wantID: "from-info-id", wantInfos: 1},
	} {
		e := &selfEngine{tasks: tc.tasks, info: info}
		hostname, id, err := Identify(ctx, e, names)
		if err != nil || hostname != tc.wantName || id != tc.wantID || e.infos != tc.wantInfos {
			t.Errorf("%s: %q %q %v after %d Info calls; want %q %q after %d", name, hostname, id, err, e.infos, tc.wantName, tc.wantID, tc.wantInfos)
		}
	}
	// No names (the manager could not say): the Info.
	e := &selfEngine{tasks: []container.Summary{task("n1", "running")}, info: info}
	none := NewNodeNames()
	none.Set(nil)
	if hostname, _, _ := Identify(ctx, e, none); hostname != "from-info" || e.infos != 1 {
		t.Errorf("without the node list: %q after %d Info calls, want the Info's name", hostname, e.infos)
	}
}
