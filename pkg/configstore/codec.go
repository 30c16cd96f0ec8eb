package configstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/feedbackd/feedbackd/pkg/secrets"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// encode is a config as written to the configs topic: expired secrets
// pruned and every secret field sealed with the keyring, bound to the
// config key so a sealed value cannot be moved to another tenant.
func (s *Store) encode(key string, st *webhook.Stored) ([]byte, error) {
	c := *st // the slices are copied before Prune edits them in place
	c.Secrets = append([]webhook.Secret(nil), c.Secrets...)
	c.JWTKeys = append([]webhook.JWTKey(nil), c.JWTKeys...)
	c.Prune(time.Now())
	seal := func(v *string) error {
		if s.opts.Keyring == nil {
			return nil
		}
		sealed, err := s.opts.Keyring.Seal(*v, key)
		*v = sealed
		return err
	}
	for i := range c.Secrets {
		if err := seal(&c.Secrets[i].Value); err != nil {
			return nil, err
		}
	}
	for i := range c.JWTKeys {
		if err := seal(&c.JWTKeys[i].Material); err != nil {
			return nil, err
		}
	}
	if err := seal(&c.ClientSecret); err != nil {
		return nil, err
	}
	return json.Marshal(&c)
}

// decode reads a stored config and opens its secret fields. Values stored
// before encryption was configured are read as they are.
func (s *Store) decode(key string, b []byte) (*webhook.Stored, error) {
	var st struct {
		webhook.Stored
		Legacy string `json:"signingSecret"` // single secret, before rotation existed
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, key, err)
	}
	out := st.Stored
	if len(out.Secrets) == 0 && st.Legacy != "" {
		out.Secrets = []webhook.Secret{{Value: st.Legacy}}
	}
	open := func(v *string) error {
		if s.opts.Keyring == nil {
			return nil
		}
		plain, err := s.opts.Keyring.Open(*v, key)
		if errors.Is(err, secrets.ErrNoKey) {
			if s.missing.set(key, err) { // once per config, not per event
				s.opts.Logger.Error("webhook config's secrets do not open: its events wait until feedbackd has the key (secrets.keys, secrets.key_file)",
					"org_sandbox", key, "error", err)
			}
			return fmt.Errorf("%w: %s: %w", ErrKeyMissing, key, err)
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrCorrupt, key, err)
		}
		*v = plain
		return nil
	}
	for i := range out.Secrets {
		if err := open(&out.Secrets[i].Value); err != nil {
			return nil, err
		}
	}
	for i := range out.JWTKeys {
		if err := open(&out.JWTKeys[i].Material); err != nil {
			return nil, err
		}
	}
	if err := open(&out.ClientSecret); err != nil {
		return nil, err
	}
	s.missing.set(key, nil)
	return &out, nil
}

// missingKeys are the configs whose secrets the last read could not open
// for want of a key, for readiness. It is safe for concurrent use.
type missingKeys struct {
	mu sync.Mutex
	m  map[string]error // config key: the secrets error, naming the key id
}

// set records the outcome of opening the secrets of config key: err is
// nil once they opened. It reports whether key is newly missing.
func (k *missingKeys) set(key string, err error) (added bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.m, key)
		return false
	}
	if k.m == nil {
		k.m = map[string]error{}
	}
	_, had := k.m[key]
	k.m[key] = err
	return !had
}

// keys returns the configs whose secrets did not open.
func (k *missingKeys) keys() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Collect(maps.Keys(k.m))
}

// err describes the configs whose secrets do not open, or is nil.
func (k *missingKeys) err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, e := range k.m { // one is enough to say which key
		return fmt.Errorf("%d webhook configs cannot be used: %w; restart with that key in secrets.keys or secrets.key_file", len(k.m), e)
	}
	return nil
}
