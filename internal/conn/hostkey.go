package conn

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyPolicy decides what happens when a host's key is not pinned anywhere.
type HostKeyPolicy string

const (
	// HostKeyStrict refuses a host whose key is neither pinned nor in known_hosts.
	HostKeyStrict HostKeyPolicy = "strict"
	// HostKeyAcceptNew trusts a key seen for the first time (and reports it, so the
	// caller can record it); a key that differs from a pinned one is still refused.
	HostKeyAcceptNew HostKeyPolicy = "accept-new"
)

// HostKeyPolicies lists the policies, for validators and docs.
var HostKeyPolicies = []HostKeyPolicy{HostKeyStrict, HostKeyAcceptNew}

// UnknownHostKeyError is returned when nothing vouches for a host's key.
type UnknownHostKeyError struct {
	Address string
	Key     ssh.PublicKey
}

func (e *UnknownHostKeyError) Error() string {
	return fmt.Sprintf("ssh: the host key of %s is not trusted yet: %s %s. "+
		"If that is the key you expect, trust it by setting host_key = %q on the resource, "+
		"or by adding \"%s %s\" to the provider's ssh_known_hosts_file, "+
		"or allow first-use trust with host_key_policy = \"accept-new\"",
		e.Address, e.Key.Type(), ssh.FingerprintSHA256(e.Key), AuthorizedKey(e.Key),
		knownhosts.Normalize(e.Address), AuthorizedKey(e.Key))
}

// HostKeyMismatchError is returned when a host presents a key other than the trusted one.
type HostKeyMismatchError struct {
	Address string
	Want    []ssh.PublicKey
	Got     ssh.PublicKey
}

func (e *HostKeyMismatchError) Error() string {
	want := make([]string, 0, len(e.Want))
	for _, k := range e.Want {
		want = append(want, k.Type()+" "+ssh.FingerprintSHA256(k))
	}
	return fmt.Sprintf("ssh: the host key of %s has CHANGED: trusted %s, presented %s %s. "+
		"Either the host was rebuilt or someone is intercepting the connection; "+
		"if the host was rebuilt, update host_key (or known_hosts) to the new key",
		e.Address, strings.Join(want, ", "), e.Got.Type(), ssh.FingerprintSHA256(e.Got))
}

// AuthorizedKey renders a public key the way host_key attributes and authorized_keys
// hold it: "ssh-ed25519 AAAA...", without a trailing newline.
func AuthorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// ParseHostKeys parses one or more public keys in authorized_keys form, one per line.
func ParseHostKeys(text string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	rest := []byte(text)
	for len(bytes.TrimSpace(rest)) > 0 {
		key, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return nil, fmt.Errorf("invalid host key %q: want the form \"ssh-ed25519 AAAA...\": %w", strings.TrimSpace(text), err)
		}
		keys = append(keys, key)
		rest = r
	}
	return keys, nil
}

// hostKeyVerifier checks a presented key against, in order: the key pinned for the
// target, the known_hosts file, and the policy for hosts nothing vouches for.
type hostKeyVerifier struct {
	pinned     []ssh.PublicKey
	knownHosts ssh.HostKeyCallback
	policy     HostKeyPolicy
}

func (v hostKeyVerifier) verify(address string, remote net.Addr, key ssh.PublicKey) error {
	if len(v.pinned) > 0 {
		for _, p := range v.pinned {
			if bytes.Equal(p.Marshal(), key.Marshal()) {
				return nil
			}
		}
		return &HostKeyMismatchError{Address: address, Want: v.pinned, Got: key}
	}
	if v.knownHosts != nil {
		err := v.knownHosts(knownhosts.Normalize(address), remote, key)
		if err == nil {
			return nil
		}
		var keyErr *knownhosts.KeyError
		if !errors.As(err, &keyErr) {
			return fmt.Errorf("ssh: checking known_hosts for %s: %w", address, err)
		}
		if len(keyErr.Want) > 0 {
			want := make([]ssh.PublicKey, 0, len(keyErr.Want))
			for _, k := range keyErr.Want {
				want = append(want, k.Key)
			}
			return &HostKeyMismatchError{Address: address, Want: want, Got: key}
		}
	}
	if v.policy == HostKeyAcceptNew {
		return nil
	}
	return &UnknownHostKeyError{Address: address, Key: key}
}

// algorithms are the host key algorithms to ask the server for, so that a server with
// several host keys presents the one that is trusted rather than its first choice.
func (v hostKeyVerifier) algorithms(address string) []string {
	trusted := v.pinned
	if len(trusted) == 0 && v.knownHosts != nil {
		// known_hosts reveals the keys it holds for a host only through a KeyError,
		// so ask it about a throwaway key.
		var keyErr *knownhosts.KeyError
		if errors.As(v.knownHosts(knownhosts.Normalize(address), placeholderAddr{}, throwawayKey()), &keyErr) {
			for _, k := range keyErr.Want {
				trusted = append(trusted, k.Key)
			}
		}
	}
	if len(trusted) == 0 {
		return preferredAlgorithms
	}
	var algos []string
	for _, k := range trusted {
		algos = append(algos, algorithmsFor(k.Type())...)
	}
	return algos
}

// preferredAlgorithms order host key types when nothing is trusted yet, ed25519 first as
// in OpenSSH, so a key recorded on first use is the one cloud-init seeded.
var preferredAlgorithms = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// algorithmsFor maps a key type to the signature algorithms a server may use with it.
func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

type placeholderAddr struct{}

func (placeholderAddr) Network() string { return "tcp" }
func (placeholderAddr) String() string  { return "0.0.0.0:0" }

var throwawayKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})
