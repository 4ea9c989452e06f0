package procfs

import (
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Holder is one open descriptor of a process, as /proc/PID/fd/FD names it.
type Holder struct {
	PID  int
	FD   int
	Link string // "socket:[123]", "pipe:[456]"
}

// Inode is the inode a "socket:[N]" or "pipe:[N]" link names, or 0.
func (h Holder) Inode() uint64 {
	_, rest, ok := strings.Cut(h.Link, ":[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
	return n
}

// SocketLink is how /proc/PID/fd names a descriptor of socket inode ino.
func SocketLink(ino uint64) string { return "socket:[" + strconv.FormatUint(ino, 10) + "]" }

// PipeLink is how /proc/PID/fd names a descriptor of pipe inode ino.
func PipeLink(ino uint64) string { return "pipe:[" + strconv.FormatUint(ino, 10) + "]" }

// Holders scans /proc/*/fd for descriptors whose link is one of links, in
// pid order. It is the only way to learn who holds a listening socket:
// SO_PEERCRED on a listener names whoever called listen(2), and that process
// may be long gone. Processes whose fds cannot be read (another user's,
// without CAP_SYS_PTRACE) or that exit meanwhile are skipped: the result is
// a lower bound.
func Holders(links map[string]bool) []Holder {
	if len(links) == 0 {
		return nil
	}
	return HoldersIn(List(), links)
}

// HoldersIn is Holders restricted to the given pids.
func HoldersIn(pids []int, links map[string]bool) []Holder {
	var out []Holder
	for _, pid := range pids {
		out = append(out, holdersOf(pid, links)...)
	}
	return out
}

func holdersOf(pid int, links map[string]bool) []Holder {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	var out []Holder
	for _, n := range names {
		link, err := os.Readlink(dir + n)
		if err != nil || !links[link] {
			continue
		}
		fd, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		out = append(out, Holder{PID: pid, FD: fd, Link: link})
	}
	return out
}

// PIDs returns the distinct pids among hs, in order of first appearance.
func PIDs(hs []Holder) []int {
	seen := map[int]bool{}
	var out []int
	for _, h := range hs {
		if !seen[h.PID] {
			seen[h.PID] = true
			out = append(out, h.PID)
		}
	}
	return out
}

// snapshot is one scan of every process's socket and pipe descriptors.
type snapshot struct {
	started time.Time
	byLink  map[string][]Holder
}

var snap struct {
	mu   sync.Mutex // held for a whole scan: concurrent callers share it
	last *snapshot
}

// HoldersSince is Holders from a scan that began at or after since, shared
// by concurrent callers: when many backends stop at once, each needs a scan
// taken after its own processes ended, and one full scan of /proc serves
// all those that wait for it instead of each reading every fd on the
// machine.
func HoldersSince(since time.Time, links map[string]bool) []Holder {
	if len(links) == 0 {
		return nil
	}
	snap.mu.Lock()
	s := snap.last
	if s == nil || s.started.Before(since) {
		s = scanAll()
		snap.last = s
		// Only callers arriving about now can use it; do not keep a map of
		// every descriptor on the machine around for months.
		time.AfterFunc(2*time.Second, func() {
			snap.mu.Lock()
			defer snap.mu.Unlock()
			if snap.last == s {
				snap.last = nil
			}
		})
	}
	snap.mu.Unlock()
	var out []Holder
	for l := range links {
		out = append(out, s.byLink[l]...)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].PID < out[j].PID || out[i].PID == out[j].PID && out[i].FD < out[j].FD
	})
	return out
}

// scanAll reads every socket and pipe descriptor in /proc.
func scanAll() *snapshot {
	s := &snapshot{started: time.Now(), byLink: map[string][]Holder{}}
	for _, pid := range List() {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
		f, err := os.Open(dir)
		if err != nil {
			continue
		}
		names, _ := f.Readdirnames(-1)
		f.Close()
		for _, n := range names {
			link, err := os.Readlink(dir + n)
			if err != nil || !(strings.HasPrefix(link, "socket:[") || strings.HasPrefix(link, "pipe:[")) {
				continue
			}
			fd, err := strconv.Atoi(n)
			if err != nil {
				continue
			}
			s.byLink[link] = append(s.byLink[link], Holder{PID: pid, FD: fd, Link: link})
		}
	}
	return s
}
