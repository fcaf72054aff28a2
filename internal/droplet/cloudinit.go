package droplet

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

const cloudConfigHeader = "#cloud-config"

// HostKey is an SSH host key made by the provider for a droplet before it exists.
type HostKey struct {
	PrivatePEM string // OpenSSH private key
	Public     string // authorized_keys form
}

// NewHostKey generates an ed25519 host key.
func NewHostKey() (HostKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return HostKey{}, err
	}
	return hostKeyFrom(priv)
}

func hostKeyFrom(priv ed25519.PrivateKey) (HostKey, error) {
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return HostKey{}, err
	}
	sshPub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return HostKey{}, err
	}
	return HostKey{PrivatePEM: string(pem.EncodeToMemory(block)), Public: conn.AuthorizedKey(sshPub)}, nil
}

// WithHostKey returns user data that makes cloud-init install the host key (its
// `ssh_keys` section), so the key is known, and pinned, before the droplet boots.
// pinned is false when the user's own user data cannot carry it: a script rather than
// #cloud-config, or a cloud-config that manages ssh_keys itself. Then the key seen on
// first contact is recorded instead.
func WithHostKey(userData string, key HostKey) (out string, pinned bool, err error) {
	section := map[string]any{
		"ed25519_private": key.PrivatePEM,
		"ed25519_public":  key.Public,
	}
	if strings.TrimSpace(userData) == "" {
		return render(map[string]any{"ssh_keys": section})
	}
	if !strings.HasPrefix(userData, cloudConfigHeader) {
		return userData, false, nil
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(userData), &doc); err != nil {
		return "", false, fmt.Errorf("user_data starts with %s but is not valid YAML: %w", cloudConfigHeader, err)
	}
	if doc == nil {
		doc = map[string]any{}
	}
	if _, own := doc["ssh_keys"]; own {
		return userData, false, nil
	}
	doc["ssh_keys"] = section
	return render(doc)
}

func render(doc map[string]any) (string, bool, error) {
	body, err := yaml.Marshal(doc)
	if err != nil {
		return "", false, err
	}
	return cloudConfigHeader + "\n" + string(body), true, nil
}
