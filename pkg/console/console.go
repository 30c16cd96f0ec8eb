// Package console serves the web console at /ui/: server-rendered pages
// over the admin API. Every change a page makes is a request to the admin
// API's own handler, served in process with the session's bearer token, so
// the console has exactly the API's scopes, validation and field errors and
// no second implementation of either.
//
// Sessions live in the memory of the instance that signed the user in
// (behind a load balancer, make it sticky or sign in again); the bearer
// token stays on the server and never reaches a page, a URL or a log.
package console

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/feedbackd/feedbackd/pkg/adminauth"
)

//go:embed assets
var assets embed.FS

// Prefix is where the console is mounted.
const Prefix = "/ui/"

// DefaultSessionTTL bounds a session's lifetime.
const DefaultSessionTTL = 8 * time.Hour

const cookieName = "feedbackd_session"

// Options configure the console.
type Options struct {
	// Auth tells who a sign-in token belongs to: the admin API's verifier.
	Auth *adminauth.Verifier
	// PlainHTTP drops the Secure attribute of the session cookie, for a
	// console reached over plain HTTP (development, embedded mode).
	PlainHTTP  bool
	SessionTTL time.Duration // 0: DefaultSessionTTL
	Logger     *slog.Logger
}

// Console is the console's handler. It is safe for concurrent use.
type Console struct {
	api   http.Handler
	opts  Options
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux

	mu       sync.Mutex
	sessions map[string]*session
}

// session is one signed-in user. token is the bearer token every API call
// of the session carries; csrf is the value each form must post back.
type session struct {
	id, csrf, token string
	who             adminauth.Principal
	expires         time.Time
}

// New returns the console over api, the admin API's handler.
func New(api http.Handler, opts Options) *Console {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	c := &Console{api: api, opts: opts, log: opts.Logger, pages: parsePages(), sessions: map[string]*session{}}
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets/static")
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /ui/static/{file}", func(w http.ResponseWriter, r *http.Request) { files.ServeHTTP(w, r) })
	mux.HandleFunc("GET /ui/{$}", c.home)
	mux.HandleFunc("GET /ui/signin", c.signinPage)
	mux.HandleFunc("POST /ui/signin", c.signin)
	mux.HandleFunc("POST /ui/signout", c.signedIn(c.signout))
	mux.HandleFunc("GET /ui/webhooks", c.signedIn(c.inventory))
	mux.HandleFunc("GET /ui/webhooks/new", c.signedIn(c.newForm))
	mux.HandleFunc("POST /ui/webhooks/new", c.signedIn(c.create))
	mux.HandleFunc("GET /ui/webhooks/{org}/{sb}", c.signedIn(c.editForm))
	mux.HandleFunc("POST /ui/webhooks/{org}/{sb}", c.signedIn(c.save))
	mux.HandleFunc("GET /ui/webhooks/{org}/{sb}/delete", c.signedIn(c.deleteConfirm))
	mux.HandleFunc("POST /ui/webhooks/{org}/{sb}/delete", c.signedIn(c.remove))
	mux.HandleFunc("POST /ui/webhooks/{org}/{sb}/test", c.signedIn(c.test))
	mux.HandleFunc("POST /ui/webhooks/{org}/{sb}/rotate-secret", c.signedIn(c.rotateSecret))
	mux.HandleFunc("POST /ui/webhooks/{org}/{sb}/rotate-key", c.signedIn(c.rotateKey))
	mux.HandleFunc("POST /ui/webhooks/{org}/{sb}/campaigns", c.signedIn(c.campaign))
	mux.HandleFunc("POST /ui/webhooks/{org}/{sb}/recover", c.signedIn(c.startRecovery))
	mux.HandleFunc("GET /ui/webhooks/{org}/{sb}/recoveries/{id}", c.signedIn(c.recovery))
	mux.HandleFunc("GET /ui/webhooks/{org}/{sb}/log", c.signedIn(c.deliveryLog))
	mux.HandleFunc("GET /ui/webhooks/{org}/{sb}/messages/{id}", c.signedIn(c.message))
	mux.HandleFunc("GET /ui/dlq", c.signedIn(c.deadLetters))
	mux.HandleFunc("GET /ui/dlq/{topic}/{partition}/{offset}", c.signedIn(c.deadLetter))
	mux.HandleFunc("POST /ui/dlq/replay", c.signedIn(c.replay))
	mux.HandleFunc("GET /ui/replays/{id}", c.signedIn(c.replayPage))
	mux.HandleFunc("GET /ui/progress/replays/{id}", c.signedIn(c.replayProgress))
	mux.HandleFunc("GET /ui/progress/recoveries/{org}/{sb}/{id}", c.signedIn(c.recoveryProgress))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) { c.notFound(w, r, nil) })
	c.mux = mux
	return c
}

// csp allows nothing inline and nothing from another origin.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"

var crossOrigin = http.NewCrossOriginProtection()

// ServeHTTP sets the security headers, refuses cross-site requests that
// change something (Sec-Fetch-Site and Origin, net/http's
// CrossOriginProtection) and routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if err := crossOrigin.Check(r); err != nil {
		c.log.Info("console refused a cross-origin request", "method", r.Method, "path", r.URL.Path)
		c.renderStatus(w, r, http.StatusForbidden, "refused", "This request came from another site and was refused.")
		return
	}
	c.mux.ServeHTTP(w, r)
}

// newID returns 256 random bits as text.
func newID() string { return rand.Text() + rand.Text() }

// startSession stores a session for token and sets its cookie.
func (c *Console) startSession(w http.ResponseWriter, token string, who adminauth.Principal) {
	s := &session{id: newID(), csrf: newID(), token: token, who: who, expires: time.Now().Add(c.opts.SessionTTL)}
	c.mu.Lock()
	now := time.Now()
	for id, old := range c.sessions { // the store stays bounded by the sessions alive
		if now.After(old.expires) {
			delete(c.sessions, id)
		}
	}
	c.sessions[s.id] = s
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: s.id, Path: Prefix, Expires: s.expires, MaxAge: int(c.opts.SessionTTL.Seconds()),
		HttpOnly: true, Secure: !c.opts.PlainHTTP, SameSite: http.SameSiteStrictMode,
	})
}

// session returns the request's live session, or nil.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if time.Now().After(s.expires) {
		delete(c.sessions, s.id)
		return nil
	}
	return s
}

func (c *Console) endSession(w http.ResponseWriter, s *session) {
	c.mu.Lock()
	delete(c.sessions, s.id)
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, Secure: !c.opts.PlainHTTP, SameSite: http.SameSiteStrictMode})
}

// signedIn admits requests of a live session (others go to the sign-in
// page) and, for POSTs, with the session's CSRF token in the form.
func (c *Console) signedIn(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil {
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/ui/progress/") {
				http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
				return
			}
			c.renderStatus(w, r, http.StatusUnauthorized, "signed out", "Your session has ended: sign in again.")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
				c.renderStatus(w, r, http.StatusForbidden, "refused", "This form is out of date or came from elsewhere: reload the page and try again.")
				return
			}
		}
		h(w, r, s)
	}
}
