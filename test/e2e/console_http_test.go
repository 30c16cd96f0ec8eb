package e2e

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/feedbackd/feedbackd/pkg/daemon"
)

// consoleClient is a signed-in console session over plain HTTP, without a
// browser: it sends the session cookie by hand (it is Secure by default,
// and the test's listener is plain HTTP).
type consoleClient struct {
	t      *testing.T
	base   string
	cookie *http.Cookie
	csrf   string
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (c *consoleClient) do(method, path string, form url.Values, header http.Header) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, c.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	resp, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if m := csrfField.FindStringSubmatch(string(b)); m != nil {
		c.csrf = m[1]
	}
	return resp, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs in with token and returns the session's cookie as set.
func signIn(t *testing.T, base, token string) (*consoleClient, *http.Cookie) {
	t.Helper()
	c := &consoleClient{t: t, base: base}
	resp, _ := c.do("POST", "/ui/signin", url.Values{"token": {token}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "feedbackd_session" {
			c.cookie = ck
		}
	}
	if c.cookie == nil {
		t.Fatal("sign-in set no session cookie")
	}
	c.do("GET", "/ui/webhooks", nil, nil) // reads the CSRF token
	return c, c.cookie
}

// The console's security model over plain HTTP: the cookie's attributes,
// the headers of every page, CSRF and cross-origin refusals, the same field
// errors as the API for the same bad input, and no 500 for garbage.
func TestConsoleSecurity(t *testing.T) {
	h := start(t, nil) // http.ui_plain_http false: the cookie is Secure
	c, ck := signIn(t, h.direct, token)
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" || ck.MaxAge <= 0 || ck.MaxAge > 8*3600 {
		t.Errorf("session cookie: %+v", ck)
	}
	if strings.Contains(ck.Value, token) {
		t.Error("the cookie carries the token")
	}

	resp, page := c.do("GET", "/ui/webhooks", nil, nil)
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	} {
		if got := resp.Header.Get(k); !strings.Contains(got, want) {
			t.Errorf("%s: %q", k, got)
		}
	}
	for _, d := range []string{"frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), d) {
			t.Errorf("CSP lacks %s", d)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "style=") || strings.Contains(page, token) {
		t.Error("a page has an inline script or style, or the token")
	}

	good := url.Values{"imsOrg": {"orgS"}, "sandboxId": {"sb"}, "name": {"n"}, "email": {"1"},
		"url": {"http://127.0.0.1:1/x"}, "authType": {"none"}, "enabled": {"1"}}

	// A POST without the session's CSRF token, or from another origin, is refused.
	if resp, _ := c.do("POST", "/ui/webhooks/new", good, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no CSRF token: %d", resp.StatusCode)
	}
	withCSRF := func(v url.Values) url.Values {
		out := url.Values{"csrf": {c.csrf}}
		for k, vs := range v {
			out[k] = vs
		}
		return out
	}
	for _, hd := range []http.Header{{"Sec-Fetch-Site": {"cross-site"}}, {"Sec-Fetch-Site": {"same-site"}}, {"Origin": {"http://evil.example"}}} {
		if resp, _ := c.do("POST", "/ui/webhooks/new", withCSRF(good), hd); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%v: %d", hd, resp.StatusCode)
		}
	}
	if code := h.call("GET", "/v1/webhooks/orgS/sb", nil, nil); code != http.StatusNotFound {
		t.Fatalf("a refused POST created the config: %d", code)
	}

	// Bad input through the form gets the API's field and message.
	cases := []struct {
		name  string
		set   map[string]string
		field string
	}{
		{"no org", map[string]string{"imsOrg": ""}, "imsOrg"},
		{"bad sandbox", map[string]string{"sandboxId": "a b"}, "sandbox.id"},
		{"no channel", map[string]string{"email": ""}, "channels"},
		{"ftp url", map[string]string{"url": "ftp://x"}, "url"},
		{"auth type", map[string]string{"authType": "magic"}, "auth.type"},
		{"jwt algorithm", map[string]string{"authType": "jwt", "algorithm": "none"}, "auth.algorithm"},
		{"jwt lifetime", map[string]string{"authType": "jwt", "algorithm": "HS256", "expiresIn": "5 years"}, "auth.expiresIn"},
		{"reserved header", map[string]string{"headerName": "webhook-id", "headerValue": "x"}, "headers.webhook-id"},
		{"header value", map[string]string{"headerName": "X-A", "headerValue": "a\nb"}, "headers.X-A"},
		{"campaign wildcard mixed", map[string]string{"campaignsMode": "list", "campaigns": "*\nc1"}, "campaigns"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := withCSRF(good)
			for k, v := range tc.set {
				form.Set(k, v)
			}
			resp, page := c.do("POST", "/ui/webhooks/new", form, nil)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("console: %d", resp.StatusCode)
			}
			// The API's answer to the body the form makes.
			body := map[string]any{"imsOrg": form.Get("imsOrg"), "sandbox": map[string]any{"id": form.Get("sandboxId")},
				"name": "n", "channels": []string{}, "url": form.Get("url"), "auth": map[string]any{"type": form.Get("authType")}}
			if form.Get("email") != "" {
				body["channels"] = []string{"email"}
			}
			if a := form.Get("algorithm"); a != "" && form.Get("authType") == "jwt" {
				body["auth"].(map[string]any)["algorithm"] = a
			}
			if e := form.Get("expiresIn"); e != "" {
				body["auth"].(map[string]any)["expiresIn"] = e
			}
			if n := form.Get("headerName"); n != "" {
				body["headers"] = map[string]string{n: form.Get("headerValue")}
			}
			if form.Get("campaignsMode") == "list" {
				body["campaigns"] = strings.Fields(form.Get("campaigns"))
			}
			var apiErr struct {
				Error struct{ Field, Message string }
			}
			if code := h.callInvalid("POST", "/v1/webhooks", body, &apiErr); code != http.StatusBadRequest || apiErr.Error.Field != tc.field {
				t.Fatalf("API: %d %+v (want field %s)", code, apiErr, tc.field)
			}
			if !strings.Contains(html.UnescapeString(page), apiErr.Error.Message) {
				t.Errorf("the page lacks the API's message %q", apiErr.Error.Message)
			}
		})
	}

	// JWT key material: shown once after create and after rotate-key,
	// never on the edit page.
	jwtForm := withCSRF(good)
	jwtForm.Set("sandboxId", "jwt")
	jwtForm.Set("authType", "jwt")
	jwtForm.Set("algorithm", "HS256")
	resp, page = c.do("POST", "/ui/webhooks/new", jwtForm, nil)
	secrets := regexp.MustCompile(`id="(signing-secret|jwt-secret)" readonly value="([^"]+)"`).FindAllStringSubmatch(page, -1)
	if resp.StatusCode != http.StatusCreated || len(secrets) != 2 || !strings.Contains(page, `id="key-id"`) {
		t.Fatalf("create with HS256: %d %v", resp.StatusCode, secrets)
	}
	resp, page = c.do("POST", "/ui/webhooks/orgS/jwt/rotate-key", url.Values{"csrf": {c.csrf}}, nil)
	rotated := regexp.MustCompile(`id="jwt-secret" readonly value="([^"]+)"`).FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || rotated == nil || rotated[1] == secrets[1][2] {
		t.Fatalf("rotate-key: %d %v", resp.StatusCode, rotated)
	}
	_, page = c.do("GET", "/ui/webhooks/orgS/jwt", nil, nil)
	for _, s := range []string{secrets[0][2], secrets[1][2], rotated[1]} {
		if strings.Contains(html.UnescapeString(page), html.UnescapeString(s)) {
			t.Error("the edit page shows secret material")
		}
	}
	if resp, _ := c.do("POST", "/ui/webhooks/orgS/jwt/rotate-key", url.Values{"csrf": {c.csrf}}, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a second rotate-key: %d", resp.StatusCode)
	}

	// Garbage never gets a 500.
	for _, form := range []url.Values{
		{"headerName": {"", "", "X"}, "headerValue": {"only-one"}},
		{"campaignsMode": {"list"}, "campaigns": {strings.Repeat("c\n", 2000)}},
		{"imsOrg": {strings.Repeat("é", 5000)}, "url": {"http://[::1"}},
		{"authType": {"oauth2"}, "tokenUrl": {"javascript:alert(1)"}},
	} {
		resp, _ := c.do("POST", "/ui/webhooks/new", withCSRF(form), nil)
		if resp.StatusCode >= 500 {
			t.Errorf("%v: %d", form, resp.StatusCode)
		}
	}
	for _, p := range []string{"/ui/webhooks/%2F/x", "/ui/dlq/x/y/z", "/ui/dlq?since=yesterday", "/ui/replays/nope",
		"/ui/webhooks/a/b/recoveries/c", "/ui/progress/replays/nope", "/ui/nothing"} {
		resp, _ := c.do("GET", p, nil, nil)
		if resp.StatusCode >= 500 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}

	if resp, _ := c.do("GET", "/ui/static/", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the assets' directory is listed: %d", resp.StatusCode)
	}
	if resp, js := c.do("GET", "/ui/static/console.js", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(js, "use strict") {
		t.Errorf("console.js: %d", resp.StatusCode)
	}

	// Signed out, the cookie is worth nothing.
	c.do("POST", "/ui/signout", url.Values{"csrf": {c.csrf}}, nil)
	if resp, _ := c.do("GET", "/ui/webhooks", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out: %d", resp.StatusCode)
	}
}

// With http.ui false the console's routes are not there.
func TestConsoleOff(t *testing.T) {
	h := start(t, func(c *daemon.Config) { c.HTTP.UI = false })
	for _, p := range []string{"/ui/", "/ui/signin", "/ui/static/console.js"} {
		resp, err := http.Get(h.direct + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s with http.ui false: %d", p, resp.StatusCode)
		}
	}
}
