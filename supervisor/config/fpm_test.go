package config

import (
	"strings"
	"testing"
)

func TestFPMChildrenSizing(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		cpus int
		mem  uint64
		want int
	}{
		{2, 24 * gib, 8},    // four per CPU
		{2, 1 * gib, 4},     // a quarter of 1 GiB at 64 MiB each
		{1, 256 << 20, 2},   // never fewer than 2
		{64, 512 * gib, 64}, // never more than 64
		{4, 0, 16},          // memory unknown: by CPU alone
	} {
		if got := fpmChildren(c.cpus, c.mem); got != c.want {
			t.Errorf("fpmChildren(%d CPUs, %d MiB) = %d; want %d", c.cpus, c.mem>>20, got, c.want)
		}
	}
	for n := 1; n <= 100; n++ {
		start, lo, hi := spares(n)
		if lo < 1 || lo > start || start > hi || hi > max(n, 1) {
			t.Errorf("spares(%d) = start %d, spare %d-%d; PHP-FPM needs 1 <= min <= start <= max <= max_children", n, start, lo, hi)
		}
	}
}

const fpmBackend = `backend "wp" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  user          = "root"
  document_root = "/usr/share"
%s
}
`

func TestFPMBlock(t *testing.T) {
	c := mustParse(t, strings.Replace(fpmBackend, "%s", "", 1))
	if f := c.Backends[0].FPM; f.Configured || f.PM != "dynamic" || f.MaxChildren != DefaultFPMChildren() || f.MinSpare < 1 {
		t.Errorf("default pool = %+v", f)
	}
	c = mustParse(t, strings.Replace(fpmBackend, "%s", `  fpm {
    pm           = "static"
    max_children = 16
    settings     = { "php_admin_value[memory_limit]" = "256M", "pm.max_requests" = "500" }
  }`, 1))
	f := c.Backends[0].FPM
	if !f.Configured || f.PM != "static" || f.MaxChildren != 16 || f.Settings["php_admin_value[memory_limit]"] != "256M" || f.Settings["pm.max_requests"] != "500" {
		t.Errorf("pool = %+v", f)
	}
	if FPMValue("256M") != "256M" || FPMValue("a b;c") != `"a b;c"` {
		t.Errorf("FPMValue quotes wrongly: %s %s", FPMValue("256M"), FPMValue("a b;c"))
	}
}

func TestFPMBlockProblems(t *testing.T) {
	for _, c := range []struct {
		name, block string
		fragments   []string
	}{
		{"bad pm", `fpm { pm = "lazy" }`, []string{"pm \"lazy\"", "static, dynamic, ondemand"}},
		{"zero children", `fpm { max_children = 0 }`, []string{"max_children must be between 1 and 4096"}},
		{"owned listen", `fpm { settings = { "listen" = "/tmp/x.sock" } }`, []string{"\"listen\" is written by sockvisor"}},
		{"owned timeout", `fpm { settings = { "process_control_timeout" = "1s" } }`, []string{"stop_timeout"}},
		{"env", `fpm { settings = { "env[A]" = "b" } }`, []string{"set environment"}},
		{"not a directive", `fpm { settings = { "a b" = "1" } }`, []string{"not a PHP-FPM pool directive"}},
		{"newline", `fpm { settings = { "php_value[x]" = "a\nb" } }`, []string{"cannot hold"}},
		{"unknown key", `fpm { max_childs = 3 }`, []string{"max_childs"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, strings.Replace(fpmBackend, "%s", "  "+c.block, 1), "6", c.fragments...)
		})
	}
	wantProblem(t, "backend \"a\" {\n  preset = \"gunicorn\"\n  command = [\"/bin/true\"]\n  user = \"root\"\n  fpm { pm = \"static\" }\n}\n", "5", "only applies to preset \"php-fpm\"")
}
