package swarmservice

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// ConfigEngine is the part of a manager's Docker API that holds swarm configs.
type ConfigEngine interface {
	ConfigList(ctx context.Context, options swarm.ConfigListOptions) ([]swarm.Config, error)
	ConfigCreate(ctx context.Context, config swarm.ConfigSpec) (swarm.ConfigCreateResponse, error)
	ConfigRemove(ctx context.Context, id string) error
}

// EnsureConfig returns the ID of the swarm config named name (name it by its content,
// SecretName does: configs cannot change), creating it with data when missing.
func EnsureConfig(ctx context.Context, e ConfigEngine, name string, data []byte, owner string) (string, error) {
	list, err := e.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return "", fmt.Errorf("list configs: %w", err)
	}
	for _, c := range list {
		if c.Spec.Name == name {
			return c.ID, nil
		}
	}
	created, err := e.ConfigCreate(ctx, swarm.ConfigSpec{
		Annotations: swarm.Annotations{Name: name, Labels: map[string]string{LabelOwner: owner}},
		Data:        data,
	})
	if err != nil {
		return "", fmt.Errorf("create config %s: %w", name, err)
	}
	return created.ID, nil
}

// RemoveConfigs removes the configs owner made whose names start with prefix, except
// keep; those still in use by a service stay (the engine refuses) and are reported.
func RemoveConfigs(ctx context.Context, e ConfigEngine, prefix, owner, keep string) error {
	list, err := e.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("name", prefix))})
	if err != nil {
		return fmt.Errorf("list configs: %w", err)
	}
	var firstErr error
	for _, c := range list {
		if c.ID == keep || c.Spec.Labels[LabelOwner] != owner || len(c.Spec.Name) < len(prefix) || c.Spec.Name[:len(prefix)] != prefix {
			continue
		}
		if err := e.ConfigRemove(ctx, c.ID); err != nil && !errdefs.IsNotFound(err) && firstErr == nil {
			firstErr = fmt.Errorf("remove config %s: %w", c.Spec.Name, err)
		}
	}
	return firstErr
}

// NetworkEngine is the part of a manager's Docker API that manages networks and node labels.
type NetworkEngine interface {
	NetworkInspect(ctx context.Context, id string, options network.InspectOptions) (network.Inspect, error)
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkRemove(ctx context.Context, id string) error
}

// EnsureOverlay returns the attachable overlay network named name, creating it (with
// the owner label) when missing; an existing network that is not an overlay is an error.
func EnsureOverlay(ctx context.Context, e NetworkEngine, name, owner string) (network.Inspect, error) {
	n, err := e.NetworkInspect(ctx, name, network.InspectOptions{})
	if err == nil {
		if n.Driver != "overlay" || n.Scope != "swarm" {
			return n, fmt.Errorf("network %s exists with driver %s (scope %s); the services need a swarm overlay network", name, n.Driver, n.Scope)
		}
		return n, nil
	}
	if !errdefs.IsNotFound(err) {
		return n, err
	}
	if _, err := e.NetworkCreate(ctx, name, network.CreateOptions{
		Driver: "overlay", Attachable: true, Labels: map[string]string{LabelOwner: owner},
	}); err != nil && !errdefs.IsConflict(err) {
		return n, fmt.Errorf("create overlay network %s: %w", name, err)
	}
	return e.NetworkInspect(ctx, name, network.InspectOptions{})
}

// RemoveOverlay removes the network if owner made it; one already gone is fine. Swarm
// may take a moment to release a network its last tasks used, so callers retry.
func RemoveOverlay(ctx context.Context, e NetworkEngine, name, owner string) error {
	n, err := e.NetworkInspect(ctx, name, network.InspectOptions{})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if n.Labels[LabelOwner] != owner {
		return nil
	}
	if err := e.NetworkRemove(ctx, n.ID); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

// NodeEngine is the part of a manager's Docker API that labels nodes.
type NodeEngine interface {
	NodeInspectWithRaw(ctx context.Context, nodeID string) (swarm.Node, []byte, error)
	NodeUpdate(ctx context.Context, nodeID string, version swarm.Version, node swarm.NodeSpec) error
	NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error)
}

// SetNodeLabel sets (value != "") or removes (value == "") a label on a node.
func SetNodeLabel(ctx context.Context, e NodeEngine, nodeID, key, value string) error {
	node, _, err := e.NodeInspectWithRaw(ctx, nodeID)
	if err != nil {
		return fmt.Errorf("node %s: %w", nodeID, err)
	}
	spec := node.Spec
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	if cur, ok := spec.Labels[key]; (value == "" && !ok) || (value != "" && cur == value) {
		return nil
	}
	if value == "" {
		delete(spec.Labels, key)
	} else {
		spec.Labels[key] = value
	}
	if err := e.NodeUpdate(ctx, node.ID, node.Version, spec); err != nil {
		return fmt.Errorf("label node %s: %w", nodeID, err)
	}
	return nil
}
