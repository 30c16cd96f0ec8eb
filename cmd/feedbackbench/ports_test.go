package main

import (
	"strings"
	"testing"
)

// A round that takes more than half the ephemeral port range for one host
// is warned about, with the fewest --hosts that take half or less.
func TestPortRange(t *testing.T) {
	for _, tt := range []struct {
		concurrency, hosts int
		warn               bool
		enough             int
	}{
		{concurrency: 256, hosts: 1, enough: 1},
		{concurrency: 4096, hosts: 1, enough: 1},
		{concurrency: 8192, hosts: 1, warn: true, enough: 2},
		{concurrency: 16384, hosts: 1, warn: true, enough: 3},
		{concurrency: 16384, hosts: 3, enough: 3},
		{concurrency: 16384, hosts: 1000, enough: 3},
	} {
		p := newPortRange(32768, 60999, tt.concurrency, tt.hosts) // Linux's default
		if p.crowded() != tt.warn || p.Hosts != tt.enough {
			t.Errorf("--concurrency %d --hosts %d: crowded %v, hosts enough %d; want %v, %d", tt.concurrency, tt.hosts, p.crowded(), p.Hosts, tt.warn, tt.enough)
		}
		if got := strings.Contains(p.String(), "WARNING"); got != tt.warn {
			t.Errorf("--concurrency %d --hosts %d: %q", tt.concurrency, tt.hosts, p)
		}
	}
	if p := newPortRange(60999, 32768, 16384, 1); p.crowded() || !strings.Contains(p.String(), "unknown") {
		t.Errorf("a range upside down: %q", p)
	}
}
