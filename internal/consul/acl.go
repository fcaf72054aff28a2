package consul

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
)

// ACL turns Consul's ACL system on for an agent.
type ACL struct {
	// DefaultPolicy is what a request without a token, or with a token whose rules do not
	// say, may do: "deny" (the secure default) or "allow".
	DefaultPolicy string
	// Token is the management token, write-only: on a server it is the
	// initial_management token that bootstraps the ACL system; on every agent it is the
	// token the provider talks to the agent with and makes the agent's own token with.
	// Hash covers only that it is set.
	Token string
}

// ACL default policies.
const (
	ACLDeny  = "deny"
	ACLAllow = "allow"
)

// ACLPolicies are the allowed default policies, secure one first.
var ACLPolicies = []string{ACLDeny, ACLAllow}

// HealthLedgerPrefix is the KV prefix the health data source writes its ledger under:
// the only place in the KV store its token may write.
const HealthLedgerPrefix = "microswarm/health/"

// Least-privilege rules for the tokens the provider makes.
var (
	// RegistratorRules let a registrator register and deregister any service and its
	// checks on any node it runs on, and nothing else: no KV, no ACL, no operator.
	RegistratorRules = `service_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }`
	// HealthRules let a reader (the switch gate, the health data source) read the
	// catalog and health, and write only the health ledger.
	HealthRules = `service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }
key_prefix "` + HealthLedgerPrefix + `" { policy = "write" }`
)

// AgentRules let an agent register its own node and read the services it checks.
func AgentRules(node string) string {
	return fmt.Sprintf(`node %q { policy = "write" }
service_prefix "" { policy = "read" }`, node)
}

var policyNameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_-]`)

// ManagedToken is a token the provider made; only its accessor ID (not secret) is kept.
type ManagedToken struct {
	AccessorID string
	SecretID   string
}

// EnsureToken finds or makes the token named name (its policy is `microswarm-NAME`,
// holding rules, updated if they changed) through api, which carries a management token.
// Finding it again by its policy makes it idempotent: a create interrupted after the
// token was made reuses it.
func EnsureToken(ctx context.Context, api *consulapi.Client, name, rules string) (ManagedToken, error) {
	acl := api.ACL()
	w := (&consulapi.WriteOptions{}).WithContext(ctx)
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	policyName := "microswarm-" + policyNameUnsafe.ReplaceAllString(name, "-")
	policy, _, err := acl.PolicyReadByName(policyName, q)
	if err != nil && !isNotFound(err) {
		return ManagedToken{}, fmt.Errorf("reading ACL policy %s: %w", policyName, err)
	}
	switch {
	case policy == nil:
		policy, _, err = acl.PolicyCreate(&consulapi.ACLPolicy{Name: policyName, Rules: rules,
			Description: "made by terraform-provider-microswarm for " + name}, w)
		if err != nil {
			return ManagedToken{}, fmt.Errorf("creating ACL policy %s: %w", policyName, err)
		}
	case policy.Rules != rules:
		policy.Rules = rules
		if policy, _, err = acl.PolicyUpdate(policy, w); err != nil {
			return ManagedToken{}, fmt.Errorf("updating ACL policy %s: %w", policyName, err)
		}
	}
	tokens, _, err := acl.TokenListFiltered(consulapi.ACLTokenFilterOptions{Policy: policy.ID}, q)
	if err != nil {
		return ManagedToken{}, fmt.Errorf("listing the tokens of ACL policy %s: %w", policyName, err)
	}
	for _, t := range tokens {
		full, _, err := acl.TokenRead(t.AccessorID, q)
		if err != nil {
			return ManagedToken{}, fmt.Errorf("reading ACL token %s: %w", t.AccessorID, err)
		}
		if full.SecretID != "" {
			return ManagedToken{AccessorID: full.AccessorID, SecretID: full.SecretID}, nil
		}
	}
	made, _, err := acl.TokenCreate(&consulapi.ACLToken{Description: "made by terraform-provider-microswarm for " + name,
		Policies: []*consulapi.ACLTokenPolicyLink{{ID: policy.ID}}}, w)
	if err != nil {
		return ManagedToken{}, fmt.Errorf("creating the ACL token for %s: %w", name, err)
	}
	return ManagedToken{AccessorID: made.AccessorID, SecretID: made.SecretID}, nil
}

// FindToken finds the token EnsureToken made for name, reading from any server (stale):
// a cluster that has lost its leader still answers, though nothing can be made.
func FindToken(ctx context.Context, api *consulapi.Client, name string) (ManagedToken, bool, error) {
	acl := api.ACL()
	q := (&consulapi.QueryOptions{AllowStale: true}).WithContext(ctx)
	policyName := "microswarm-" + policyNameUnsafe.ReplaceAllString(name, "-")
	policy, _, err := acl.PolicyReadByName(policyName, q)
	if err != nil && !isNotFound(err) {
		return ManagedToken{}, false, fmt.Errorf("reading ACL policy %s: %w", policyName, err)
	}
	if policy == nil {
		return ManagedToken{}, false, nil
	}
	tokens, _, err := acl.TokenListFiltered(consulapi.ACLTokenFilterOptions{Policy: policy.ID}, q)
	if err != nil {
		return ManagedToken{}, false, fmt.Errorf("listing the tokens of ACL policy %s: %w", policyName, err)
	}
	for _, t := range tokens {
		full, _, err := acl.TokenRead(t.AccessorID, q)
		if err != nil {
			return ManagedToken{}, false, fmt.Errorf("reading ACL token %s: %w", t.AccessorID, err)
		}
		if full.SecretID != "" {
			return ManagedToken{AccessorID: full.AccessorID, SecretID: full.SecretID}, true, nil
		}
	}
	return ManagedToken{}, false, nil
}

// EnsureAgentToken gives the agent api talks to its own least-privilege token (write on
// its node, read on services), persisted in its data (enable_token_persistence), so it
// can register its node in the catalog with a default-deny policy.
func EnsureAgentToken(ctx context.Context, api *consulapi.Client) (ManagedToken, error) {
	self, err := ReadSelf(ctx, api)
	if err != nil {
		return ManagedToken{}, err
	}
	tok, err := EnsureToken(ctx, api, "agent-"+self.NodeName, AgentRules(self.NodeName))
	if err != nil {
		return ManagedToken{}, err
	}
	if _, err := api.Agent().UpdateAgentACLToken(tok.SecretID, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return ManagedToken{}, fmt.Errorf("setting the agent token of %s: %w", self.NodeName, err)
	}
	return tok, nil
}

func isNotFound(err error) bool {
	var se consulapi.StatusError
	return errors.As(err, &se) && se.Code == 404
}

// isPermissionDenied: Consul's refusal of a token (HTTP 403, or its message where the
// client did not keep the status).
func isPermissionDenied(err error) bool {
	var se consulapi.StatusError
	if errors.As(err, &se) {
		return se.Code == 403
	}
	return strings.Contains(err.Error(), "Permission denied") || strings.Contains(err.Error(), "ACL not found")
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidateACLToken accepts a token secret as Consul takes it: a UUID (`uuidgen`). The
// error never repeats the value.
func ValidateACLToken(token string) error {
	if token == "" {
		return errors.New("the ACL management token is missing (acl_token_wo is set only in the configuration, never in the plan or state)")
	}
	if !uuidPattern.MatchString(token) {
		return errors.New("the ACL token is not a UUID; generate one with `uuidgen`")
	}
	return nil
}
