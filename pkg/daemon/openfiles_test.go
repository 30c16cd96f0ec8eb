package daemon

import (
	"math"
	"testing"
)

func TestDeliveryConns(t *testing.T) {
	for _, tc := range []struct {
		name      string
		slots     int
		limit     uint64
		want      int
		wantShort bool
	}{
		{"limit unknown", 4096, 0, 0, false},
		{"unlimited", 16384, math.MaxUint64, 0, false},
		{"above MaxInt32", 16384, math.MaxInt32 + 1, 0, false},
		{"a large limit", 256, 1 << 20, 1<<20 - openFilesReserved, false},
		{"room for the slots and idle ones", 16384, 20000, 20000 - openFilesReserved, false},
		{"the limit just covers the slots and the rest", 16384, 17384, 16384, false},
		{"the limit below the slots and the rest", 16384, 17000, 16000, true},
		{"at least 64", 4096, 1024, 64, true},
		{"few slots, a limit below them and the rest", 32, 1024, 64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, short := deliveryConns(tc.slots, tc.limit)
			if n != tc.want || short != tc.wantShort {
				t.Errorf("deliveryConns(%d, %d) = %d, %v; want %d, %v", tc.slots, tc.limit, n, short, tc.want, tc.wantShort)
			}
		})
	}
}
