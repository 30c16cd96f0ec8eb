//go:build !(linux || darwin)

package main

// raiseFileLimit cannot read or raise the open-file limit on this platform.
func raiseFileLimit(need, least uint64) fileLimit {
	return fileLimit{Need: need, Least: least, Err: "no RLIMIT_NOFILE on this platform"}
}
