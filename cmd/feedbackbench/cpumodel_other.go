//go:build !linux

package main

// cpuModel is "" where procfs cannot read /proc/cpuinfo.
func cpuModel() string { return "" }
