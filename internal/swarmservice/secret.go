package swarmservice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
)

// SecretEngine is the part of a manager's Docker API that holds swarm secrets.
type SecretEngine interface {
	SecretList(ctx context.Context, options swarm.SecretListOptions) ([]swarm.Secret, error)
	SecretCreate(ctx context.Context, secret swarm.SecretSpec) (swarm.SecretCreateResponse, error)
	SecretRemove(ctx context.Context, id string) error
}

// SecretName is the name of the secret holding data for prefix: secrets cannot change,
// so a new value is a new secret, named by its content's hash.
func SecretName(prefix string, data []byte) string {
	sum := sha256.Sum256(data)
	return prefix + "-" + hex.EncodeToString(sum[:])[:12]
}

// EnsureSecret returns the ID of the secret named name, creating it with data (and the
// owner label) when it does not exist yet.
func EnsureSecret(ctx context.Context, e SecretEngine, name string, data []byte, owner string) (string, error) {
	list, err := e.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return "", fmt.Errorf("list secrets: %w", err)
	}
	for _, s := range list {
		if s.Spec.Name == name {
			return s.ID, nil
		}
	}
	created, err := e.SecretCreate(ctx, swarm.SecretSpec{
		Annotations: swarm.Annotations{Name: name, Labels: map[string]string{LabelOwner: owner}},
		Data:        data,
	})
	if err != nil {
		return "", fmt.Errorf("create secret %s: %w", name, err)
	}
	return created.ID, nil
}

// RemoveSecret removes a secret; one already gone is fine.
func RemoveSecret(ctx context.Context, e SecretEngine, id string) error {
	if err := e.SecretRemove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove secret %s: %w", id, err)
	}
	return nil
}
