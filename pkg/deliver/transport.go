package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/feedbackd/feedbackd/pkg/webhook"
)

// transport makes webhook POSTs over HTTP/1.1, each an exchange (whose
// steps may run on different goroutines), and keeps idle connections per
// endpoint. It is safe for concurrent use; a
// connection carries one exchange at a time.
//
// Why not net/http's Transport: it runs a read and a write goroutine per
// connection and hands every request and answer between them and the
// caller over channels. Against a fast receiver that is most of the cost
// of a delivery, about twice the CPU per request of an exchange made by
// the caller (BenchmarkSend). A webhook attempt needs little
// of the rest: one request at a time, never a redirect or HTTP/2, and one
// egress proxy at most (proxy.go).
// The answer's head is still parsed by net/http (http.ReadResponse), so
// status lines, headers, chunking and Content-Length are read by the
// standard library's code.
type transport struct {
	dial        func(ctx context.Context, network, address string) (net.Conn, error)
	tlsConfig   *tls.Config // https; offers http/1.1 only
	maxHead     int64       // bytes of status lines and headers, 1xx answers included
	maxIdle     int         // idle connections kept per endpoint
	maxIdleAll  int         // idle connections kept over all endpoints
	maxOpen     int         // connections open at once, in use and idle, over all endpoints; 0: no bound
	idleTimeout time.Duration
	// With a proxy, every connection goes through it, and check judges
	// the endpoint's host first, as dial would have (the proxy dials it).
	proxy *proxy
	check func(ctx context.Context, host string) error

	mu     sync.Mutex
	idle   map[poolKey][]*conn // most recently used last
	nIdle  int
	nOpen  int         // dialled or being dialled, and not closed
	sweep  *time.Timer // closes expired idle connections; nil while none are idle
	closed bool
	counts connCounts
}

// connCounts are the transport's connection counters since it was made,
// read by the connection metrics when scraped.
type connCounts struct {
	dials   uint64 // connections dialled (the dial may have failed)
	evicted uint64 // closed to stay within maxOpen: idle ones taken for a dial, and ones dialled past it once answered
}

// connStats reports the connections open now, in use (or being
// dialled) and idle, and the counters.
func (t *transport) connStats() (inUse, idle int, c connCounts) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nOpen - t.nIdle, t.nIdle, t.counts
}

const max1xx = 5 // informational answers read before the final one

var (
	errHeadTooLarge = errors.New("answer head too large")
	errTooMany1xx   = errors.New("too many 1xx answers")
	errHeaderValue  = errors.New("header value holds a control character")
	aLongTimeAgo    = time.Unix(1, 0)
)

// poolKey names the connections that can carry a request to a URL.
type poolKey struct {
	https   bool
	proxied bool   // through the proxy: a tunnel for https, the proxy itself for http
	host    string // URL host, port included if the URL has one
}

// field is one request header.
type field struct {
	name, value string
	raw         []byte // the value instead, when it is bytes the attempt holds (not copied into a string)
}

// request is one webhook POST.
type request struct {
	url    *url.URL
	custom http.Header // the endpoint's own headers, written first
	fields []field     // feedbackd's headers
	body   []byte
	// keep is how many bytes of the answer's body to keep in kept
	// (truncated: there were more); exchange fills them in.
	keep      int
	kept      []byte
	truncated bool
}

// sessionCacheSize is how many TLS sessions (one per host name) are kept
// for resumption, least recently used first out.
const sessionCacheSize = 4096

func newTransport(dial func(context.Context, string, string) (net.Conn, error), tlsConfig *tls.Config, maxIdle, maxIdleAll, maxOpen int) *transport {
	cfg := &tls.Config{}
	if tlsConfig != nil {
		cfg = tlsConfig.Clone()
	}
	cfg.NextProtos = []string{"http/1.1"}
	if cfg.ClientSessionCache == nil {
		// A connection re-opened to a host resumes its TLS session: an
		// abbreviated handshake, without the certificate chain and its
		// verification.
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(sessionCacheSize)
	}
	return &transport{
		dial: dial, tlsConfig: cfg, maxHead: 64 << 10, maxIdle: maxIdle, maxIdleAll: maxIdleAll, maxOpen: maxOpen, idleTimeout: 90 * time.Second,
		idle: map[poolKey][]*conn{},
	}
}

