package daemon

import "math"

// openFilesReserved is the descriptors kept for everything but delivery
// connections: Kafka and Redis connections, listeners, admin clients.
const openFilesReserved = 1000

// idleConns is how many idle delivery connections to keep over all
// endpoints (deliver.Options.MaxIdleConns): 4,096, or as many as the slots
// if more, so that a burst of answers closes none the next burst needs;
// but no more than the open-file limit leaves beside a connection per slot
// and openFilesReserved, and at least 64. A limit of 0 or above MaxInt32
// is taken as unknown or unlimited: no bound. short says that the limit is
// below slots + openFilesReserved, what the slots and the rest need
// without any idle connection.
func idleConns(slots int, limit uint64) (n int, short bool) {
	n = max(4096, slots)
	if limit == 0 || limit > math.MaxInt32 {
		return n, false
	}
	room := int(limit) - slots - openFilesReserved
	return max(64, min(n, room)), room < 0
}
