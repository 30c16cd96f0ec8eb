package main

import "github.com/prometheus/procfs"

// cpuModel is the CPU's model name from /proc/cpuinfo (through procfs), or
// "" if it cannot be read.
func cpuModel() string {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return ""
	}
	cpus, err := fs.CPUInfo()
	if err != nil || len(cpus) == 0 {
		return ""
	}
	return cpus[0].ModelName
}