// An exchange is one request and its answer on a connection: begin
// writes the request on an idle or new connection, wait (or waitBriefly,
// then wait) blocks until the answer's first bytes arrive, and end reads
// the answer (the final status and headers, and at most maxBody bytes of
// the body, which are discarded) and keeps or closes the connection; if
// end sent the request again (again), its answer is waited for and ended
// in turn. Each step may run on another goroutine than the one before,
// one at a time, and wait does nothing but wait, at a shallow depth of the
// stack it runs on. The exchange ends at deadline or when ctx ends,
// whichever comes first: connecting, the TLS handshake, writing and
// reading.
//
// Connection reuse never lets an answer belong to another request: a
// connection is kept only when the answer was read whole, nothing followed
// it in what was read, and the endpoint did not ask to close it; and it is
// reused only if the endpoint sent nothing while it was idle (clean), so
// bytes an endpoint writes after its answer (a second response, a body
// longer than its Content-Length, bytes after a 204) retire the
// connection instead of answering the next request, which may be another
// tenant's. As with any HTTP/1.1 client, bytes that arrive only after the
// next request was written cannot be told from its answer.
type exchange struct {
	t        *transport
	ctx      context.Context
	deadline time.Time
	key      poolKey
	req      *request
	maxBody  int64
	c        *conn         // nil once the exchange failed without one, or ended
	reused   bool          // c was idle in the pool
	err      error         // why the exchange failed before end
	written  time.Time     // when the request was written
	brief    time.Duration // waitBriefly's d, once called
}

// begin starts the exchange of req in x.
func (t *transport) begin(ctx context.Context, deadline time.Time, req *request, maxBody int64, x *exchange) {
	*x = exchange{t: t, ctx: ctx, deadline: deadline, req: req, maxBody: maxBody}
	u := req.url
	if err := webhook.CheckRequestable(u); err != nil {
		x.err = &url.Error{Op: "parse", URL: "", Err: err}
		return
	}
	x.key = poolKey{https: u.Scheme == "https", proxied: t.proxy != nil, host: u.Host}
	x.send(false)
}

// send writes the request on an idle connection, or with fresh on a new
// one.
func (x *exchange) send(fresh bool) {
	c, reused, err := x.t.get(x.ctx, x.deadline, x.key, x.req.url, fresh)
	if err != nil {
		x.c, x.reused, x.err = nil, false, err
		return
	}
	x.c, x.reused = c, reused
	// ctx's watch first, then the deadline, then ctx: a cancellation
	// after the check sets a deadline in the past that this one cannot
	// overwrite, and one before it is seen by the check.
	c.watch(x.ctx)
	_ = c.SetDeadline(x.deadline)
	if err := x.ctx.Err(); err != nil {
		x.t.put(x.key, c)
		x.c, x.reused, x.err = nil, false, err
		return
	}
	x.err = c.write(x.req, x.t.maxHead)
	x.written = time.Now()
}

// waiting reports whether wait has an answer to wait for.
func (x *exchange) waiting() bool { return x.c != nil && x.err == nil }

// wait blocks until the answer's first bytes arrive, or the exchange
// fails.
func (x *exchange) wait() {
	if x.waiting() {
		x.err = x.c.head.await()
		if x.brief > 0 && x.err == nil {
			x.c.slow = time.Since(x.written) >= slowFactor*x.brief
		}
	}
}

// slowFactor times the brief wait is how long an answer takes to mark its
// connection slow: well beyond the brief wait, so that a nearby
// endpoint's answer delayed on a busy machine (a few percent of them take
// over 20 ms there) does not send the next attempt to a goroutine of its
// own, while endpoints 100 ms away and more do.
const slowFactor = 5

