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

// apiPath builds an API path from segments, each escaped.
func apiPath(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// call serves one admin API request in process with the session's token
// and decodes a JSON answer into out. A 4xx or 5xx answer is an *apiError
// (with the API's code, message and field); the status is returned too.
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
