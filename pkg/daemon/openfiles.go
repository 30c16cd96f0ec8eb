package daemon

import "math"

// openFilesReserved is the descriptors kept for everything but delivery
// connections: Kafka and Redis connections, listeners, admin clients.
const openFilesReserved = 1000

// deliveryConns is how many delivery connections, in use and idle, may be
// open at once over all endpoints (deliver.Options.MaxConns): what the
// open-file limit leaves beside openFilesReserved, at least 64. Idle
// connections then take the room the slots do not use, and a dial at the
// bound closes an idle one instead of failing with "too many open files".
// A limit of 0 or above MaxInt32 is taken as unknown or unlimited: 0, no
// bound. short says that the limit is below slots + openFilesReserved:
// with every slot in use, dials go past the bound into the descriptors
// kept for the rest, and may fail with "too many open files".
func deliveryConns(slots int, limit uint64) (n int, short bool) {
	if limit == 0 || limit > math.MaxInt32 {
		return 0, false
	}
	return max(64, int(limit)-openFilesReserved), limit < uint64(slots+openFilesReserved)
}