// waitBriefly is wait for at most d. It reports whether the wait is over:
// if not, wait waits for the rest. On a connection whose last answer took
// slowFactor*d or longer (slow), it does not wait: the next answer from
// that endpoint is likely slow too, and the caller's goroutine is not
// held for d (nor its read deadline set twice) to learn it; wait tells,
// by the time the answer took, whether the one after is waited for again.
func (x *exchange) waitBriefly(d time.Duration) (over bool) {
	if !x.waiting() {
		return true
	}
	x.brief = d
	if x.c.slow {
		return false
	}
	until := time.Now().Add(d)
	if !until.Before(x.deadline) {
		x.wait()
		return true
	}
	_ = x.c.SetReadDeadline(until)
	err := x.c.head.await()
	// The attempt's deadline back, then ctx: as in send, a cancellation
	// that this overwrote is seen by the check.
	_ = x.c.SetReadDeadline(x.deadline)
	if cerr := x.ctx.Err(); cerr != nil {
		if err == nil {
			// An answer came: its status decides, as it would have after
			// wait. The reset may have undone ctx's cut: made again.
			_ = x.c.SetDeadline(aLongTimeAgo)
		} else {
			x.err = cerr
		}
		return true
	}
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() && time.Now().Before(x.deadline) {
		return false // a timeout leaves a TLS connection as it was
	}
	x.err = err
	return true
}

// end reads the answer and reports the final status and headers, and
// whether the endpoint sent any byte of an answer (answered). A reused
// connection that the endpoint had closed before answering (a keep-alive
// timeout racing the request) is replaced: the request is sent once more,
// on a new connection, as the attempt would otherwise be retried later
// anyway, and end reports again: that answer is to be waited for, and
// ended, in turn.
func (x *exchange) end() (status int, h http.Header, answered, again bool, err error) {
	resp, answered, err := x.read()
	if err != nil && x.reused && !answered && closedBeforeAnswer(err) && x.ctx.Err() == nil && time.Now().Before(x.deadline) {
		x.send(true)
		return 0, nil, false, true, nil
	}
	if err != nil {
		return 0, nil, answered, false, err
	}
	return resp.StatusCode, resp.Header, true, false, nil
}

// read reads the answer, unless the exchange failed, then keeps the
// connection for reuse or closes it.
func (x *exchange) read() (resp *http.Response, answered bool, err error) {
	c := x.c
	if c == nil {
		return nil, false, x.err
	}
	x.c = nil
	reusable := false
	err = x.err
	if err == nil {
		resp, reusable, err = c.read(x.maxBody, x.req)
	}
	answered = c.lim.read > 0
	if x.ctx.Err() != nil || err != nil || !reusable {
		c.close()
	} else {
		x.t.put(x.key, c)
	}
	if err != nil {
		// If the deadline or ctx cut the exchange short, what was read by
		// then (a partial status line, say) is not what the endpoint meant.
		switch {
		case x.ctx.Err() != nil:
			err = x.ctx.Err()
		case !time.Now().Before(x.deadline):
			err = context.DeadlineExceeded
		}
	}
	return resp, answered, err
}

