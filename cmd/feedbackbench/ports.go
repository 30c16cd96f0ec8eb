package main

import (
	"fmt"
	"os"
	"strings"
)

// portRange is the kernel's range of ephemeral ports for outgoing
// connections, read from /proc/sys/net/ipv4/ip_local_port_range, and what
// a round takes of it per destination: each ceiling round opens
// --concurrency connections spread over --hosts addresses, and the round
// before left as many in TIME_WAIT, for a minute. connect() looks for a
// free port in the range on every dial, and the fuller the range is for a
// destination, the longer the look: at --concurrency 16384 with one host,
// 7.2 of the 13 CPU seconds of a net/http ceiling client's round went to
// connect() (a profile, 2026-12-03), and its rate fell to 2,000-5,000/s.
type portRange struct {
	Low     int    `json:"low"`
	High    int    `json:"high"`
	PerHost int    `json:"per_host"`     // connections of a round and of the round before, per host
	Hosts   int    `json:"hosts_enough"` // the fewest --hosts that take at most half the range
	Err     string `json:"error,omitempty"`
}

// localPorts reads the range and works out what o takes of it.
func localPorts(o options) portRange {
	var low, high int
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		_, err = fmt.Sscan(strings.TrimSpace(string(b)), &low, &high)
	}
	if err != nil {
		return portRange{Err: err.Error()}
	}
	return newPortRange(low, high, o.concurrency, o.hosts)
}

// newPortRange is what concurrency connections per round over hosts take
// of the range low-high.
func newPortRange(low, high, concurrency, hosts int) portRange {
	if high < low {
		return portRange{Err: fmt.Sprintf("range %d-%d", low, high)}
	}
	size := high - low + 1
	return portRange{Low: low, High: high, PerHost: 2 * concurrency / max(hosts, 1),
		Hosts: (4*concurrency + size - 1) / size} // 2 * concurrency / hosts <= size / 2
}

// crowded says whether a round takes more than half the range for a host.
func (p portRange) crowded() bool {
	return p.Err == "" && p.PerHost > (p.High-p.Low+1)/2
}

func (p portRange) String() string {
	if p.Err != "" {
		return "unknown (" + p.Err + ")"
	}
	size := p.High - p.Low + 1
	s := fmt.Sprintf("%d-%d (%d); a round and the one before take about %d per host", p.Low, p.High, size, p.PerHost)
	if p.crowded() {
		s += fmt.Sprintf(": WARNING: connect() searches that range on every dial, which costs the ceiling clients most of their CPU and makes the ceilings low; spread over --hosts %d or more", p.Hosts)
	}
	return s
}
