//go:build !unix

package daemon

// openFileLimit is unknown here: idle connections are not bounded by it.
func openFileLimit() uint64 { return 0 }
