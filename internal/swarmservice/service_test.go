package swarmservice

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"
)

// testdata holds `docker service inspect registrator` and `docker inspect <task>` from
// the local cloud: the engine reports a task's spec without some of the service's
// fields, and a task running the current spec must still compare equal.
func load(t *testing.T, name string, v any) {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

func TestTaskRunsCurrentSpec(t *testing.T) {
	t.Parallel()
	var svc swarm.Service
	var task swarm.Task
	load(t, "service.json", &svc)
	load(t, "task.json", &task)
	if sameJSON(task.Spec, svc.Spec.TaskTemplate) {
		t.Fatal("the captured task spec equals the service's as is: the normalisation is not exercised")
	}
	if !sameJSON(taskKey(task.Spec), taskKey(svc.Spec.TaskTemplate)) {
		t.Fatal("a task of the current spec does not compare equal")
	}
	changed := svc.Spec.TaskTemplate
	cs := *changed.ContainerSpec
	cs.Image = "microswarm/registrator:0.2.0"
	changed.ContainerSpec = &cs
	if sameJSON(taskKey(task.Spec), taskKey(changed)) {
		t.Fatal("a task of the previous image compares equal to the new spec")
	}
}

func TestStatusDescribeNamesTasksNotRunning(t *testing.T) {
	t.Parallel()
	st := Status{Desired: 3, Running: 1, Tasks: []Task{
		{ID: "t1", Node: "n1", State: "running", Current: true},
		{ID: "t2", Node: "n2", State: "rejected", Error: "No such image: x", Current: true},
		{ID: "t3", Node: "n3", State: "running", Current: false},
	}}
	got := st.Describe()
	for _, want := range []string{"1 of 3 tasks running", "task t2 on n2: rejected (No such image: x)", "task t3 on n3: running (previous spec)"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "t1") {
		t.Errorf("%q names a task that is fine", got)
	}
}
