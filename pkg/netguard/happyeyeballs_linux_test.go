//go:build linux

package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// blackhole listens on ip with a full accept queue: Linux then drops the
// SYN of every further connect, so a dial hangs as it does towards an
// address that blackholes, on loopback and without privileges.
func blackhole(t *testing.T, ip string) (net.Listener, bool) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("no loopback %s: %v", ip, err)
	}
	t.Cleanup(func() { ln.Close() })
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), 0) }); err != nil || lerr != nil {
		t.Fatalf("listen backlog 0: %v %v", err, lerr)
	}
	for range 8 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 200*time.Millisecond)
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return ln, true
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	return ln, false
}

// When the first answer's family blackholes, DialContext connects through
// the other family fallbackDelay later, not after the connect timeout
// (Happy Eyeballs, RFC 8305): as net.Dialer does for a host name, which a
// loop dialing one address after the other does not.
func TestHappyEyeballs(t *testing.T) {
	for _, tc := range []struct{ name, slow, fast string }{
		{"IPv6 first, blackholed", "::1", "127.0.0.1"},
		{"IPv4 first, blackholed", "127.0.0.1", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var port string
			for try := 0; ; try++ {
				slow, ok := blackhole(t, tc.slow)
				if !ok {
					t.Skip("the accept queue of a loopback listener never filled")
				}
				port = strconv.Itoa(slow.Addr().(*net.TCPAddr).Port)
				ln, err := net.Listen("tcp", net.JoinHostPort(tc.fast, port))
				if err == nil {
					serve(t, ln)
					break
				}
				if try == 4 {
					t.Skipf("no port free on both loopbacks: %v", err)
				}
			}

			g := &Guard{AllowPrivate: true, Resolver: resolver{"dual.example": {tc.slow, tc.fast}}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			c, err := g.DialContext(ctx, "tcp", net.JoinHostPort("dual.example", port))
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("after %v: %v", elapsed, err)
			}
			defer c.Close()
			if got := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != netip.MustParseAddr(tc.fast) {
				t.Fatalf("connected to %s, want %s", got, tc.fast)
			}
			if elapsed < fallbackDelay || elapsed > fallbackDelay+time.Second {
				t.Fatalf("connected after %v, want the fallback delay %v (and some slack)", elapsed, fallbackDelay)
			}
		})
	}
}
