package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
)

func TestHostIPs(t *testing.T) {
	for _, tc := range []struct {
		n           int
		first, last string
	}{
		{1, "127.0.0.1", "127.0.0.1"},
		{2, "127.0.0.2", "127.0.0.3"},
		{1000, "127.0.0.2", "127.0.3.233"},
	} {
		ips := hostIPs(tc.n)
		if len(ips) != tc.n || ips[0].String() != tc.first || ips[len(ips)-1].String() != tc.last {
			t.Errorf("hostIPs(%d): %d addresses, %s to %s; want %s to %s", tc.n, len(ips), ips[0], ips[len(ips)-1], tc.first, tc.last)
		}
	}
}

// The receiver counts every handshake, and the resumed ones apart: a
// client with a session cache resumes on its second connection.
func TestReceiverCountsResumedHandshakes(t *testing.T) {
	b, err := makeTLS(hostIPs(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(b.dir) })
	var full, resumed atomic.Int64
	cfg, err := serverConfig(b.dir, func(r bool) {
		if r {
			resumed.Add(1)
		} else {
			full.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = tls.NewListener(ln, cfg)
	srv.Start()
	t.Cleanup(srv.Close)
	cc := b.clientConfig()
	cc.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	tr := &http.Transport{TLSClientConfig: cc}
	t.Cleanup(tr.CloseIdleConnections)
	for range 2 {
		resp, err := (&http.Client{Transport: tr}).Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
	}
	if full.Load() != 1 || resumed.Load() != 1 {
		t.Errorf("%d full and %d resumed handshakes; want 1 and 1", full.Load(), resumed.Load())
	}
}

// Draining closes the connections a client keeps alive between requests,
// and the tracker forgets them.
func TestConnTrackerClosesIdle(t *testing.T) {
	var conns connTracker
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = conns.track
	srv.Start()
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for conns.open() == 1 {
		if n := conns.closeIdle(); n == 1 {
			break
		}
		// the server marks the connection idle just after the answer
		runtime.Gosched()
	}
	if n := conns.open(); n != 0 {
		t.Errorf("%d connections open after closeIdle; want 0", n)
	}
}

// TestTopicsReachEveryHost: over a few rounds of the tenants every
// topic's events go to every host, about equally (tenant n%tenants, host
// tenant%hosts, as produce and endpoint pick them).
func TestTopicsReachEveryHost(t *testing.T) {
	for _, tc := range []struct{ tenants, hosts int }{{10000, 4}, {100, 4}, {1000, 8}, {100, 1}, {12, 4}, {10000, 2}, {9870, 987}, {10000, 1000}} {
		events := 8 * tc.tenants
		count := make([][]int, len(channels))
		for i := range count {
			count[i] = make([]int, tc.hosts)
		}
		for n := range events {
			count[topicOf(n, tc.hosts)][n%tc.tenants%tc.hosts]++
		}
		for topic, perHost := range count {
			for host, c := range perHost {
				want := events / len(channels) / tc.hosts
				if c < want/2 || c > want*2 {
					t.Fatalf("%d tenants, %d hosts: topic %d sent %d events to host %d, want about %d", tc.tenants, tc.hosts, topic, c, host, want)
				}
			}
		}
	}
}
