package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// listen starts a loopback listener that accepts and closes connections,
// counting them.
func listen(t *testing.T, network, addr string) (net.Listener, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	return ln, serve(t, ln)
}

// serve accepts and closes connections on ln until the test ends, and
// counts them.
func serve(t *testing.T, ln net.Listener) *atomic.Int32 {
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return &accepted
}

// The dialer checks the address of each connect itself, after resolution,
// whatever was checked before it: DialContext's dialer handed an address
// nobody checked refuses it, so does any net.Dialer with the Guard's
// Control given a name, and the listener never sees a connection.
func TestControlChecksEveryConnect(t *testing.T) {
	ln, accepted := listen(t, "tcp4", "127.0.0.1:0")
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g := &Guard{}

	unchecked := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::ffff:127.0.0.1")}
	if c, err := g.dialer("tcp", port).parallel(ctx, unchecked, nil); !errors.Is(err, ErrBlocked) {
		if c != nil {
			c.Close()
		}
		t.Errorf("DialContext's dialer, unchecked loopback: %v", err)
	}
	d := &net.Dialer{Control: g.Control}
	for _, addr := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		if c, err := d.DialContext(ctx, "tcp", addr); !errors.Is(err, ErrBlocked) {
			if c != nil {
				c.Close()
			}
			t.Errorf("net.Dialer with Control, %s: %v", addr, err)
		}
	}

	allowed := &Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	c, err := allowed.dialer("tcp", port).parallel(ctx, unchecked[:1], nil)
	if err != nil {
		t.Fatalf("allow-listed: %v", err)
	}
	c.Close()
	waitFor(t, func() bool { return accepted.Load() == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); n != 1 {
		t.Fatalf("the listener accepted %d connections, want only the allow-listed one", n)
	}
}

// "localhost" is both loopback addresses (RFC 6761), so a development
// receiver listening on 127.0.0.1 only is reached as localhost.
func TestLocalhostIsBothLoopbacks(t *testing.T) {
	ln, _ := listen(t, "tcp4", "127.0.0.1:0")
	g := &Guard{AllowPrivate: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := g.DialContext(ctx, "tcp", net.JoinHostPort("localhost", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("connected to %s", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 2 s")
		}
	}
}
