package config

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// FPM sizes and tunes the PHP-FPM pool sockvisor generates for a php-fpm
// backend. Zero values never reach the backend: the validator fills in
// every count, sized for the machine where the block leaves it out.
type FPM struct {
	// Configured is true when the backend has an fpm block: the pool
	// then has to be sockvisor's (no -y of the user's).
	Configured bool
	PM         string // static | dynamic | ondemand
	// MaxChildren is pm.max_children.
	MaxChildren int
	// StartServers, MinSpare and MaxSpare are pm.start_servers,
	// pm.min_spare_servers and pm.max_spare_servers (pm = "dynamic").
	StartServers int
	MinSpare     int
	MaxSpare     int
	// Settings are extra pool directives, written after sockvisor's own.
	Settings map[string]string
}

type fileFPM struct {
	PM          *string           `hcl:"pm,optional"`
	MaxChildren *int              `hcl:"max_children,optional"`
	Settings    map[string]string `hcl:"settings,optional"`
}

// FPM worker sizing. A PHP worker of a typical app (WordPress, DokuWiki)
// holds 30 to 60 MiB; it waits on its database as much as it computes.
const (
	fpmWorkerMemory   = 64 << 20 // bytes budgeted per worker
	fpmChildrenPerCPU = 4
	fpmMinChildren    = 2
	fpmMaxChildren    = 64
)

// DefaultFPMChildren is pm.max_children for a pool whose config leaves it
// out: four workers per CPU, but no more than a quarter of the machine's
// memory at 64 MiB each, and between 2 and 64. On 2 CPUs and 24 GiB: 8.
func DefaultFPMChildren() int {
	return fpmChildren(runtime.NumCPU(), memTotal())
}

func fpmChildren(cpus int, mem uint64) int {
	n := cpus * fpmChildrenPerCPU
	if mem > 0 {
		if byMem := int(mem / 4 / fpmWorkerMemory); byMem < n {
			n = byMem
		}
	}
	return max(fpmMinChildren, min(n, fpmMaxChildren))
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
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// spares returns PHP-FPM's dynamic sizing for n children: a quarter of
// them spare at least, half at most, and a start in the middle (FPM's own
// default for pm.start_servers).
func spares(n int) (start, minSpare, maxSpare int) {
	minSpare = max(1, n/4)
	maxSpare = max(minSpare, n/2)
	return minSpare + (maxSpare-minSpare)/2, minSpare, maxSpare
}

var (
	// fpmKeyRe is a pool directive: "pm.max_requests",
	// "php_admin_value[memory_limit]".
	fpmKeyRe = regexp.MustCompile(`^[a-z_][a-z0-9_.]*(\[[A-Za-z0-9_.-]+\])?$`)
	// fpmPlainRe values are written bare; the rest go in double quotes.
	fpmPlainRe = regexp.MustCompile(`^[A-Za-z0-9_./:,+@%-]*$`)
)

// fpmOwned are the directives sockvisor writes itself, with the key that
// sets each instead.
var fpmOwned = map[string]string{
	"listen": "the socket is sockvisor's", "user": "set the backend's user", "group": "set the backend's group",
	"pm": "set fpm.pm", "pm.max_children": "set fpm.max_children", "chdir": "set directory",
	"process_control_timeout": "it follows stop_timeout, so set that",
}

// FPMValue renders a settings value for PHP-FPM's ini syntax.
func FPMValue(v string) string {
	if fpmPlainRe.MatchString(v) {
		return v
	}
	return `"` + v + `"`
}

// DefaultFPM is the pool of a php-fpm backend without an fpm block.
func DefaultFPM() FPM {
	out := FPM{PM: "dynamic", MaxChildren: DefaultFPMChildren(), Settings: map[string]string{}}
	out.StartServers, out.MinSpare, out.MaxSpare = spares(out.MaxChildren)
	return out
}

func (v *validator) fpm(key string, b *Backend, f *fileFPM) FPM {
	key += ".fpm"
	if f == nil {
		if b.Preset == "php-fpm" {
			return DefaultFPM()
		}
		return FPM{}
	}
	out := FPM{PM: "dynamic", Settings: map[string]string{}}
	if b.Preset != "php-fpm" {
		v.at(key, "an fpm block only applies to preset \"php-fpm\"; remove it or set preset = \"php-fpm\"")
		return out
	}
	out.Configured = true
	out.PM = str(f.PM, "dynamic")
	v.oneOf(key+".pm", out.PM, "static", "dynamic", "ondemand")
	out.MaxChildren = DefaultFPMChildren()
	if f.MaxChildren != nil {
		out.MaxChildren = *f.MaxChildren
		if out.MaxChildren < 1 || out.MaxChildren > 4096 {
			v.at(key+".max_children", "max_children must be between 1 and 4096, not %d", out.MaxChildren)
		}
	}
	out.StartServers, out.MinSpare, out.MaxSpare = spares(out.MaxChildren)
	keys := make([]string, 0, len(f.Settings))
	for k := range f.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := f.Settings[k]
		switch {
		case !fpmKeyRe.MatchString(k):
			v.at(key+".settings", "fpm setting %q is not a PHP-FPM pool directive; write it like \"pm.max_requests\" or \"php_admin_value[memory_limit]\"", k)
		case fpmOwned[k] != "" || strings.HasPrefix(k, "listen.") || strings.HasPrefix(k, "env["):
			why := fpmOwned[k]
			if why == "" && strings.HasPrefix(k, "env[") {
				why = "set environment"
			} else if why == "" {
				why = "the socket is sockvisor's"
			}
			v.at(key+".settings", "fpm setting %q is written by sockvisor (%s); remove it from settings", k, why)
		case strings.ContainsAny(val, "\"\n\r\x00") || strings.Contains(val, "${"):
			v.at(key+".settings", "fpm setting %s has a value PHP-FPM's ini syntax cannot hold (a double quote, newline or ${); remove those characters", k)
		}
	}
	out.Settings = f.Settings
	if out.Settings == nil {
		out.Settings = map[string]string{}
	}
	return out
}

// String summarises the pool sizing for `sockvisor check`.
func (f FPM) String() string {
	if f.PM == "dynamic" {
		return fmt.Sprintf("pm = dynamic, max_children = %d (start %d, spare %d-%d)", f.MaxChildren, f.StartServers, f.MinSpare, f.MaxSpare)
	}
	return fmt.Sprintf("pm = %s, max_children = %d", f.PM, f.MaxChildren)
}
