package adminauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The messages operators read when jwt.public_key_file is not a public key.
func TestReadPublicKeyFile(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	block := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	for _, c := range []struct {
		name, content string
		want          string // the error after "<path>: "; "": none
		prefix        bool   // want is the start of the error
	}{
		{"public key", block("PUBLIC KEY", der), "", false},
		{"not PEM", "hello", "not PEM", false},
		{"private key", block("PRIVATE KEY", []byte("x")), `PEM block "PRIVATE KEY" is not a public key`, false},
		{"bad DER", block("PUBLIC KEY", []byte("x")), "asn1: ", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			keys, err := ReadPublicKeyFile(path)
			switch {
			case c.want == "":
				if err != nil || !priv.PublicKey.Equal(keys[""]) {
					t.Fatalf("ReadPublicKeyFile: %v, %v", keys, err)
				}
			case err == nil:
				t.Fatal("ReadPublicKeyFile accepted it")
			case c.prefix && !strings.HasPrefix(err.Error(), path+": "+c.want),
				!c.prefix && err.Error() != path+": "+c.want:
				t.Fatalf("ReadPublicKeyFile: %v, want %s: %s", err, path, c.want)
			}
		})
	}
}
