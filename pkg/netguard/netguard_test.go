package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
)

// resolver answers from a table, like DNS would.
type resolver map[string][]string

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	ips, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(ips))
	for i, ip := range ips {
		out[i] = netip.MustParseAddr(ip)
	}
	return out, nil
}

var dns = resolver{
	"metadata.google.internal": {"169.254.169.254"},
	"127.0.0.1.nip.io":         {"127.0.0.1"},
	"internal.corp":            {"10.1.2.3"},
	"mixed.example":            {"93.184.216.34", "127.0.0.1"}, // one bad answer is enough
	"v6only.example":           {"::1"},
	"example.com":              {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
	"hosts.example":            {"::ffff:93.184.216.34"}, // Go's resolver answers /etc/hosts IPv4 entries mapped
	"mapped.example":           {"::ffff:127.0.0.1"},
	"docs.example":             {"192.0.2.10", "2001:db8::10"},
	"teredo.example":           {"2001:0:4136:e378:8000:63bf:a247:27dd"},
	"nat64-local.example":      {"64:ff9b:1::5db8:d822"},
}

// Every host below must be refused, when a config is saved and when a
// connection is dialed, whatever the notation.
func TestSSRFFormsAreRefused(t *testing.T) {
	hosts := []string{
		"127.0.0.1", "127.255.255.254", "localhost", "LOCALHOST.", "api.localhost",
		"2130706433",    // decimal
		"0177.0.0.1",    // octal
		"0x7f.0.0.1",    // hex
		"0x7f000001",    // one hex number
		"017700000001",  // one octal number
		"127.1",         // short form
		"0",             // 0.0.0.0
		"0.0.0.0", "::", // unspecified
		"::1",
		"::ffff:127.0.0.1", "::ffff:7f00:1", // IPv4-mapped
		"::127.0.0.1",                               // IPv4-compatible
		"64:ff9b::7f00:1",                           // NAT64
		"2002:7f00:1::",                             // 6to4 of 127.0.0.1
		"169.254.169.254", "::ffff:169.254.169.254", // cloud metadata
		"fd00:ec2::254",                         // AWS metadata over IPv6 (ULA)
		"100.100.100.200",                       // Alibaba metadata (CGNAT)
		"10.0.0.1", "172.16.0.1", "192.168.1.1", // private
		"fe80::1%eth0",         // link-local with zone
		"224.0.0.1", "ff02::1", // multicast
		"255.255.255.255",
		// Issue 13, point 5: ranges of the IANA special-purpose registries.
		"64:ff9b:1::5db8:d822",                  // NAT64 local-use (RFC 8215), even of a public address
		"::ffff:93.184.216.34",                  // IPv4-mapped (not globally reachable per the registry)
		"::ffff:0:5db8:d822", "::ffff:0:7f00:1", // IPv4-translated, SIIT (RFC 2765)
		"2001:0:4136:e378:8000:63bf:a247:27dd", // Teredo
		"192.88.99.1", "192.88.99.2",           // 6to4 / 6a44 relay anycast
		"192.0.2.1", "198.51.100.7", "203.0.113.9", "2001:db8::1", "3fff::1", // documentation
		"100::1",                                  // discard-only
		"2002:5db8:d822::1",                       // 6to4 of a public address: a relay of unknown owner
		"::5db8:d822",                             // IPv4-compatible, deprecated
		"192.0.0.9", "2001:1::1", "2001:4:112::1", // anycast services
		"4000::1", // IPv6 space IANA has not allocated
		"mapped.example", "docs.example", "teredo.example", "nat64-local.example",
		"metadata.google.internal", "127.0.0.1.nip.io", "internal.corp", "mixed.example", "v6only.example", // names
	}
	if len(hosts) < 15 {
		t.Fatal("the acceptance asks for at least 15 forms")
	}
	g := &Guard{Resolver: dns}
	for _, host := range hosts {
		t.Run(host, func(t *testing.T) {
			if err := g.CheckHost(context.Background(), host); !errors.Is(err, ErrBlocked) {
				t.Errorf("config time: CheckHost(%q) = %v", host, err)
			}
			conn, err := g.DialContext(context.Background(), "tcp", net.JoinHostPort(host, "443"))
			if conn != nil {
				conn.Close()
			}
			if !errors.Is(err, ErrBlocked) {
				t.Errorf("dial time: DialContext(%q) = %v", host, err)
			}
		})
	}
}

func TestPublicAndAllowListed(t *testing.T) {
	g := &Guard{Resolver: dns, Allow: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}
	for _, host := range []string{"93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946", "example.com", "10.20.1.2", "::ffff:10.20.1.2", "hosts.example", "does-not-resolve.example"} {
		if err := g.CheckHost(context.Background(), host); err != nil {
			t.Errorf("CheckHost(%q) = %v", host, err)
		}
	}
	if err := g.CheckHost(context.Background(), "10.21.0.1"); !errors.Is(err, ErrBlocked) {
		t.Errorf("outside the allow-list: %v", err)
	}
	open := &Guard{AllowPrivate: true}
	if err := open.CheckHost(context.Background(), "127.0.0.1"); err != nil {
		t.Errorf("AllowPrivate: %v", err)
	}
}

// rebinding answers a public address first and loopback afterwards, as a
// hostile DNS server would between the config check and the dial.
type rebinding struct{ calls atomic.Int32 }

func (r *rebinding) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	if r.calls.Add(1) == 1 {
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

func TestDNSRebindingIsCaughtAtDialTime(t *testing.T) {
	g := &Guard{Resolver: &rebinding{}}
	if err := g.CheckHost(context.Background(), "rebind.example"); err != nil {
		t.Fatalf("config time saw a public address: %v", err)
	}
	if _, err := g.DialContext(context.Background(), "tcp", "rebind.example:443"); !errors.Is(err, ErrBlocked) {
		t.Fatalf("dial time: %v", err)
	}
}

func TestParseHost(t *testing.T) {
	tests := map[string]string{
		"2130706433": "127.0.0.1", "0177.0.0.1": "127.0.0.1", "0x7f.0.0.1": "127.0.0.1", "0x7f000001": "127.0.0.1",
		"127.1": "127.0.0.1", "10.1.257": "10.1.1.1", "0": "0.0.0.0", "1.2.3.4": "1.2.3.4", "::1": "::1",
	}
	for in, want := range tests {
		got, ok := ParseHost(in)
		if !ok || got.String() != want {
			t.Errorf("ParseHost(%q) = %v %v, want %s", in, got, ok, want)
		}
	}
	for _, name := range []string{"example.com", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "1..2", "", "127.0.0.1.nip.io"} {
		if ip, ok := ParseHost(name); ok {
			t.Errorf("ParseHost(%q) = %v, want a name", name, ip)
		}
	}
}

func TestBlocked(t *testing.T) {
	for _, ip := range []string{"93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946", "64:ff9b::808:808"} {
		if r := Blocked(netip.MustParseAddr(ip)); r != "" {
			t.Errorf("Blocked(%s) = %q", ip, r)
		}
	}
}

func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"127.1", "0x7f.0.0.1", "::ffff:1.2.3.4", "example.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip, ok := ParseHost(s)
		if !ok {
			return
		}
		if !ip.IsValid() {
			t.Fatalf("ParseHost(%q) returned an invalid address", s)
		}
		_ = Blocked(ip) // any address has a verdict, without panicking
	})
}