// closedBeforeAnswer reports whether err says the connection was closed
// or reset before any answer came.
func closedBeforeAnswer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// get takes the most recently used idle connection for key that is still
// usable (reused), or dials a new one; with fresh, it dials.
func (t *transport) get(ctx context.Context, deadline time.Time, key poolKey, u *url.URL, fresh bool) (c *conn, reused bool, err error) {
	for !fresh {
		t.mu.Lock()
		cs := t.idle[key]
		if len(cs) == 0 {
			t.mu.Unlock()
			break
		}
		c := cs[len(cs)-1]
		cs[len(cs)-1] = nil
		t.idle[key] = cs[:len(cs)-1]
		t.nIdle--
		t.mu.Unlock()
		if c.clean() {
			return c, true, nil
		}
		c.close()
	}
	if evicted := t.open(); evicted != nil {
		evicted.close()
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// Dialled on a goroutine of its own, which ends with it: connecting
	// (the address check, net.Dialer, a TLS handshake) runs deeper than
	// 8 KiB of stack, and a goroutine's stack, once grown, stays grown
	// while it waits for the answer. With the caller's at 8 KiB rather
	// than 16 KiB, thousands of slow deliveries in flight hold half the
	// stack memory (BenchmarkInFlight's stack-B/in-flight).
	dialed := make(chan dialResult, 1)
	go func() {
		c, err := t.dialConn(ctx, key, u)
		dialed <- dialResult{c, err}
	}()
	r := <-dialed // dialConn returns once ctx ends
	if r.err != nil {
		t.release()
		return nil, false, r.err
	}
	r.c.t = t
	return r.c, false, nil
}

// open counts a connection about to be dialled. At maxOpen connections
// it takes an idle one out of the pool for the caller to close in its
// place, so that connections in use and idle share the open-file limit
// (a burst of answers keeps all of theirs, and the next burst to other
// hosts closes the idle ones it needs room for); with none idle it
// returns nil, and the connection is dialled beyond the bound. The
// evicted connection is counted closed at once (its close does not count
// it again), so that until the caller closes it no other connection is
// seen over the bound and evicted for the same dial.
func (t *transport) open() (evicted *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nOpen++
	t.counts.dials++
	if t.maxOpen <= 0 || t.nOpen <= t.maxOpen || t.nIdle == 0 {
		return nil
	}
	t.counts.evicted++
	evicted = t.takeLeastRecent()
	evicted.t = nil
	t.nOpen--
	return evicted
}

// evictSample is how many endpoints' pools takeLeastRecent looks at.
const evictSample = 8

// takeLeastRecent takes out of the pool the connection idle for longest
// among the oldest of up to evictSample endpoints' pools (in the map's
// random order: the least recently used of a sample, as Redis evicts, so
// that an eviction looks at a few pools however many endpoints there
// are; it also steps over the emptied pools get leaves, which
// closeExpired drops). Called with t.mu held and at least one connection idle
// (nIdle > 0).
func (t *transport) takeLeastRecent() *conn {
	var key poolKey
	var oldest *conn
	n := 0
	for k, cs := range t.idle {
		if len(cs) == 0 { // get leaves an endpoint's pool in the map
			continue
		}
		if oldest == nil || cs[0].idleSince.Before(oldest.idleSince) {
			key, oldest = k, cs[0]
		}
		if n++; n == evictSample {
			break
		}
	}
	t.dropOldest(key, t.idle[key], 1)
	return oldest
}

// dropOldest takes the n connections idle longest, cs[:n], out of cs, the
// pool of key, and drops the pool once it is empty (get leaves an emptied
// one in the map for reuse). Called with t.mu held.
func (t *transport) dropOldest(key poolKey, cs []*conn, n int) {
	clear(cs[:n])
	if n == len(cs) {
		delete(t.idle, key)
	} else {
		t.idle[key] = cs[n:]
	}
	t.nIdle -= n
}

// release counts a connection closed, or one whose dial failed.
func (t *transport) release() {
	t.mu.Lock()
	t.nOpen--
	t.mu.Unlock()
}

// dialResult is what dialConn returned.
type dialResult struct {
	c   *conn
	err error
}

// dialConn connects to the endpoint of u, with TLS for https, until ctx
// ends. Through the proxy, the endpoint's host is checked first; an https
// endpoint is reached through a tunnel, with TLS inside it to the
// endpoint; an http one gets absolute-form requests on a connection to
// the proxy, kept per endpoint like any other (so that the reuse rules
// stay per endpoint).
func (t *transport) dialConn(ctx context.Context, key poolKey, u *url.URL) (*conn, error) {
	port := u.Port()
	if port == "" {
		port = "80"
		if key.https {
			port = "443"
		}
	}
	address := net.JoinHostPort(u.Hostname(), port)
	var nc net.Conn
	var err error
	if key.proxied {
		if err = t.check(ctx, u.Hostname()); err != nil {
			return nil, err
		}
		nc, err = t.proxy.open(ctx, address, key.https, t.maxHead)
	} else {
		nc, err = t.dial(ctx, "tcp", address)
	}
	if err != nil {
		return nil, err
	}
	if !key.https {
		c := newConn(nc, nc)
		if key.proxied {
			c.via = t.proxy
		}
		return c, nil
	}
	cfg := t.tlsConfig.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return newConn(tc, nc), nil
}

// newConn returns a connection that writes requests to and reads answers
// from c; tcp is the socket under it.
func newConn(c, tcp net.Conn) *conn {
	cn := &conn{Conn: c, tcp: tcp}
	cn.lim.r = c
	cn.head.r = &cn.lim
	return cn
}

// A connection holds no buffer of its own between exchanges, nor while it
// waits for an endpoint's answer: the request is built in a pooled buffer
// and given back once written, the answer is awaited with a read into the
// connection's small head buffer, and only then does it take a pooled
// reader, given back with the exchange. Held per connection, the three
// cost about 9 KB together, in flight or idle (BenchmarkInFlight).
var (
	requestBufs = sync.Pool{New: func() any { return new([]byte) }}
	readers     = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	scratchBufs = sync.Pool{New: func() any { b := make([]byte, 4<<10); return &b }}
)

// headReader gives what the first read of an answer brought, then reads
// from r.
type headReader struct {
	buf  [256]byte
	n, i int // buf[i:n] is yet to be read
	r    io.Reader
}

func (h *headReader) Read(p []byte) (int, error) {
	if h.i < h.n {
		k := copy(p, h.buf[h.i:h.n])
		h.i += k
		return k, nil
	}
	return h.r.Read(p)
}

// await blocks until the answer's first bytes arrive and keeps them.
func (h *headReader) await() error {
	n, err := h.r.Read(h.buf[:])
	h.n, h.i = n, 0
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// pending is how many bytes read from the connection wait in it.
func (h *headReader) pending() int { return h.n - h.i }

// put keeps c for the next request to key, unless enough are kept, or
// more than maxOpen are open (dialled past it while none was idle).
func (t *transport) put(key poolKey, c *conn) {
	c.idleSince = time.Now()
	t.mu.Lock()
	over := t.maxOpen > 0 && t.nOpen > t.maxOpen
	if t.closed || len(t.idle[key]) >= t.maxIdle || t.nIdle >= t.maxIdleAll || over {
		if over && !t.closed {
			t.counts.evicted++
		}
		t.mu.Unlock()
		c.close()
		return
	}
	t.idle[key] = append(t.idle[key], c)
	t.nIdle++
	if t.sweep == nil {
		t.sweep = time.AfterFunc(t.idleTimeout/2, t.closeExpired)
	}
	t.mu.Unlock()
}

// closeExpired closes the connections idle for idleTimeout or more. It
// runs every idleTimeout/2 while any connection is idle.
func (t *transport) closeExpired() {
	cutoff := time.Now().Add(-t.idleTimeout)
	var expired []*conn
	t.mu.Lock()
	for key, cs := range t.idle {
		n := 0 // oldest first
		for n < len(cs) && cs[n].idleSince.Before(cutoff) {
			n++
		}
		if n > 0 || len(cs) == 0 {
			expired = append(expired, cs[:n]...)
			t.dropOldest(key, cs, n)
		}
	}
	t.sweep = nil
	if t.nIdle > 0 && !t.closed {
		t.sweep = time.AfterFunc(t.idleTimeout/2, t.closeExpired)
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

// close closes the idle connections; connections in use are closed when
// their exchange ends. The transport must not be used afterwards.
func (t *transport) close() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.nIdle, t.closed = map[poolKey][]*conn{}, 0, true
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			c.close()
		}
	}
}

// conn is a connection to an endpoint, TLS or not. It is used by one
// goroutine at a time, except for the cancellation watch.
type conn struct {
	net.Conn              // what requests are written to
	tcp       net.Conn    // the socket under TLS, for alive
	t         *transport  // counts it open until close; nil once closed, or once open evicted it (counted closed then)
	via       *proxy      // the proxy that takes absolute-form requests on it, or nil
	head      headReader  // between lim and the exchange's pooled reader
	lim       limitReader // between Conn and head
	idleSince time.Time
	watched   context.Context // the context whose end cuts the exchange short
	unwatch   func() bool
	watchMu   sync.Mutex
	watchGen  uint64 // the watch in force; an earlier one's callback does nothing

	raw      syscall.RawConn // tcp's, for alive; set by its first call
	peekFunc func(fd uintptr) bool
	peeked   bool
	// slow: the last answer on it took slowFactor times the brief wait
	// or longer (waitBriefly), which the next attempt on it skips.
	slow bool
}

// watch makes the end of ctx set a deadline in the past on the connection,
// cutting short the exchange in progress. The watch stays until another
// context is watched or the connection is closed: the pipeline makes every
// attempt with the same context, and registering with it per attempt made
// all of them contend for its lock.
func (c *conn) watch(ctx context.Context) {
	if c.watched == ctx {
		return
	}
	if c.unwatch != nil {
		c.unwatch() // its callback may still run (its context ended): the generation stops it
	}
	c.watchMu.Lock()
	c.watchGen++
	gen := c.watchGen
	c.watchMu.Unlock()
	c.watched = ctx
	c.unwatch = context.AfterFunc(ctx, func() {
		c.watchMu.Lock()
		defer c.watchMu.Unlock()
		if c.watchGen == gen {
			_ = c.SetDeadline(aLongTimeAgo)
		}
	})
}

// clean reports whether an idle connection can carry another request: the
// endpoint sent nothing since its last answer, neither bytes nor an end of
// stream, in the socket or, for TLS, read into the TLS layer. It does not
// wait.
func (c *conn) clean() bool {
	if c.watched != nil && c.watched.Err() != nil {
		// The last attempt's context ended: its callback, which may be
		// running now, must not cut the look below short.
		c.unwatch()
		c.watchMu.Lock()
		c.watchGen++
		c.watchMu.Unlock()
		c.watched, c.unwatch = nil, nil
	}
	if !c.alive() {
		return false
	}
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		return true
	}
	// A read that cannot wait: it returns what the TLS layer holds already
	// (a record that came with the last answer's), or times out at once.
	// A timeout leaves the TLS state as it was.
	_ = tc.SetReadDeadline(aLongTimeAgo)
	var b [1]byte
	n, err := tc.Read(b[:])
	var ne net.Error
	return n == 0 && errors.As(err, &ne) && ne.Timeout()
}

