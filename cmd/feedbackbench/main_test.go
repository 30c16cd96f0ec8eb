package main

import "testing"

// validMemLimit takes what the Go runtime takes as GOMEMLIMIT, and refuses
// what would make feedbackd fail to start.
func TestValidMemLimit(t *testing.T) {
	for s, want := range map[string]bool{
		"448MiB": true, "1GiB": true, "536870912": true, "512B": true, "off": true,
		"": false, "448MB": false, "12X": false, "-1MiB": false, "1.5GiB": false, "MiB": false,
		"8388607TiB": true, "8388608TiB": false, "99999999999TiB": false, "9223372036854775807B": true, "9223372036854775807": true,
	} {
		if got := validMemLimit(s); got != want {
			t.Errorf("validMemLimit(%q) = %v, want %v", s, got, want)
		}
	}
}
