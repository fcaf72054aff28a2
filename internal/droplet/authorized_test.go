package droplet

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func testPublicKey(t *testing.T, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment
}

func TestMergeAuthorizedKeys(t *testing.T) {
	t.Parallel()
	provider, a, b, byHand := testPublicKey(t, "provider"), testPublicKey(t, "a"), testPublicKey(t, "b"), testPublicKey(t, "by-hand")
	current := provider + "\n" + a + "\n# a comment\n" + byHand + "\n"
	got, err := MergeAuthorizedKeys(current, []string{a}, []string{provider, b})
	if err != nil {
		t.Fatal(err)
	}
	want := provider + "\n# a comment\n" + byHand + "\n" + b + "\n"
	if got != want {
		t.Fatalf("merged\n%s\nwant\n%s", got, want)
	}
	// A key both removed and wanted (same material, another comment) stays, once.
	same := strings.Replace(a, " a", " a-again", 1)
	got, _ = MergeAuthorizedKeys(current, []string{a}, []string{same})
	if strings.Count(got, strings.Fields(a)[1]) != 1 {
		t.Fatalf("a kept key appears %d times:\n%s", strings.Count(got, strings.Fields(a)[1]), got)
	}
	if _, err := MergeAuthorizedKeys(current, nil, []string{"garbage"}); err == nil {
		t.Fatal("a wanted key that is no key was accepted")
	}
}
