package procfs

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// List returns the pid of every process in /proc, in directory order, or
// nil if /proc cannot be read. A process may exit right after it is
// listed: callers read each one and skip those that are gone.
func List() []int { return Proc.List() }

// List returns the pid of every process in d; see List.
func (d Dir) List() []int {
	ents, err := os.ReadDir(string(d))
	if err != nil {
		return nil
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out
}

// GroupMembers lists the live (not zombie) processes of process group
// pgid. Zombies are dead already; whoever reaps them is not asked. An empty
// group costs one kill(2), not a scan of /proc.
func GroupMembers(pgid int) []int {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return nil
	}
	var out []int
	for _, pid := range List() {
		if st, err := ReadStat(pid); err == nil && st.PGID == pgid && !st.Zombie() {
			out = append(out, pid)
		}
	}
	return out
}

// Children lists the processes whose parent is pid, zombies included.
func Children(pid int) []int {
	var out []int
	for _, q := range List() {
		if st, err := ReadStat(q); err == nil && st.PPID == pid {
			out = append(out, q)
		}
	}
	return out
}

// Alive reports whether pid is a running process: a zombie counts as dead.
// When /proc/PID/stat exists but cannot be read or parsed, kill(pid, 0)
// decides.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	st, err := ReadStat(pid)
	switch {
	case err == nil:
		return !st.Zombie()
	case errors.Is(err, os.ErrNotExist):
		return false
	}
	return Exists(pid)
}

// Exists reports whether process pid exists, a zombie included: kill(pid,
// 0) succeeds or fails only for want of permission.
func Exists(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ReadPIDs reads a file of one pid a line, such as a cgroup's cgroup.procs.
// Lines that are not a number are skipped.
func ReadPIDs(path string) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
			pids = append(pids, n)
		}
	}
	return pids, sc.Err()
}

// SelfCgroup returns this process's cgroup path from /proc/self/cgroup: the
// unified hierarchy's ("0::/..."), else systemd's named one
// ("N:name=systemd:/..."), else "".
func SelfCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	return parseCgroup(string(b)), nil
}

func parseCgroup(s string) string {
	var path string
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" || parts[1] == "name=systemd" {
			path = parts[2]
			if parts[0] == "0" {
				break
			}
		}
	}
	return path
}

// Generation lists the live processes that belong to the process started
// as pid: its process group (pgid == pid), plus its descendants that left
// the group (a server that setsid's its workers). An old generation is
// never among them: it is neither in the new group nor below the new
// process. One pass over /proc.
func Generation(pid int) []int {
	var out []int
	inGroup := map[int]bool{}
	parent := map[int]int{} // the others
	for _, q := range List() {
		st, err := ReadStat(q)
		if err != nil || st.Zombie() {
			continue
		}
		if st.PGID == pid {
			inGroup[q] = true
			out = append(out, q)
		} else {
			parent[q] = st.PPID
		}
	}
	for q, pp := range parent {
		for depth := 0; pp > 1 && depth < 64; depth++ {
			if pp == pid || inGroup[pp] {
				out = append(out, q)
				break
			}
			next, ok := parent[pp]
			if !ok {
				break
			}
			pp = next
		}
	}
	return out
}
