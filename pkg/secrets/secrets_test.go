package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func keyring(t *testing.T, n int) (*Keyring, [][]byte) {
	t.Helper()
	var raw [][]byte
	for range n {
		k, _ := GenerateKey()
		b, err := ParseKeys([]string{k})
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	kr, err := NewKeyring(raw...)
	if err != nil {
		t.Fatal(err)
	}
	return kr, raw
}

func TestSealOpen(t *testing.T) {
	kr, raw := keyring(t, 1)
	sealed, err := kr.Seal("whsec_topsecret", "org/sb")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sealed, prefix) || strings.Contains(sealed, "topsecret") {
		t.Fatalf("sealed = %q", sealed)
	}
	if again, _ := kr.Seal("whsec_topsecret", "org/sb"); again == sealed {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	if got, err := kr.Open(sealed, "org/sb"); err != nil || got != "whsec_topsecret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := kr.Open(sealed, "other/sb"); err == nil {
		t.Fatal("a secret opened under another tenant's key")
	}
	tampered := sealed[:len(sealed)-2] + "AA"
	if _, err := kr.Open(tampered, "org/sb"); err == nil {
		t.Fatal("a tampered secret opened")
	}
	// Rotation: a new key first, the old one still opens old values.
	newKr, newRaw := keyring(t, 1)
	rotated, err := NewKeyring(newRaw[0], raw[0])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open(sealed, "org/sb"); err != nil || got != "whsec_topsecret" {
		t.Fatalf("old value after rotation: %q, %v", got, err)
	}
	if _, err := newKr.Open(sealed, "org/sb"); !errors.Is(err, ErrNoKey) {
		t.Fatalf("without the old key: %v", err)
	}
	if got, _ := kr.Open("whsec_plain", "org/sb"); got != "whsec_plain" {
		t.Fatal("a value stored before encryption was configured must still read")
	}
	if s := kr.String(); strings.Contains(s, string(raw[0])) {
		t.Fatal("String shows key material")
	}
}

func TestKeyFileAndBadKeys(t *testing.T) {
	a, _ := GenerateKey()
	b, _ := GenerateKey()
	p := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(p, []byte("# current\n"+a+"\n\n# previous\n"+b+"\n"), 0o600)
	keys, err := ReadKeyFile(p)
	if err != nil || len(keys) != 2 {
		t.Fatalf("ReadKeyFile = %d keys, %v", len(keys), err)
	}
	if _, err := NewKeyring([]byte("short")); err == nil {
		t.Fatal("a short key was accepted")
	}
	if _, err := ParseKeys([]string{"not base64!"}); err == nil {
		t.Fatal("a non-base64 key was accepted")
	}
	if _, err := NewKeyring(); err == nil {
		t.Fatal("an empty keyring was accepted")
	}
}
