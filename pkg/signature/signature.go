// Package signature implements Standard Webhooks v1 signatures
// (https://www.standardwebhooks.com): HMAC-SHA256 over
// "<webhook-id>.<webhook-timestamp>.<body>", sent as "v1,<base64>" in the
// webhook-signature header, with secrets written "whsec_<base64 key>".
package signature

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Prefix starts every signing secret.
const Prefix = "whsec_"

// keyBytes is the length of generated keys; Standard Webhooks asks for
// 24 to 64 bytes.
const keyBytes = 32

// ErrInvalidSecret is returned for a secret that is not whsec_<base64>.
var ErrInvalidSecret = errors.New("signing secret must be whsec_ followed by base64 of 24 to 64 bytes")

// NewSecret returns a fresh random signing secret.
func NewSecret() (string, error) {
	key := make([]byte, keyBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate signing secret: %w", err)
	}
	return Prefix + base64.StdEncoding.EncodeToString(key), nil
}

// Signer signs webhooks with one secret. It is safe for concurrent use and
// does not allocate per signature. Its String method never reveals the key.
type Signer struct {
	pool sync.Pool // of *state
}

type state struct {
	mac hash.Hash
	buf []byte
}

// NewSigner parses a whsec_ secret.
func NewSigner(secret string) (*Signer, error) {
	key, err := decodeSecret(secret)
	if err != nil {
		return nil, err
	}
	s := &Signer{}
	s.pool.New = func() any {
		return &state{mac: hmac.New(sha256.New, key), buf: make([]byte, 0, 192)}
	}
	return s, nil
}

func decodeSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, Prefix)
	if !ok {
		return nil, ErrInvalidSecret
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, ErrInvalidSecret
	}
	return key, nil
}

func (s *Signer) String() string { return "signature.Signer{whsec_<redacted>}" }

// AppendSignature appends "v1,<base64 signature>" to dst.
func (s *Signer) AppendSignature(dst []byte, id string, timestamp int64, body []byte) []byte {
	st := s.pool.Get().(*state)
	st.mac.Reset()
	st.buf = append(st.buf[:0], id...)
	st.buf = append(st.buf, '.')
	st.buf = strconv.AppendInt(st.buf, timestamp, 10)
	st.buf = append(st.buf, '.')
	st.mac.Write(st.buf)
	st.mac.Write(body)
	var sum [sha256.Size]byte
	st.buf = st.mac.Sum(st.buf[:0])
	copy(sum[:], st.buf)
	s.pool.Put(st)

	dst = append(dst, "v1,"...)
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// Verification errors.
var (
	ErrNoSignature      = errors.New("no valid v1 signature matches")
	ErrTimestampInvalid = errors.New("webhook-timestamp is missing or not a number")
	ErrTimestampSkew    = errors.New("webhook-timestamp is outside the tolerance")
)

// Verifier checks incoming webhooks, as a receiver would: the timestamp must
// be within Tolerance of now and one of the space-separated signatures must
// match one of the secrets. It is what the demo receiver uses; tests verify
// with an independent implementation instead.
type Verifier struct {
	signers   []*Signer
	Tolerance time.Duration
	Now       func() time.Time
}

// NewVerifier accepts any of the given secrets (several during rotation).
func NewVerifier(secrets ...string) (*Verifier, error) {
	v := &Verifier{Tolerance: 5 * time.Minute, Now: time.Now}
	for _, sec := range secrets {
		s, err := NewSigner(sec)
		if err != nil {
			return nil, err
		}
		v.signers = append(v.signers, s)
	}
	return v, nil
}

// Verify checks the headers webhook-id, webhook-timestamp and
// webhook-signature against body.
func (v *Verifier) Verify(id, timestamp, signatures string, body []byte) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrTimestampInvalid
	}
	if d := v.Now().Sub(time.Unix(ts, 0)); d > v.Tolerance || d < -v.Tolerance {
		return ErrTimestampSkew
	}
	for _, s := range v.signers {
		want := s.AppendSignature(nil, id, ts, body)
		for _, got := range strings.Fields(signatures) {
			if subtle.ConstantTimeCompare([]byte(got), want) == 1 {
				return nil
			}
		}
	}
	return ErrNoSignature
}
