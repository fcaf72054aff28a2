package droplet

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Adoption. A create that dies between its POST and Terraform saving the state (a
// killed run, a lost laptop lid) leaves a droplet that no state records. The next apply
// should adopt it, not make a second one, but must never take a droplet another stack
// owns: names are not unique across stacks (staging and prod both have web-0), and a
// stack that adopts another's droplet deletes it on destroy.
//
// So a create writes, with its POST, a pending tag that only the same create of the
// same stack can compute again (see Stack.PendingTag), and removes the tag once the
// create has finished, whether it succeeded or failed with the droplet in state
// (Client.Claim). A later create adopts only a droplet still carrying its own pending
// tag. A droplet another stack made carries another tag; a droplet whose create
// finished, or that was made before pending tags existed, carries none, so a
// create_before_destroy replacement with the same name never adopts its predecessor.

// PendingTagPrefix starts the tag a droplet carries from its create request until the
// create finishes. Hidden like ManagedTag.
const PendingTagPrefix = "microswarm-pending:"

// StackTagPrefix starts the tag naming the stack (the provider's stack_id) that created a
// droplet; for people and tools filtering the account, not for adoption. Hidden.
const StackTagPrefix = "microswarm-stack:"

// StackIDPattern is what a stack id may be: it goes into a tag.
var StackIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// IsProviderTag reports whether a tag is one the provider writes and hides.
func IsProviderTag(tag string) bool {
	return tag == ManagedTag || strings.HasPrefix(tag, IdempotencyTagPrefix) ||
		strings.HasPrefix(tag, PendingTagPrefix) || strings.HasPrefix(tag, StackTagPrefix) ||
		strings.HasPrefix(tag, RunTagPrefix) || strings.HasPrefix(tag, LeaseTagPrefix)
}

// Stack is what ties droplets to the stack that creates them: an optional stack id
// (several stacks in one account with the same SSH key tell themselves apart by it) and
// a secret only that stack's provider holds, derived from its SSH private key (without
// which it could not reach the droplets anyway).
type Stack struct {
	ID     string
	secret []byte
}

// NewStack derives a stack's secret from the provider's SSH private key (PEM or OpenSSH).
// The same key in another encoding gives the same secret.
func NewStack(id string, sshPrivateKey []byte) (*Stack, error) {
	if id != "" && !StackIDPattern.MatchString(id) {
		return nil, fmt.Errorf("stack id %q: must be 1-64 letters, digits, '-' or '_'", id)
	}
	raw, err := ssh.ParseRawPrivateKey(sshPrivateKey)
	if err != nil {
		return nil, fmt.Errorf("reading the SSH private key: %w", err)
	}
	if p, ok := raw.(*ed25519.PrivateKey); ok {
		raw = *p
	}
	material, err := x509.MarshalPKCS8PrivateKey(raw)
	if err != nil {
		material = sshPrivateKey // a key type PKCS#8 cannot hold (DSA): its own bytes
	}
	sum := sha256.Sum256(append([]byte("microswarm stack secret v1\x00"), material...))
	return &Stack{ID: id, secret: sum[:]}, nil
}

func (s *Stack) mac(label string, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(label))
	for _, p := range parts {
		m.Write([]byte{0})
		m.Write(p)
	}
	return m.Sum(nil)
}

// PendingTag is the tag a create of spec writes with its POST: a MAC, under the stack's
// secret, of the stack id and everything the create asks for (user data as the user
// wrote it, before the host key is added). The same create retried by the same stack
// computes the same tag; another stack, or the same name with other settings, does not.
// The SSH keys and tags are compared as sets.
func (s *Stack) PendingTag(spec Spec) string {
	keys, tags := slices.Clone(spec.SSHKeys), slices.Clone(spec.Tags)
	slices.Sort(keys)
	slices.Sort(tags)
	canonical, err := json.Marshal(struct {
		Stack, Name, Region, Size, Image, VPC, UserData string
		SSHKeys, Tags                                   []string
		Monitoring                                      bool
	}{s.ID, spec.Name, spec.Region, spec.Size, spec.Image, spec.VPCUUID, spec.UserData, keys, tags, spec.Monitoring})
	if err != nil {
		panic(err) // strings, slices and a bool always marshal
	}
	return PendingTagPrefix + hex.EncodeToString(s.mac("pending tag v1", canonical)[:16])
}

// HostKey is the host key a create with the given idempotency token hands its droplet in
// user data: derived from the stack's secret and the token (random per create), so the
// retry of an interrupted create, which finds the token on the droplet, knows the key
// to pin, as the lost create did.
func (s *Stack) HostKey(token string) (HostKey, error) {
	if token == "" {
		return HostKey{}, errors.New("deriving a host key: no idempotency token")
	}
	seed := s.mac("host key v1", []byte(token))
	return hostKeyFrom(ed25519.NewKeyFromSeed(seed[:ed25519.SeedSize]))
}

// RotatedHostKey is the host key that replaces HostKey(token) on the node right after first
// contact (see InstallHostKey): derived too, under another label, so an adopted droplet
// whose lost create had already rotated its key is still recognised. Unlike HostKey's, its
// private half never travels in user data (which the metadata service keeps serving): it
// goes to the node over the SSH session pinned to the first key.
func (s *Stack) RotatedHostKey(token string) (HostKey, error) {
	if token == "" {
		return HostKey{}, errors.New("deriving a host key: no idempotency token")
	}
	seed := s.mac("rotated host key v1", []byte(token))
	return hostKeyFrom(ed25519.NewKeyFromSeed(seed[:ed25519.SeedSize]))
}

// adoptions is what one Client's run knows about pending tags: a lock per tag, held
// while a create finds or makes its droplet and while a claim untags it, and the
// droplets creates of this run hold, which no other create may adopt.
type adoptions struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
	taken map[int]bool
}

func (a *adoptions) lock(tag string) (unlock func()) {
	a.mu.Lock()
	if a.locks == nil {
		a.locks = map[string]*sync.Mutex{}
	}
	l, ok := a.locks[tag]
	if !ok {
		l = &sync.Mutex{}
		a.locks[tag] = l
	}
	a.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (a *adoptions) hold(id int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.taken == nil {
		a.taken = map[int]bool{}
	}
	a.taken[id] = true
}

func (a *adoptions) held(id int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.taken[id]
}
