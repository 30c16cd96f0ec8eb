package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// apiError is the admin API's error body.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *apiError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// recorder is the ResponseWriter an in-process API call is served into.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// apiPath builds an API path from segments, each escaped so that it stays
// one segment: "/" is escaped by url.PathEscape, and "." and ".." (which
// PathEscape leaves alone and a path cleaner would resolve, turning
// campaigns/.. into the config itself) are sent as "%2E" and "%2E%2E".
// It is the console's one way to build an API path.
func apiPath(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		switch s {
		case ".", "..":
			b.WriteString(strings.Repeat("%2E", len(s)))
		default:
			b.WriteString(url.PathEscape(s))
		}
	}
	return b.String()
}

// configAPIPath is the API path of the request's config ({org}/{sb}),
// with tail's segments after it.
func configAPIPath(r *http.Request, tail ...string) string {
	return apiPath(append([]string{"v1", "webhooks", r.PathValue("org"), r.PathValue("sb")}, tail...)...)
}

// call serves one admin API request in process with the session's token
// and decodes a JSON answer into out. A 4xx or 5xx answer is an *apiError
// (with the API's code, message and field); the status is returned too.
// A 3xx answer (the API's mux redirecting a path it would clean) is an
// error too, not an *apiError: it did nothing, and it is the console's bug.
func (c *Console) call(ctx context.Context, s *session, method, target string, body, out any) (int, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, fmt.Errorf("api request: %w", err)
	}
	req.RequestURI = target
	req.RemoteAddr = "console"
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	c.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status < 400 && rec.status >= 300 { // a bug of the console's path, not the user's
		return rec.status, fmt.Errorf("%s %s: the API redirected (%d) to %q", method, target, rec.status, rec.header.Get("Location"))
	}
	if rec.status >= 400 {
		var e struct {
			Error apiError `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &e) != nil || e.Error.Message == "" {
			e.Error = apiError{Code: "unexpected", Message: http.StatusText(rec.status)}
		}
		e.Error.Status = rec.status
		if out != nil { // some errors carry more (a 409 of a running replay: the job)
			_ = json.Unmarshal(rec.body.Bytes(), out)
		}
		return rec.status, &e.Error
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return rec.status, fmt.Errorf("decode %s %s: %w", method, target, err)
		}
	}
	return rec.status, nil
}
