package config

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// PHP-FPM pool sizing. A worker of a typical PHP app (WordPress, DokuWiki)
// holds 30 to 60 MiB and waits on its database as much as it computes.
const (
	fpmChildrenPerCPU = 4
	fpmMinChildren    = 8
	fpmWorkerMemory   = 64 << 20 // bytes budgeted per worker
)

// fpmChildren is four workers per CPU, at most a quarter of mem (bytes; 0
// for unknown) at 64 MiB each, and never fewer than 8. On 2 CPUs: 8; on 32
// CPUs with 4 GiB: 16 rather than 128.
func fpmChildren(cpus int, mem uint64) int {
	n := cpus * fpmChildrenPerCPU
	if byMem := int(mem / 4 / fpmWorkerMemory); mem > 0 && byMem < n {
		n = byMem
	}
	return max(n, fpmMinChildren)
}

// memTotal returns MemTotal from /proc/meminfo in bytes, or 0.
func memTotal() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
