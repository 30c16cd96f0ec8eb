package daemon

// openFilesReserved is the descriptors kept for everything but delivery
// connections: Kafka and Redis connections, listeners, admin clients.
const openFilesReserved = 1000

// idleConns is how many idle delivery connections to keep over all
// endpoints (deliver.Options.MaxIdleConns): 4,096, or as many as the slots
// if more, so that a burst of answers closes none the next burst needs;
// but no more than the open-file limit leaves beside a connection per slot
// and openFilesReserved (limit 0: unknown, not bounded). short says that
// the limit does not cover even the slots' own connections.
func idleConns(slots int, limit uint64) (n int, short bool) {
	n = max(4096, slots)
	if limit == 0 {
		return n, false
	}
	room := int64(limit) - int64(slots) - openFilesReserved
	if room < 64 {
		return 64, true
	}
	return int(min(int64(n), room)), false
}
