package swarmservice

import (
	"context"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
)

// NodeIDLabel is the label swarm puts on every task container: the node it runs on.
const NodeIDLabel = "com.docker.swarm.node.id"

// SelfEngine is one node's own engine, asked which swarm node it is.
type SelfEngine interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	Info(ctx context.Context) (system.Info, error)
}

// NodeNames is the swarm's ready nodes' hostnames by node ID, read once through a
// manager and shared by the nodes that ask (Identify). Set it once, even to nil (the
// manager could not say), or the askers wait for their context.
type NodeNames struct {
	once  sync.Once
	ready chan struct{}
	names map[string]string
}

func NewNodeNames() *NodeNames { return &NodeNames{ready: make(chan struct{})} }

// Set records the names; only the first call counts.
func (n *NodeNames) Set(names map[string]string) {
	n.once.Do(func() {
		n.names = names
		close(n.ready)
	})
}

// Read sets the names from the manager's node list (nil when it cannot be read).
func (n *NodeNames) Read(ctx context.Context, manager NodeEngine) {
	list, err := manager.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		n.Set(nil)
		return
	}
	names := map[string]string{}
	for _, node := range list {
		if node.Status.State == swarm.NodeStateReady {
			names[node.ID] = node.Description.Hostname
		}
	}
	n.Set(names)
}

func (n *NodeNames) get(ctx context.Context) map[string]string {
	select {
	case <-n.ready:
		return n.names
	case <-ctx.Done():
		return nil
	}
}

// Identify says which swarm node e is (its node ID, empty outside a swarm) and its
// hostname. A swarm task running there says the ID (its container's NodeIDLabel) and
// names the hostname, for a ready node: two cheap calls. Otherwise the engine's Info
// says both, which Docker answers only after running runc and docker-init on the node
// (0.1-0.25 s on a busy demo node, on every plan's path when every proxy node is asked).
func Identify(ctx context.Context, e SelfEngine, names *NodeNames) (hostname, nodeID string, err error) {
	if names != nil {
		list, err := e.ContainerList(ctx, container.ListOptions{Limit: 1,
			Filters: filters.NewArgs(filters.Arg("label", NodeIDLabel), filters.Arg("status", "running"))})
		if err == nil && len(list) > 0 {
			id := list[0].Labels[NodeIDLabel]
			if name := names.get(ctx)[id]; name != "" {
				return name, id, nil
			}
		}
	}
	info, err := e.Info(ctx)
	if err != nil {
		return "", "", err
	}
	return info.Name, info.Swarm.NodeID, nil
}