// close closes the connection and ends its watch.
func (c *conn) close() {
	if c.unwatch != nil {
		c.unwatch()
	}
	c.Close()
	if c.t != nil {
		c.t.release()
		c.t = nil
	}
}

// write writes req, and readies the connection for its answer's head of
// at most maxHead bytes.
func (c *conn) write(req *request, maxHead int64) error {
	c.lim.n, c.lim.read = maxHead, 0
	buf := requestBufs.Get().(*[]byte)
	var err error
	*buf, err = appendRequest((*buf)[:0], req, c.via)
	if err == nil {
		_, err = c.Write(*buf)
	}
	if cap(*buf) <= 64<<10 { // one large event must not pin its size in the pool
		requestBufs.Put(buf)
	}
	return err
}

// read reads the answer to the request written, whose first bytes
// c.head.await has. reusable says whether the connection may carry another
// request.
func (c *conn) read(maxBody int64, req *request) (resp *http.Response, reusable bool, err error) {
	r := readers.Get().(*bufio.Reader)
	r.Reset(&c.head)
	defer func() {
		r.Reset(nil)
		readers.Put(r)
	}()
	for n := 0; ; n++ {
		if resp, err = http.ReadResponse(r, nil); err != nil {
			return nil, false, err
		}
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n == max1xx {
			return nil, false, errTooMany1xx
		}
	}
	c.lim.n = math.MaxInt64
	// Read what the endpoint sent, up to maxBody, so that the connection
	// can carry the next request. The body is never closed: Close would
	// read all of it. What is kept of it is in req.kept; the reader goes
	// back to its pool, so the body returned is empty.
	whole := discard(resp.Body, maxBody, req)
	resp.Body = http.NoBody
	leftover := r.Buffered() > 0 || c.head.pending() > 0
	return resp, whole && !resp.Close && !leftover && resp.StatusCode != http.StatusSwitchingProtocols, nil
}

