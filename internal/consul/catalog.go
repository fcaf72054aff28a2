package consul

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// The catalog keeps a node under its name. When an agent dies while the cluster has no
// leader (a quorum lost with it), no leader marks it failed, and once a leader is back the
// agent that replaces it under the same name (a replaced droplet keeps its name) is alive:
// the leader sees a live member of that name and never looks at the node again. The
// catalog then keeps the dead agent's entry for ever, with its services and their last
// health, passing; the new agent cannot register over it ("Node name ... is reserved by
// node ..."), so its own services never reach the catalog. Every read of the catalog,
// health included, then reports instances that do not exist and misses those that do.

// CatalogClaim is what ClaimCatalogName found or did.
type CatalogClaim struct {
	// Claimed: the catalog holds the agent's node name under the agent's own node ID.
	Claimed bool
	// Absent: the catalog holds no node of that name (yet).
	Absent bool
	// Removed is the node ID of a stale entry this call deleted ("" if none).
	Removed string
	// Waiting says what is awaited when not Claimed.
	Waiting string
}

// ClaimCatalogName makes sure the catalog's entry for the agent's node name is the
// agent's own. An entry of that name under another node ID that no alive member carries
// is a dead agent's: it is deleted (compare-and-set on its modify index, so an entry
// rewritten meanwhile is left alone), and the agent's own registration follows within
// its next sync. An entry whose ID an alive member carries is left alone, and reported as
// an error: two live agents share the name, which only their operator can settle.
// Deleting needs node:write (the management token); a refusal is returned as a permanent
// error saying so.
func ClaimCatalogName(ctx context.Context, api *consulapi.Client, self Self) (CatalogClaim, error) {
	node, _, err := api.Catalog().Node(self.NodeName, query(ctx))
	if err != nil {
		return CatalogClaim{}, wait.Retryable(fmt.Errorf("reading the catalog's node %s: %w", self.NodeName, err))
	}
	if node == nil || node.Node == nil {
		return CatalogClaim{Absent: true, Waiting: "the node is not in the catalog yet"}, nil
	}
	if strings.EqualFold(node.Node.ID, self.NodeID) {
		return CatalogClaim{Claimed: true}, nil
	}
	stale := node.Node
	members, err := Members(ctx, api)
	if err != nil {
		return CatalogClaim{}, wait.Retryable(fmt.Errorf("listing the members: %w", err))
	}
	for _, m := range members {
		if m.Status == memberAlive && strings.EqualFold(m.Tags["id"], stale.ID) {
			return CatalogClaim{}, fmt.Errorf("the catalog holds the node name %s as node %s, which the alive member %s (%s) carries: "+
				"two agents claim one node; give each node a name of its own", self.NodeName, stale.ID, m.Name, m.Addr)
		}
	}
	ok, resp, _, err := api.Txn().Txn(consulapi.TxnOps{{Node: &consulapi.NodeTxnOp{
		Verb: consulapi.NodeDeleteCAS,
		Node: consulapi.Node{Node: stale.Node, ModifyIndex: stale.ModifyIndex},
	}}}, (&consulapi.QueryOptions{}).WithContext(ctx))
	switch {
	case err != nil && isPermissionDenied(err):
		return CatalogClaim{}, fmt.Errorf("the catalog holds %s under node ID %s, an agent of that name that is gone, and this token may not "+
			"remove it (that needs node:write, which the management token has): %w. Give the provider consul_management_token, or remove "+
			"it with the HTTP API: PUT /v1/catalog/deregister with {\"Node\": %q} and a management token", self.NodeName, stale.ID, err, self.NodeName)
	case err != nil:
		return CatalogClaim{}, wait.Retryable(fmt.Errorf("removing the stale catalog entry %s (node %s): %w", self.NodeName, stale.ID, err))
	case !ok:
		// Rewritten since the read (the agent registered, or a leader marked it): look again.
		msg := "changed under the write"
		if resp != nil && len(resp.Errors) > 0 {
			msg = resp.Errors[0].What
		}
		return CatalogClaim{Waiting: "the stale catalog entry " + msg}, nil
	}
	return CatalogClaim{Removed: stale.ID, Waiting: fmt.Sprintf("removed the stale catalog entry %s (node %s); the agent registers next", self.NodeName, stale.ID)}, nil
}

// ClearStaleCatalogName removes a dead agent's entry under self's node name, if the
// catalog holds one, and returns its node ID ("" when there was none). Run it before the
// agent gets its ACL token: setting the token makes the agent sync its node at once, and
// once the stale entry is gone that sync registers the node. Without ACLs (or after an
// earlier sync failed over the stale entry) the agent registers at its next sync retry,
// 15 to 30 s later, or at once when a service or check of its changes.
func ClearStaleCatalogName(ctx context.Context, api *consulapi.Client, self Self) (string, error) {
	return pollCatalogName(ctx, api, self, "a dead agent's catalog entry under "+self.NodeName+" to be removed",
		func(c CatalogClaim) bool { return c.Claimed || c.Absent || c.Removed != "" })
}

// WaitCatalogName waits until the catalog holds self's node name as self's own
// (ClaimCatalogName on every poll, so a stale entry is removed whenever it is seen) and
// returns the node ID of an entry it removed ("" if none).
func WaitCatalogName(ctx context.Context, api *consulapi.Client, self Self) (string, error) {
	return pollCatalogName(ctx, api, self, "the catalog to hold "+self.NodeName+" as node "+self.NodeID,
		func(c CatalogClaim) bool { return c.Claimed })
}

// pollCatalogName runs ClaimCatalogName until done says so, and returns the node ID of
// an entry any of its polls removed.
func pollCatalogName(ctx context.Context, api *consulapi.Client, self Self, what string, done func(CatalogClaim) bool) (string, error) {
	var removed string
	err := wait.Until(ctx, waitOptions(what), func(ctx context.Context) (bool, string, error) {
		claim, err := ClaimCatalogName(ctx, api, self)
		if err != nil {
			return false, "", err
		}
		removed = cmp.Or(claim.Removed, removed)
		return done(claim), claim.Waiting, nil
	})
	return removed, err
}

// CatalogMismatches names the alive members among members whose node the catalog does
// not hold under their own node ID (absent, or a dead agent's entry of the same name),
// each with both IDs: what ClaimCatalogName settles for one agent, checked for all.
func CatalogMismatches(ctx context.Context, api *consulapi.Client, members []*consulapi.AgentMember) ([]string, error) {
	var out []string
	for _, m := range members {
		if m.Status != memberAlive {
			continue
		}
		node, _, err := api.Catalog().Node(m.Name, query(ctx))
		if err != nil {
			return nil, fmt.Errorf("reading the catalog's node %s: %w", m.Name, err)
		}
		if node != nil && node.Node != nil && strings.EqualFold(node.Node.ID, m.Tags["id"]) {
			continue
		}
		got := "missing"
		if node != nil && node.Node != nil {
			got = "node " + node.Node.ID
		}
		out = append(out, fmt.Sprintf("%s (member %s, catalog %s)", m.Name, m.Tags["id"], got))
	}
	return out, nil
}
