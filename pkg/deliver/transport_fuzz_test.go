package deliver

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// FuzzReadAnswer feeds arbitrary bytes, in reads of arbitrary size, to the
// transport as an endpoint's answer. It must never panic, must agree with
// net/http's parser on the status, and may keep the connection only when
// the answer was framed (a length or chunks, not read to the end) and
// everything it read belonged to that answer: leftovers past it are for
// clean to find, never the next request's answer.
func FuzzReadAnswer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 500 Oops\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nabc",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody",
		"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nto the end",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.1 2000 OK\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(6))
	}
	u, _ := url.Parse("http://endpoint.example/hook")
	req := &request{url: u, body: []byte(`{}`)}
	f.Fuzz(func(t *testing.T, answer []byte, split uint8) {
		src := &scripted{data: answer, chunk: int(split) + 1}
		c := newConn(src, src)
		err := c.write(req, 1<<10)
		if err == nil {
			err = c.head.await()
		}
		var resp *http.Response
		reusable := false
		if err == nil {
			resp, reusable, err = c.read(256, req)
		}
		if err != nil {
			if reusable {
				t.Fatalf("reusable after %v", err)
			}
			return
		}
		want, consumed, wantFramed := reference(answer)
		if want == nil {
			t.Fatalf("status %d, but net/http does not read an answer in %q", resp.StatusCode, answer)
		}
		if resp.StatusCode != want.StatusCode {
			t.Fatalf("status %d, net/http reads %d in %q", resp.StatusCode, want.StatusCode, answer)
		}
		if !reusable {
			return
		}
		if !wantFramed {
			t.Fatalf("kept a connection whose answer has no framing: %q", answer)
		}
		if c.lim.read != consumed {
			t.Fatalf("kept a connection after reading %d bytes; the answer is %d bytes of %q", c.lim.read, consumed, answer)
		}
	})
}

// reference reads answer as net/http's client would, skipping 1xx answers
// as exchange does: the final answer, the bytes it takes with its body, and
// whether its end is framed (not the end of the stream).
func reference(answer []byte) (resp *http.Response, consumed int64, framed bool) {
	r := bytes.NewReader(answer)
	br := bufio.NewReader(r)
	for n := 0; n <= max1xx; n++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, 0, false
		}
		if resp.StatusCode >= 100 && resp.StatusCode <= 199 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return resp, 0, false
		}
		consumed = int64(len(answer)) - int64(r.Len()) - int64(br.Buffered())
		return resp, consumed, !resp.Close && resp.StatusCode != http.StatusSwitchingProtocols
	}
	return nil, 0, false
}

// scripted is a connection whose endpoint's bytes are data, in reads of at
// most chunk bytes, then the end of the stream. Writes are dropped.
type scripted struct {
	data  []byte
	chunk int
}

func (s *scripted) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), s.chunk)], s.data)
	s.data = s.data[n:]
	return n, nil
}

func (s *scripted) Write(p []byte) (int, error)      { return len(p), nil }
func (s *scripted) Close() error                     { return nil }
func (s *scripted) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *scripted) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *scripted) SetDeadline(time.Time) error      { return nil }
func (s *scripted) SetReadDeadline(time.Time) error  { return nil }
func (s *scripted) SetWriteDeadline(time.Time) error { return nil }
