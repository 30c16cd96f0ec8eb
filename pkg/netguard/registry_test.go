package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

// One address from every block of the IANA IPv4 and IPv6 Special-Purpose
// Address Registries, and the verdict. A block is refused unless the
// registry marks it globally reachable and it is a plausible unicast
// endpoint; the globally reachable blocks refused anyway say why in note.
// Rows without a block are neighbours the registries do not list.
var registryCases = []struct {
	block, name string
	ip          string
	reason      string // "" if the address may be dialed
	note        string
}{
	// IPv4 Special-Purpose Address Registry.
	{"0.0.0.0/8", `"This network" (RFC 791)`, "0.1.2.3", "reserved", ""},
	{"0.0.0.0/32", `"This host on this network" (RFC 1122)`, "0.0.0.0", "unspecified", ""},
	{"10.0.0.0/8", "Private-Use (RFC 1918)", "10.1.2.3", "private", ""},
	{"100.64.0.0/10", "Shared Address Space (RFC 6598)", "100.100.100.200", "shared (CGNAT)", ""},
	{"127.0.0.0/8", "Loopback (RFC 1122)", "127.3.4.5", "loopback", ""},
	{"169.254.0.0/16", "Link Local (RFC 3927)", "169.254.169.254", "link-local", ""},
	{"172.16.0.0/12", "Private-Use (RFC 1918)", "172.31.255.254", "private", ""},
	{"192.0.0.0/24", "IETF Protocol Assignments (RFC 6890)", "192.0.0.200", "special-purpose", ""},
	{"192.0.0.0/29", "IPv4 Service Continuity Prefix (RFC 7335)", "192.0.0.1", "special-purpose", ""},
	{"192.0.0.8/32", "IPv4 dummy address (RFC 7600)", "192.0.0.8", "special-purpose", ""},
	{"192.0.0.9/32", "Port Control Protocol Anycast (RFC 7723)", "192.0.0.9", "special-purpose", "globally reachable, but the anycast address of a NAT's PCP server, no endpoint"},
	{"192.0.0.10/32", "Traversal Using Relays around NAT Anycast (RFC 8155)", "192.0.0.10", "special-purpose", "globally reachable, but the anycast address of TURN relays, no endpoint"},
	{"192.0.0.170/32", "NAT64/DNS64 Discovery (RFC 7050)", "192.0.0.170", "special-purpose", ""},
	{"192.0.0.171/32", "NAT64/DNS64 Discovery (RFC 7050)", "192.0.0.171", "special-purpose", ""},
	{"192.0.2.0/24", "Documentation (TEST-NET-1) (RFC 5737)", "192.0.2.1", "documentation", ""},
	{"192.31.196.0/24", "AS112-v4 (RFC 7535)", "192.31.196.1", "special-purpose", "globally reachable, but anycast DNS sinks, no endpoint"},
	{"192.52.193.0/24", "AMT (RFC 7450)", "192.52.193.1", "special-purpose", "globally reachable, but anycast multicast-tunnel relays, no endpoint"},
	{"192.88.99.0/24", "Deprecated (6to4 Relay Anycast) (RFC 7526)", "192.88.99.1", "special-purpose", ""},
	{"192.88.99.2/32", "6a44-relay anycast address (RFC 6751)", "192.88.99.2", "special-purpose", "globally reachable, but anycast tunnel relays, no endpoint"},
	{"192.168.0.0/16", "Private-Use (RFC 1918)", "192.168.1.1", "private", ""},
	{"192.175.48.0/24", "Direct Delegation AS112 Service (RFC 7534)", "192.175.48.6", "special-purpose", "globally reachable, but anycast DNS sinks, no endpoint"},
	{"198.18.0.0/15", "Benchmarking (RFC 2544)", "198.19.255.1", "benchmarking", ""},
	{"198.51.100.0/24", "Documentation (TEST-NET-2) (RFC 5737)", "198.51.100.7", "documentation", ""},
	{"203.0.113.0/24", "Documentation (TEST-NET-3) (RFC 5737)", "203.0.113.9", "documentation", ""},
	{"240.0.0.0/4", "Reserved (RFC 1112)", "250.1.2.3", "reserved", ""},
	{"255.255.255.255/32", "Limited Broadcast (RFC 919)", "255.255.255.255", "broadcast", ""},
	{"", "multicast (its own registry)", "239.1.2.3", "multicast", ""},
	{"", "public", "93.184.216.34", "", ""},
	{"", "public, next to CGNAT", "100.128.0.1", "", ""},
	{"", "public, next to 192.0.0.0/24", "192.0.1.1", "", ""},
	{"", "public, next to 192.88.99.0/24", "192.88.100.1", "", ""},

	// IPv6 Special-Purpose Address Registry.
	{"::1/128", "Loopback Address (RFC 4291)", "::1", "loopback", ""},
	{"::/128", "Unspecified Address (RFC 4291)", "::", "unspecified", ""},
	{"::ffff:0:0/96", "IPv4-mapped Address (RFC 4291)", "::ffff:93.184.216.34", "IPv4-mapped", "a resolver's mapped answer is judged as the IPv4 address: Go answers /etc/hosts entries so"},
	{"::ffff:0:0/96", "IPv4-mapped Address, of loopback", "::ffff:127.0.0.1", "loopback", ""},
	{"64:ff9b::/96", "IPv4-IPv6 Translat. (RFC 6052)", "64:ff9b::5db8:d822", "", "globally reachable: DNS64 answers so for IPv4-only endpoints, judged by the IPv4 address"},
	{"64:ff9b::/96", "IPv4-IPv6 Translat., of a private address", "64:ff9b::a00:1", "private", ""},
	{"64:ff9b:1::/48", "IPv4-IPv6 Translat. (local-use) (RFC 8215)", "64:ff9b:1::5db8:d822", "special-purpose", ""},
	{"100::/64", "Discard-Only Address Block (RFC 6666)", "100::1", "discard-only", ""},
	{"100:0:0:1::/64", "Dummy IPv6 Prefix (RFC 9780)", "100:0:0:1::1", "special-purpose", ""},
	{"2001::/23", "IETF Protocol Assignments (RFC 2928)", "2001:100::1", "special-purpose", ""},
	{"2001::/32", "TEREDO (RFC 4380)", "2001:0:4136:e378:8000:63bf:a247:27dd", "Teredo", "reaches a host behind a NAT through a relay, no endpoint"},
	{"2001::/32", "TEREDO, client 127.0.0.1", "2001:0:4136:e378::80ff:fffe", "loopback", ""},
	{"2001:1::1/128", "Port Control Protocol Anycast (RFC 7723)", "2001:1::1", "special-purpose", "globally reachable, but a NAT's PCP server, no endpoint"},
	{"2001:1::2/128", "Traversal Using Relays around NAT Anycast (RFC 8155)", "2001:1::2", "special-purpose", "globally reachable, but TURN relays, no endpoint"},
	{"2001:1::3/128", "DNS-SD Service Registration Protocol Anycast (RFC 9665)", "2001:1::3", "special-purpose", "globally reachable, but an SRP registrar, no endpoint"},
	{"2001:2::/48", "Benchmarking (RFC 5180)", "2001:2::1", "benchmarking", ""},
	{"2001:3::/32", "AMT (RFC 7450)", "2001:3::1", "special-purpose", "globally reachable, but multicast-tunnel relays, no endpoint"},
	{"2001:4:112::/48", "AS112-v6 (RFC 7535)", "2001:4:112::1", "special-purpose", "globally reachable, but anycast DNS sinks, no endpoint"},
	{"2001:10::/28", "Deprecated (previously ORCHID) (RFC 4843)", "2001:10::1", "special-purpose", ""},
	{"2001:20::/28", "ORCHIDv2 (RFC 7343)", "2001:20::1", "special-purpose", "globally reachable, but identifiers, not locators (RFC 7343)"},
	{"2001:30::/28", "Drone Remote ID Protocol Entity Tags (RFC 9374)", "2001:30::1", "special-purpose", "globally reachable, but ORCHIDv2-style identifiers (RFC 9374)"},
	{"2001:db8::/32", "Documentation (RFC 3849)", "2001:db8::1", "documentation", ""},
	{"2002::/16", "6to4 (RFC 3056)", "2002:5db8:d822::1", "6to4", "reaches an IPv4 host through a relay of unknown owner, no endpoint"},
	{"2002::/16", "6to4, of loopback", "2002:7f00:1::", "loopback", ""},
	{"2620:4f:8000::/48", "Direct Delegation AS112 Service (RFC 7534)", "2620:4f:8000::6", "special-purpose", "globally reachable, but anycast DNS sinks, no endpoint"},
	{"3fff::/20", "Documentation (RFC 9637)", "3fff:123::1", "documentation", ""},
	{"5f00::/16", "Segment Routing (SRv6) SIDs (RFC 9602)", "5f00::1", "special-purpose", ""},
	{"fc00::/7", "Unique-Local (RFC 4193)", "fd00:ec2::254", "private", ""},
	{"fe80::/10", "Link-Local Unicast (RFC 4291)", "fe80::1", "link-local", ""},
	{"", "IPv4-compatible, deprecated (RFC 4291)", "::5db8:d822", "IPv4-compatible", ""},
	{"", "IPv4-translated, SIIT (RFC 2765)", "::ffff:0:5db8:d822", "IPv4-translated", ""},
	{"", "site-local, deprecated (RFC 3879)", "fec0::1", "reserved", ""},
	{"", "multicast", "ff0e::1", "multicast", ""},
	{"", "not allocated by IANA (outside 2000::/3)", "4000::1", "special-purpose", ""},
	{"", "public", "2606:2800:220:1:248:1893:25c8:1946", "", ""},
	{"", "public, next to 2001::/23", "2001:200::1", "", ""},
	{"", "public, next to 2001:db8::/32", "2001:db9::1", "", ""},
}

func TestSpecialPurposeRegistries(t *testing.T) {
	g := &Guard{}
	for _, c := range registryCases {
		t.Run(c.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(c.ip)
			if c.block != "" && !netip.MustParsePrefix(c.block).Contains(ip) {
				t.Fatalf("%s is not in %s", ip, c.block)
			}
			if got := Blocked(ip); got != c.reason {
				t.Errorf("Blocked(%s) = %q, want %q (%s %s; %s)", ip, got, c.reason, c.block, c.name, c.note)
			}
			err := g.CheckHost(context.Background(), c.ip)
			if c.reason == "" {
				if err != nil {
					t.Errorf("CheckHost(%s) = %v", ip, err)
				}
				return // not dialed: the test machine may not reach the internet
			}
			if !errors.Is(err, ErrBlocked) {
				t.Errorf("config time: CheckHost(%s) = %v", ip, err)
			}
			conn, dialErr := g.DialContext(context.Background(), "tcp", net.JoinHostPort(c.ip, "443"))
			if conn != nil {
				conn.Close()
			}
			if !errors.Is(dialErr, ErrBlocked) {
				t.Errorf("dial time: DialContext(%s) = %v", ip, dialErr)
			}
		})
	}
}
