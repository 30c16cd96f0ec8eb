package chaos

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxy is a TCP proxy in front of the broker that can drop connections.
// The broker listens on a port of its own but advertises the proxy's
// address in metadata (see listen), so every client, feedbackd's and the
// test's own, reaches it only through the proxy.
type proxy struct {
	ln     net.Listener
	target atomic.Value // string: the broker's real address

	mu    sync.Mutex
	links map[*link]struct{}
	drops atomic.Int64 // connections dropped
}

// link is one proxied connection: client side and broker side.
type link struct{ client, broker net.Conn }

// cut closes both sides with a reset, as a failing network would.
func (l *link) cut() {
	for _, c := range []net.Conn{l.client, l.broker} {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

func startProxy(t *testing.T) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, links: map[*link]struct{}{}}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for l := range p.links {
			l.cut()
		}
	})
	return p
}

// listen is the broker's listen function (kfake.ListenFn): a listener on a
// port of its own whose Addr is the proxy's, which the broker advertises.
func (p *proxy) listen(network, _ string) (net.Listener, error) {
	l, err := net.Listen(network, "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.target.Store(l.Addr().String())
	return advertised{Listener: l, addr: p.ln.Addr()}, nil
}

type advertised struct {
	net.Listener
	addr net.Addr
}

func (a advertised) Addr() net.Addr { return a.addr }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *proxy) forward(c net.Conn) {
	target, _ := p.target.Load().(string)
	b, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	l := &link{client: c, broker: b}
	p.mu.Lock()
	p.links[l] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, pair := range [][2]net.Conn{{b, c}, {c, b}} {
		wg.Go(func() {
			_, _ = io.Copy(pair[0], pair[1])
			l.cut() // one side ended: end the other
		})
	}
	wg.Wait()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// dropRandom cuts one random connection, or every connection one time in
// five, and returns how many it cut.
func (p *proxy) dropRandom() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	all := rand.IntN(5) == 0
	n := 0
	for l := range p.links { // map order is random
		l.cut()
		n++
		if !all {
			break
		}
	}
	p.drops.Add(int64(n))
	return n
}

// dropWhile drops connections at random intervals between lo and hi until
// ctx ends.
func (p *proxy) dropWhile(ctx context.Context, lo, hi time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(lo + rand.N(hi-lo)):
			p.dropRandom()
		}
	}
}
