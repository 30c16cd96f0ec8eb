package daemon

import (
	"math"
	"testing"
)

func TestIdleConns(t *testing.T) {
	for _, tc := range []struct {
		name      string
		slots     int
		limit     uint64
		want      int
		wantShort bool
	}{
		{"defaults, limit unknown", 4096, 0, 4096, false},
		{"fewer slots than 4,096", 256, 1 << 20, 4096, false},
		{"as many as the slots", 16384, 1 << 20, 16384, false},
		{"bounded by the limit beside the slots", 16384, 20000, 20000 - 16384 - openFilesReserved, false},
		{"unlimited", 16384, math.MaxUint64, 16384, false},
		{"the limit leaves a little for idle", 16384, 17420, 64, false},
		{"the limit just covers the slots and the rest", 16384, 17384, 64, false},
		{"the limit leaves nothing for idle", 16384, 17000, 64, true},
		{"the limit below the slots", 4096, 1024, 64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, short := idleConns(tc.slots, tc.limit)
			if n != tc.want || short != tc.wantShort {
				t.Errorf("idleConns(%d, %d) = %d, %v; want %d, %v", tc.slots, tc.limit, n, short, tc.want, tc.wantShort)
			}
		})
	}
}
