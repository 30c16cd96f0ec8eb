// Package netguard decides which network addresses webhook deliveries may
// reach, so a tenant's URL cannot point feedbackd at its own network: the
// loopback interface, private ranges, cloud metadata services and the like.
// The same check runs when a config is saved and, after DNS resolution, when
// a connection is dialed, which also stops DNS rebinding.
package netguard

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

var (
	cgnat = netip.MustParsePrefix("100.64.0.0/10")
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	// 192.0.0.0/24 (IETF protocol assignments), 198.18.0.0/15
	// (benchmarking), 240.0.0.0/4 (reserved) and broadcast are not
	// reachable webhook endpoints either.
	special = []netip.Prefix{
		netip.MustParsePrefix("192.0.0.0/24"),
		netip.MustParsePrefix("198.18.0.0/15"),
		netip.MustParsePrefix("240.0.0.0/4"),
		netip.MustParsePrefix("0.0.0.0/8"),
	}
)

// Blocked returns why ip must not be dialed ("loopback", "private", ...), or
// "" if it is a public unicast address. IPv4-mapped and NAT64 forms are
// judged by the IPv4 address they carry.
func Blocked(ip netip.Addr) string {
	ip = ip.Unmap()
	if nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	switch {
	case !ip.IsValid():
		return "invalid"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "link-local"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return "multicast"
	case cgnat.Contains(ip):
		return "shared (CGNAT)"
	}
	for _, p := range special {
		if p.Contains(ip) {
			return "reserved"
		}
	}
	return ""
}

// ErrBlocked is wrapped by the errors Control returns.
var ErrBlocked = errors.New("address not allowed")

// Control is a net.Dialer Control function that refuses blocked addresses.
func Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse %q", ErrBlocked, address)
	}
	if reason := Blocked(ap.Addr()); reason != "" {
		return fmt.Errorf("%w: %s address", ErrBlocked, reason)
	}
	return nil
}
