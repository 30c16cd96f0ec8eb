// Package netguard decides which network addresses webhook deliveries may
// reach, so a tenant's URL cannot point feedbackd at its own network or at an
// address that is no endpoint: loopback, private ranges, cloud metadata
// services, and every block of the IANA IPv4 and IPv6 Special-Purpose
// Address Registries.
//
// The registries are code.dny.dev/ssrf's prefix lists, generated from the
// registries' CSV files, so they are kept by whoever keeps that module up to
// date rather than by hand here. netguard is stricter than those lists where
// an address carries another: IPv6 forms with an IPv4 address inside
// (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo) are
// judged by that address as well, and numeric hosts in the legacy forms C
// libraries accept (2130706433, 0177.0.0.1, 0x7f.1, 127.1) by the address
// they mean.
//
// A Guard checks a URL's host when a config is saved and again when each
// connection is dialed: its DialContext resolves the name, refuses it if any
// answer is forbidden, and dials the answers with a net.Dialer whose Control
// checks the address of every connect, so a DNS answer that changes between
// the config check and the dial (DNS rebinding) cannot slip through. It races
// IPv6 and IPv4 as net.Dialer does for a host name (Happy Eyeballs), so an
// address family that blackholes costs a delivery fallbackDelay, not its
// timeout.
package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
)

// registry holds the special-purpose blocks of both IANA registries (and
// all IPv6 space outside 2000::/3); ports and protocols are not its
// business here.
var registry = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())

var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")    // well-known prefix, RFC 6052
	compat     = netip.MustParsePrefix("::/96")           // IPv4-compatible, deprecated by RFC 4291
	translated = netip.MustParsePrefix("::ffff:0:0:0/96") // IPv4-translated (SIIT), RFC 2765
	sixto4     = netip.MustParsePrefix("2002::/16")       // 6to4: IPv4 in bits 16-47
	teredo     = netip.MustParsePrefix("2001::/32")       // Teredo: the client's IPv4, inverted, in bits 96-127
)

// named are the blocks with a reason people know them by; the rest of the
// registries is "special-purpose". A name decides no verdict: registry
// refuses every block here too.
var named = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
	{netip.MustParsePrefix("0.0.0.0/8"), "reserved"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("2001:2::/48"), "benchmarking"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("fec0::/10"), "reserved"}, // site-local, deprecated by RFC 3879
}

// nat64Form is the one IPv6 form that carries an IPv4 address and may be
// dialed: the registry marks 64:ff9b::/96 globally reachable, and on an
// IPv6-only host DNS64 answers with it for every IPv4-only endpoint.
const nat64Form = "NAT64"

// Blocked returns why ip must not be dialed ("loopback", "private",
// "documentation", "special-purpose", ...), or "" if it may be: a unicast
// address outside every special-purpose block, or a NAT64 address
// (64:ff9b::/96) of one. Other IPv6 forms that carry an IPv4 address
// (mapped, compatible, translated, 6to4, Teredo) are refused, with the
// reason of the IPv4 address they carry if it is refused itself.
func Blocked(ip netip.Addr) string {
	ip = ip.WithZone("")
	if !ip.IsValid() {
		return "invalid"
	}
	if v4, form := carried(ip); form != "" {
		if r := blocked(v4); r != "" {
			return r
		}
		if form == nat64Form {
			return ""
		}
		return form
	}
	return blocked(ip)
}

func blocked(ip netip.Addr) string {
	switch {
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "link-local"
	case ip.IsMulticast():
		return "multicast"
	}
	for _, n := range named {
		if n.prefix.Contains(ip) {
			return n.reason
		}
	}
	if registry.SafeAddr(ip) != nil {
		return "special-purpose"
	}
	return ""
}

// carried returns the IPv4 address an IPv6 form carries and the form's
// name, or "" if ip is no such form.
func carried(ip netip.Addr) (netip.Addr, string) {
	if ip.Is4In6() {
		return ip.Unmap(), "IPv4-mapped"
	}
	if !ip.Is6() {
		return netip.Addr{}, ""
	}
	b := ip.As16()
	last := netip.AddrFrom4([4]byte(b[12:16]))
	switch {
	case nat64.Contains(ip):
		return last, nat64Form
	case compat.Contains(ip) && !ip.IsLoopback() && !ip.IsUnspecified():
		return last, "IPv4-compatible"
	case translated.Contains(ip):
		return last, "IPv4-translated"
	case sixto4.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4"
	case teredo.Contains(ip):
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), "Teredo"
	}
	return netip.Addr{}, ""
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
// address Blocked refuses and resolves with net.DefaultResolver. It is safe
// for concurrent use.
type Guard struct {
	AllowPrivate bool           // allow every address (tests, development)
	Allow        []netip.Prefix // allow these ranges, or IPv6 forms carrying an IPv4 address in them, even if refused
	Resolver     Resolver       // nil: net.DefaultResolver
}

// Check returns an error wrapping ErrBlocked if ip may not be reached.
func (g *Guard) Check(ip netip.Addr) error {
	if g.AllowPrivate {
		return nil
	}
	ip = ip.WithZone("")
	reason := Blocked(ip)
	if reason == "" {
		return nil
	}
	v4, form := carried(ip)
	for _, p := range g.Allow {
		if p.Contains(ip) || form != "" && p.Contains(v4) {
			return nil
		}
	}
	return &BlockedError{Reason: reason}
}

