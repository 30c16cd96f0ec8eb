package admin

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/feedbackd/feedbackd/pkg/endpointauth"
	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// rotateKey gives a jwt config a new key; the old kid stays in the JWKS for
// the grace period. For HS256 the new secret is returned, once.
func (a *api) rotateKey(w http.ResponseWriter, r *http.Request) {
	var g webhook.Generated
	st, err := a.store.Update(r.Context(), r.PathValue("imsOrg"), r.PathValue("sandboxId"), func(st *webhook.Stored) error {
		var err error
		g, err = st.RotateKey(time.Now().UTC(), a.opts.RotationGrace)
		return err
	})
	if errors.Is(err, webhook.ErrNotJWT) {
		writeError(w, http.StatusConflict, "not_jwt", "this config's auth.type is not jwt: it has no key to rotate", "auth.type")
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	a.jwks.invalidate()
	a.log.Info("JWT key rotated", "org", st.Org, "sandbox", st.Sandbox.ID, "kid", g.KeyID)
	writeJSON(w, http.StatusOK, answer(st, g))
}

// jwksCache holds the JWKS for a short time: it is built from every
// config, and receivers fetch it often.
type jwksCache struct {
	mu    sync.Mutex
	keys  []endpointauth.JWK
	until time.Time
}

func (c *jwksCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.until = time.Time{}
}

// serveJWKS publishes the public keys of every asymmetric JWT config,
// current and still-valid rotated ones, by kid. It needs no token: public
// keys are public.
func (a *api) serveJWKS(w http.ResponseWriter, r *http.Request) {
	a.jwks.mu.Lock()
	defer a.jwks.mu.Unlock()
	now := time.Now()
	if now.After(a.jwks.until) {
		list, err := a.store.List(r.Context(), "")
		if err != nil {
			a.fail(w, err)
			return
		}
		keys := []endpointauth.JWK{}
		until := now.Add(30 * time.Second)
		for _, st := range list {
			for _, k := range st.JWTKeys {
				if !endpointauth.Asymmetric(k.Algorithm) || (!k.NotAfter.IsZero() && now.After(k.NotAfter)) {
					continue
				}
				if !k.NotAfter.IsZero() && k.NotAfter.Before(until) {
					until = k.NotAfter // a rotated key leaves the set on time
				}
				jwk, err := endpointauth.PublicJWK(k.Algorithm, k.ID, k.Material)
				if err != nil {
					a.log.Error("JWT key unusable", "org", st.Org, "sandbox", st.Sandbox.ID, "kid", k.ID, "error", err)
					continue
				}
				keys = append(keys, jwk)
			}
		}
		a.jwks.keys, a.jwks.until = keys, until
	}
	w.Header().Set("Cache-Control", "public, max-age=30")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	writeCacheable(w, map[string]any{"keys": a.jwks.keys})
}
