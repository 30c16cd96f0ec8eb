// Package netguard decides which network addresses webhook deliveries may
// reach, so a tenant's URL cannot point feedbackd at its own network: the
// loopback interface, private ranges, cloud metadata services and the like.
//
// A Guard checks a URL's host when a config is saved and again when each
// connection is dialed: its DialContext resolves the name, checks every
// address and connects to the address it checked, so a DNS answer that
// changes between the two (DNS rebinding) cannot slip through. Numeric
// hosts in the legacy forms C libraries accept (2130706433, 0177.0.0.1,
// 0x7f.1, 127.1) and IPv6 forms that carry an IPv4 address are judged by
// the address they mean.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

var (
	cgnat  = netip.MustParsePrefix("100.64.0.0/10")
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	compat = netip.MustParsePrefix("::/96")     // deprecated IPv4-compatible
	sixto4 = netip.MustParsePrefix("2002::/16") // 6to4: IPv4 in bits 16-47
	// Ranges that are no webhook endpoint either: IETF protocol
	// assignments, benchmarking, reserved, "this network", site-local.
	special = []netip.Prefix{
		netip.MustParsePrefix("192.0.0.0/24"),
		netip.MustParsePrefix("198.18.0.0/15"),
		netip.MustParsePrefix("240.0.0.0/4"),
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("fec0::/10"),
	}
)

// Blocked returns why ip must not be dialed ("loopback", "private", ...), or
// "" if it is a public unicast address. IPv6 addresses that carry an IPv4
// address (mapped, compatible, NAT64, 6to4) are judged by that address.
func Blocked(ip netip.Addr) string {
	ip = embedded(ip.WithZone(""))
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

// embedded returns the IPv4 address an IPv6 address carries, or ip.
func embedded(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if !ip.Is6() {
		return ip
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip), compat.Contains(ip) && !ip.IsLoopback() && !ip.IsUnspecified():
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	case sixto4.Contains(ip):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
	}
	return ip
}

// ParseHost reads a URL host (without port or brackets) that is an IP
// address in any form a resolver might accept: dotted quad, IPv6, or the
// legacy IPv4 forms (a single number, octal or hex parts, fewer than four
// parts). ok is false for a host name.
func ParseHost(host string) (netip.Addr, bool) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, true
	}
	return parseLegacyIPv4(host)
}

// parseLegacyIPv4 implements inet_aton: 1 to 4 parts, each decimal, 0-octal
// or 0x-hex; the last part fills the remaining bytes.
func parseLegacyIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) == 0 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, false
		}
		base, digits := 10, p
		switch {
		case strings.HasPrefix(p, "0x") || strings.HasPrefix(p, "0X"):
			base, digits = 16, p[2:]
			if digits == "" {
				digits = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	last := len(vals) - 1
	for _, v := range vals[:last] {
		if v > 255 {
			return netip.Addr{}, false
		}
	}
	if vals[last] >= 1<<(8*uint(4-last)) {
		return netip.Addr{}, false
	}
	var n uint32
	for i, v := range vals[:last] {
		n |= uint32(v) << (24 - 8*uint(i))
	}
	n |= uint32(vals[last])
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// ErrBlocked is what every *BlockedError is (errors.Is).
var ErrBlocked = errors.New("address not allowed")

// BlockedError refuses an address; Reason says what kind it is.
type BlockedError struct{ Reason string }

func (e *BlockedError) Error() string        { return "address not allowed: " + e.Reason + " address" }
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// Resolver looks up host names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Guard holds the deployment's network rules. The zero value blocks every
// non-public address and resolves with net.DefaultResolver. It is safe for
// concurrent use.
type Guard struct {
	AllowPrivate bool           // allow every address
	Allow        []netip.Prefix // allow these ranges even if not public
	Resolver     Resolver       // nil: net.DefaultResolver
}

// Check returns an error wrapping ErrBlocked if ip may not be reached.
func (g *Guard) Check(ip netip.Addr) error {
	if g.AllowPrivate {
		return nil
	}
	reason := Blocked(ip)
	if reason == "" {
		return nil
	}
	for _, p := range g.Allow {
		if p.Contains(ip.WithZone("")) || p.Contains(embedded(ip.WithZone(""))) {
			return nil
		}
	}
	return &BlockedError{Reason: reason}
}

func (g *Guard) resolver() Resolver {
	if g.Resolver != nil {
		return g.Resolver
	}
	return net.DefaultResolver
}

// addrs returns the addresses of a URL host and refuses the host if any of
// them is forbidden. "localhost" and *.localhost are loopback whatever the
// resolver says (RFC 6761).
func (g *Guard) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	var ips []netip.Addr
	switch ip, ok := ParseHost(host); {
	case ok:
		ips = []netip.Addr{ip}
	case host == "localhost" || strings.HasSuffix(host, ".localhost"):
		ips = []netip.Addr{netip.IPv6Loopback()}
	default:
		var err error
		if ips, err = g.resolver().LookupNetIP(ctx, "ip", host); err != nil {
			return nil, err
		}
	}
	for _, ip := range ips {
		if err := g.Check(ip); err != nil {
			return nil, err
		}
	}
	return ips, nil
}

// CheckHost judges a URL host at config time: an IP (in any form) is
// checked, a name is resolved and every address checked. A name that does
// not resolve now is let through: the dial-time check still applies.
func (g *Guard) CheckHost(ctx context.Context, host string) error {
	if g.AllowPrivate {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := g.addrs(ctx, host)
	if errors.Is(err, ErrBlocked) {
		return err
	}
	return nil
}

// DialContext resolves address, refuses it if any of its addresses is
// forbidden, and connects to the first address that answers. Use it as an
// http.Transport's DialContext.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	ips, err := g.addrs(ctx, host)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	var lastErr error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no address for %s", host)
	}
	return nil, lastErr
}
