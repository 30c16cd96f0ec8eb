package signature

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The reference implementation must accept what we sign.
func TestSignMatchesStandardWebhooks(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"requestId":"r1","eventType":"message.feedback"}`)
	now := time.Now().Unix()
	sig := s.AppendSignature(nil, "msg_1", now, body)

	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", strconv.FormatInt(now, 10))
	h.Set("webhook-signature", string(sig))
	if err := wh.Verify(body, h); err != nil {
		t.Fatalf("standard-webhooks rejects our signature %s: %v", sig, err)
	}
	ref, err := wh.Sign("msg_1", time.Unix(now, 0), body)
	if err != nil {
		t.Fatal(err)
	}
	if ref != string(sig) {
		t.Fatalf("signature differs from reference:\n ours %s\n ref  %s", sig, ref)
	}
}

func TestVerifier(t *testing.T) {
	old, _ := NewSecret()
	cur, _ := NewSecret()
	other, _ := NewSecret()
	so, _ := NewSigner(old)
	sc, _ := NewSigner(cur)
	body := []byte(`{}`)
	now := time.Unix(1_800_000_000, 0)
	both := string(sc.AppendSignature(nil, "id", now.Unix(), body)) + " " + string(so.AppendSignature(nil, "id", now.Unix(), body))

	v, err := NewVerifier(old)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return now }
	tests := []struct {
		name      string
		v         *Verifier
		id, ts    string
		sigs      string
		body      []byte
		wantError error
	}{
		{"rotated pair, old secret", v, "id", "1800000000", both, body, nil},
		{"wrong id", v, "id2", "1800000000", both, body, ErrNoSignature},
		{"wrong body", v, "id", "1800000000", both, []byte(`{ }`), ErrNoSignature},
		{"stale", v, "id", "1799999000", both, body, ErrTimestampSkew},
		{"garbage ts", v, "id", "x", both, body, ErrTimestampInvalid},
		{"unknown secret", mustVerifier(t, other, now), "id", "1800000000", both, body, ErrNoSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.v.Verify(tt.id, tt.ts, tt.sigs, tt.body); err != tt.wantError {
				t.Fatalf("Verify = %v, want %v", err, tt.wantError)
			}
		})
	}
}

func mustVerifier(t *testing.T, secret string, now time.Time) *Verifier {
	v, err := NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return now }
	return v
}

func TestSecretsAreNotPrinted(t *testing.T) {
	secret, _ := NewSecret()
	s, _ := NewSigner(secret)
	if strings.Contains(s.String(), secret[6:12]) {
		t.Fatal("Signer.String leaks the key")
	}
	for _, bad := range []string{"", "whsec_", "whsec_!!", "abc_" + secret[6:], Prefix + "c2hvcnQ="} {
		if _, err := NewSigner(bad); err != ErrInvalidSecret {
			t.Fatalf("NewSigner(%q) = %v", bad, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	secret, _ := NewSecret()
	v, _ := NewVerifier(secret)
	f.Add("id", "1800000000", "v1,abc", []byte("{}"))
	f.Fuzz(func(t *testing.T, id, ts, sigs string, body []byte) {
		_ = v.Verify(id, ts, sigs, body) // must not panic
	})
}

func BenchmarkSign(b *testing.B) {
	secret, _ := NewSecret()
	s, _ := NewSigner(secret)
	body := make([]byte, 700)
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		dst = s.AppendSignature(dst[:0], "msg_0123456789abcdef0123456789abcdef", 1_800_000_000, body)
	}
}