// Control refuses a connect to an address Check refuses. It is a
// net.Dialer's Control: the dialer calls it on the address of every connect
// it makes, after resolution, so set it on any dialer that must obey the
// Guard.
func (g *Guard) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &BlockedError{Reason: "invalid"}
	}
	return g.Check(ap.Addr())
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
		ips = []netip.Addr{netip.IPv6Loopback(), netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	default:
		answers, err := g.resolver().LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		// Go's resolver answers /etc/hosts IPv4 entries in the mapped
		// form; a socket connects to the IPv4 address either way.
		for _, ip := range answers {
			ips = append(ips, ip.Unmap())
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

// fallbackDelay is how long the addresses of the first answer's family have
// before the other family's race them: net.Dialer's default (RFC 8305
// recommends 250 ms).
const fallbackDelay = 300 * time.Millisecond

// DialContext resolves address, refuses it if any of its addresses is
// forbidden, and connects to one of them with Happy Eyeballs (RFC 8305), as
// net.Dialer does for a host name: the addresses of the first answer's
// family one after another, those of the other family from fallbackDelay on
// (or as soon as the first family has failed), the first connection
// winning. Every connect is checked again in the dialer's Control. ctx
// bounds the whole dial; each connect also ends after 10 s. Use it as an
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
	if len(ips) == 0 {
		return nil, &net.DNSError{Err: "no address", Name: host, IsNotFound: true}
	}
	var primaries, fallbacks []netip.Addr
	for _, ip := range ips {
		if ip.Unmap().Is4() == ips[0].Unmap().Is4() {
			primaries = append(primaries, ip)
		} else {
			fallbacks = append(fallbacks, ip)
		}
	}
	return g.dialer(network, port).parallel(ctx, primaries, fallbacks)
}

// dialer connects to one port of addresses, each connect checked by the
// Guard.
type dialer struct {
	d       net.Dialer
	network string
	port    string
}

func (g *Guard) dialer(network, port string) *dialer {
	return &dialer{
		d:       net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.Control},
		network: network,
		port:    port,
	}
}

// parallel races primaries against fallbacks, these started fallbackDelay
// later or as soon as the primaries have failed; it returns the first
// connection (closing one that wins too late), or the primaries' error.
func (d *dialer) parallel(ctx context.Context, primaries, fallbacks []netip.Addr) (net.Conn, error) {
	if len(fallbacks) == 0 {
		return d.serial(ctx, primaries)
	}
	returned := make(chan struct{})
	defer close(returned)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the racer still dialing

	type result struct {
		conn    net.Conn
		err     error
		primary bool
	}
	results := make(chan result)
	race := func(addrs []netip.Addr, primary bool) {
		c, err := d.serial(ctx, addrs)
		select {
		case results <- result{c, err, primary}:
		case <-returned:
			if c != nil {
				c.Close()
			}
		}
	}
	go race(primaries, true)
	fallback := time.NewTimer(fallbackDelay)
	defer fallback.Stop()

	var primaryErr, fallbackErr error
	for {
		select {
		case <-fallback.C:
			go race(fallbacks, false)
		case r := <-results:
			if r.err == nil {
				return r.conn, nil
			}
			if r.primary {
				primaryErr = r.err
				if fallback.Stop() {
					fallback.Reset(0)
				}
			} else {
				fallbackErr = r.err
			}
			if primaryErr != nil && fallbackErr != nil {
				return nil, telling(primaryErr, fallbackErr)
			}
		}
	}
}

// serial connects to addrs in turn, giving each an equal share of the time
// left but at least 2 s, as net.Dialer does, so that one address that
// blackholes does not take the time of those after it. It returns the
// first connection, or the first error.
func (d *dialer) serial(ctx context.Context, addrs []netip.Addr) (net.Conn, error) {
	var first error
	for i, ip := range addrs {
		c, err := d.one(ctx, ip, len(addrs)-i)
		if err == nil {
			return c, nil
		}
		first = telling(first, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

func (d *dialer) one(ctx context.Context, ip netip.Addr, remaining int) (net.Conn, error) {
	if deadline, ok := ctx.Deadline(); ok && remaining > 1 {
		left := time.Until(deadline)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(left/time.Duration(remaining), min(left, 2*time.Second)))
		defer cancel()
	}
	return d.d.DialContext(ctx, d.network, net.JoinHostPort(ip.String(), d.port))
}

// telling returns the error that says most of the two: a refused address,
// else the first.
func telling(first, next error) error {
	if first == nil || errors.Is(next, ErrBlocked) && !errors.Is(first, ErrBlocked) {
		return next
	}
	return first
}

// CheckTarget judges a host that another party dials for us (an egress
// proxy): an IP (in any form) is checked, a name is resolved and every
// address checked, as DialContext does, and a name that does not resolve
// is an error too (*net.DNSError). The party resolves the name again
// itself: only a check of its own, or dialing the addresses checked here,
// closes that gap.
func (g *Guard) CheckTarget(ctx context.Context, host string) error {
	if g.AllowPrivate {
		return nil
	}
	ips, err := g.addrs(ctx, host)
	if err == nil && len(ips) == 0 {
		err = &net.DNSError{Err: "no address", Name: host, IsNotFound: true}
	}
	return err
}