// discard reads body up to max bytes and reports whether it ended there.
// The first req.keep bytes read are copied to req.kept.
func discard(body io.Reader, max int64, req *request) (whole bool) {
	scratch := scratchBufs.Get().(*[]byte)
	defer scratchBufs.Put(scratch)
	req.kept, req.truncated = nil, false
	for n := int64(0); ; {
		buf := *scratch
		if left := max - n; left < int64(len(buf)) {
			buf = buf[:left+1] // one byte more tells a body that ends at max from a longer one
		}
		k, err := body.Read(buf)
		if room := int(min(int64(req.keep), max)) - len(req.kept); k > 0 && req.keep > 0 {
			if k > room {
				req.truncated = true
			}
			req.kept = append(req.kept, buf[:min(k, room)]...)
		}
		n += int64(k)
		switch {
		case n > max:
			return false
		case err == io.EOF:
			return true
		case err != nil:
			return false
		}
	}
}

// appendRequest appends req's head and body to b, in absolute form with
// the proxy's credentials when via is not nil. It refuses header values
// with control characters (request smuggling), as config validation does;
// names come from feedbackd or from validated configs, and begin checked
// the URL.
func appendRequest(b []byte, req *request, via *proxy) ([]byte, error) {
	u := req.url
	b = append(b, "POST "...)
	if via != nil && !strings.HasPrefix(u.Opaque, "//") { // RequestURI makes such an Opaque absolute itself
		b = append(b, "http://"...)
		b = append(b, u.Host...)
	}
	if u.Opaque != "" {
		b = append(b, u.RequestURI()...)
	} else {
		path := u.EscapedPath()
		if path == "" {
			path = "/"
		}
		b = append(b, path...)
		if u.ForceQuery || u.RawQuery != "" {
			b = append(b, '?')
			b = append(b, u.RawQuery...)
		}
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	host := u.Host
	if host[len(host)-1] == ':' {
		host = host[:len(host)-1]
	}
	b = append(b, host...)
	b = append(b, "\r\n"...)
	if via != nil && via.auth != "" {
		b = append(b, "Proxy-Authorization: "...)
		b = append(b, via.auth...)
		b = append(b, "\r\n"...)
	}
	ok := true
	for name, values := range req.custom {
		if reserved(name, req.fields) {
			continue
		}
		for _, v := range values {
			b, ok = appendField(b, name, v, ok)
		}
	}
	for _, f := range req.fields {
		if f.raw != nil {
			b, ok = appendField(b, f.name, f.raw, ok)
		} else {
			b, ok = appendField(b, f.name, f.value, ok)
		}
	}
	if !ok {
		return b, errHeaderValue
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(req.body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, req.body...), nil
}

// reserved reports whether a custom header (canonical name) is one the
// transport or feedbackd sets: configs cannot hold them, this makes sure.
func reserved(name string, fields []field) bool {
	switch name {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Proxy-Authorization", "Proxy-Connection":
		return true
	}
	for _, f := range fields {
		// A traceparent feedbackd sets takes the config's tracestate
		// with it: the two go together.
		if f.name == name || f.name == "Traceparent" && name == "Tracestate" {
			return true
		}
	}
	return false
}

func appendField[T string | []byte](b []byte, name string, value T, ok bool) ([]byte, bool) {
	ok = ok && webhook.ValidHeaderValue(value)
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...), ok
}

// limitReader counts the bytes of an exchange and fails a read once the
// head has taken n.
type limitReader struct {
	r    io.Reader
	n    int64 // bytes the head may still take
	read int64 // bytes read in this exchange
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	l.read += int64(n)
	return n, err
}
