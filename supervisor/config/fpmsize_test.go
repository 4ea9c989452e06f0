package config

import "testing"

func TestFPMChildrenSizing(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		cpus int
		mem  uint64
		want int
	}{
		{2, 24 * gib, 8},  // four per CPU
		{8, 64 * gib, 32}, // four per CPU
		{32, 4 * gib, 16}, // a quarter of 4 GiB at 64 MiB each
		{1, 512 << 20, 8}, // never fewer than 8
		{16, 0, 64},       // memory unknown: by CPU alone
	} {
		if got := fpmChildren(c.cpus, c.mem); got != c.want {
			t.Errorf("fpmChildren(%d CPUs, %d MiB) = %d; want %d", c.cpus, c.mem>>20, got, c.want)
		}
	}
	if memTotal() == 0 {
		t.Error("memTotal read nothing from /proc/meminfo")
	}
}
