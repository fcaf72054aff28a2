package droplet

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

func TestPendingTagIsOneCreateOfOneStack(t *testing.T) {
	t.Parallel()
	stack := testStack(t, "")
	base := Spec{Name: "web-0", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "docker-20-04", SSHKeys: []string{"1", "2"},
		Tags: []string{"a", "b"}, UserData: "#cloud-config\n", VPCUUID: "5a4981aa-9653-4bd1-bef5-d6bff52042e4"}
	tag := stack.PendingTag(base)
	if !strings.HasPrefix(tag, PendingTagPrefix) || len(tag) > 255 || !tagChars(tag) {
		t.Fatalf("PendingTag = %q, not a tag the API accepts", tag)
	}

	same := base
	same.SSHKeys, same.Tags = []string{"2", "1"}, []string{"b", "a"}
	same.IdempotencyTag = IdempotencyTag("another-token") // per request, not per create
	if got := stack.PendingTag(same); got != tag {
		t.Fatalf("the same create (sets in another order, another token) = %q, want %q", got, tag)
	}

	differs := map[string]func(*Spec){
		"name":       func(s *Spec) { s.Name = "web-1" },
		"region":     func(s *Spec) { s.Region = "fra1" },
		"size":       func(s *Spec) { s.Size = "s-2vcpu-2gb" },
		"image":      func(s *Spec) { s.Image = "ubuntu-24-04-x64" },
		"ssh keys":   func(s *Spec) { s.SSHKeys = []string{"1"} },
		"tags":       func(s *Spec) { s.Tags = []string{"a"} },
		"user data":  func(s *Spec) { s.UserData = "#cloud-config\npackages: [htop]\n" },
		"vpc":        func(s *Spec) { s.VPCUUID = "" },
		"monitoring": func(s *Spec) { s.Monitoring = true },
		// A field boundary: "ab"+"c" must not read as "a"+"bc".
		"shifted": func(s *Spec) { s.Name, s.Region = "web-0n", "yc3" },
	}
	for name, change := range differs {
		spec := base
		change(&spec)
		if stack.PendingTag(spec) == tag {
			t.Errorf("another %s gives the same pending tag", name)
		}
	}
	if testStack(t, "").PendingTag(base) == tag {
		t.Error("a stack with another SSH key gives the same pending tag")
	}
	named := *stack
	named.ID = "prod"
	if named.PendingTag(base) == tag {
		t.Error("a stack with another stack id gives the same pending tag")
	}
}

func tagChars(s string) bool {
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:-") == ""
}

func TestStackSecretDoesNotDependOnTheKeyEncoding(t *testing.T) {
	t.Parallel()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	openssh, err := ssh.MarshalPrivateKey(priv, "a comment")
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewStack("s", pem.EncodeToMemory(openssh))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewStack("s", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "web-0", Region: "nyc3"}
	if a.PendingTag(spec) != b.PendingTag(spec) {
		t.Fatal("the same key as OpenSSH and as PKCS#8 gives two stack secrets")
	}
}

func TestNewStackRefuses(t *testing.T) {
	t.Parallel()
	key := pem.EncodeToMemory(must(ssh.MarshalPrivateKey(ed25519.NewKeyFromSeed(make([]byte, 32)), "")))
	cases := map[string]struct {
		id  string
		key []byte
	}{
		"a stack id that is no tag": {id: "prod.eu", key: key},
		"a stack id too long":       {id: strings.Repeat("x", 65), key: key},
		"no key":                    {id: "prod", key: nil},
		"not a key":                 {id: "prod", key: []byte("hello")},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewStack(tc.id, tc.key); err == nil {
				t.Fatal("NewStack accepted it")
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestStackHostKeyIsTheCreatesOwn(t *testing.T) {
	t.Parallel()
	stack := testStack(t, "")
	a1, err := stack.HostKey("tok-a")
	if err != nil {
		t.Fatal(err)
	}
	a2 := must(stack.HostKey("tok-a"))
	b := must(stack.HostKey("tok-b"))
	other := must(testStack(t, "").HostKey("tok-a"))
	if a1.Public != a2.Public || !strings.HasPrefix(a1.Public, "ssh-ed25519 AAAA") {
		t.Fatalf("the same create's host key is %q, then %q", a1.Public, a2.Public)
	}
	if b.Public == a1.Public || other.Public == a1.Public {
		t.Fatal("another token, or another stack's secret, derives the same host key")
	}
	// The private half matches the public one (cloud-init installs both).
	signer, err := ssh.ParsePrivateKey([]byte(a2.PrivatePEM))
	if err != nil || conn.AuthorizedKey(signer.PublicKey()) != a1.Public {
		t.Fatalf("the private key does not go with the public one: %v", err)
	}
	if _, err := stack.HostKey(""); err == nil {
		t.Fatal("HostKey derived a key from no token")
	}
}

func TestProviderTagsAreHidden(t *testing.T) {
	t.Parallel()
	for tag, hidden := range map[string]bool{
		ManagedTag: true, IdempotencyTag("t"): true, PendingTagPrefix + "00": true, StackTagPrefix + "prod": true,
		"web": false, "microswarm-web": false, "prod:microswarm": false,
	} {
		if IsProviderTag(tag) != hidden {
			t.Errorf("IsProviderTag(%q) = %v", tag, !hidden)
		}
	}
}
