package configstore

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/secrets"
	"github.com/feedbackd/feedbackd/pkg/signature"
	"github.com/feedbackd/feedbackd/pkg/webhook"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// The tenant of the seed payload: its config key is longer than the 32
// bytes Go concatenates on the stack.
const benchOrg, benchSandbox = "myImsOrg", "068abf40-575e-11ea-8512-9b1bfdb82603"

// benchStore returns a Store over a real redis-server that holds one
// encrypted config and the "loaded" marker, as the syncer leaves them.
// Lookup only reads Redis, so no Kafka (and no Run) is needed.
func benchStore(b *testing.B, ttl time.Duration) *Store {
	b.Helper()
	r := testenv.StartRedis(b)
	raw := make([]byte, 32)
	rand.Read(raw)
	kr, err := secrets.NewKeyring(raw)
	if err != nil {
		b.Fatal(err)
	}
	s := New(nil, nil, r.Client, Options{KeyPrefix: "bench:", CacheTTL: ttl, Keyring: kr})
	secret, err := signature.NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	st := &webhook.Stored{Config: webhook.Config{
		Org: benchOrg, Sandbox: webhook.Sandbox{ID: benchSandbox, Name: "prod"}, Name: "feedback",
		Channels: []string{"email", "sms"}, URL: "https://hooks.example.com/feedback",
		Auth: webhook.Auth{Type: webhook.AuthNone}, Headers: map[string]string{"X-Team": "crm"},
		Campaigns: []string{"*"}, Enabled: true,
	}, Secrets: []webhook.Secret{{Value: secret}}}
	key := webhook.Key(benchOrg, benchSandbox)
	v, err := s.encode(key, st)
	if err != nil {
		b.Fatal(err)
	}
	ctx := testenv.Context(b, 10*time.Second)
	if err := applyScript.Run(ctx, r.Client, []string{s.redisKey(key)}, 1, string(v)).Err(); err != nil {
		b.Fatal(err)
	}
	if err := r.Client.Set(ctx, s.markerKey(), "bench", 0).Err(); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkLookupCacheHit is the hot path: every event's tenant is looked
// up, and almost always found in the local cache.
func BenchmarkLookupCacheHit(b *testing.B) {
	s := benchStore(b, time.Hour)
	ctx := b.Context()
	if _, err := s.Lookup(ctx, benchOrg, benchSandbox); err != nil { // fills the cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Lookup(ctx, benchOrg, benchSandbox); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupRedis is a local cache miss: one pipelined round trip to
// a loopback redis-server, then decoding, decrypting and building the
// target.
func BenchmarkLookupRedis(b *testing.B) {
	s := benchStore(b, time.Nanosecond) // every entry has expired by the next lookup
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Lookup(ctx, benchOrg, benchSandbox); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendKeyIsWebhookKey(t *testing.T) {
	for _, k := range [][2]string{{"", ""}, {"org1", "sb1"}, {benchOrg, benchSandbox}, {strings.Repeat("o", 128), strings.Repeat("s", 128)}} {
		if got, want := string(appendKey(nil, k[0], k[1])), webhook.Key(k[0], k[1]); got != want {
			t.Fatalf("appendKey(%q, %q) = %q, webhook.Key = %q", k[0], k[1], got, want)
		}
	}
}
