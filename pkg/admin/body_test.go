package admin

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// readBody answers what went wrong with a body: 413 only for one that is
// too large, 408 for one that did not arrive in time, 400 otherwise.
func TestReadBody(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := readBody(w, r); ok {
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Start()
	defer srv.Close()
	chunked := "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	tests := []struct {
		name, request string
		status        int
		code          string
	}{
		{"whole", chunked + "2\r\n{}\r\n0\r\n\r\n", http.StatusNoContent, ""},
		{"broken chunk", chunked + "5\r\n{\"a\":zz\r\n", http.StatusBadRequest, "bad_request"},
		{"too slow", chunked + "2\r\n{}\r\n" /* and no more */, http.StatusRequestTimeout, "timeout"},
		{"too large", chunked + strings.Repeat("4000\r\n"+strings.Repeat(" ", 0x4000)+"\r\n", 17) + "0\r\n\r\n", http.StatusRequestEntityTooLarge, "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go io.WriteString(c, tt.request)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct{ Error apiError }
			_ = json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tt.status || e.Error.Code != tt.code {
				t.Errorf("%d %q, want %d %q", resp.StatusCode, e.Error.Code, tt.status, tt.code)
			}
		})
	}
}
