package admin

import (
	"context"
	"net/http"
	"strings"

	"github.com/feedbackd/feedbackd/pkg/adminauth"
)

type principalKey struct{}

// principal is the caller of an authenticated request.
func principal(r *http.Request) adminauth.Principal {
	p, _ := r.Context().Value(principalKey{}).(adminauth.Principal)
	return p
}

// authenticated admits requests with a valid bearer token: 401 otherwise.
func (a *api) authenticated(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.opts.Auth.Verify(bearer(r.Header.Get("Authorization")))
		if err != nil {
			if err != adminauth.ErrUnauthorized { // a JWT that failed: say why, never the token
				a.log.Info("admin token refused", "error", err)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="feedbackd"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required", "")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// bearer returns the token of an "Authorization: Bearer <token>" header
// (the scheme is case-insensitive, RFC 9110), or "" for anything else: a
// bare token is not a bearer token.
func bearer(h string) string {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimLeft(token, " ")
}

// scoped answers 404 for a resource of an organisation the caller may not
// act on, exactly as if it did not exist.
func (a *api) scoped(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !principal(r).Allows(r.PathValue("imsOrg")) {
			writeNotFound(w)
			return
		}
		h(w, r)
	}
}

func writeNotFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "not_found", "no webhook config for this organisation and sandbox", "")
}
