package doctor

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/osuser"
)

// Identity is the user and groups Apache's workers run as.
type Identity struct {
	User   string   `json:"user"`
	UID    int      `json:"uid"`
	Group  string   `json:"group"`
	GID    int      `json:"gid"`
	Groups []uint32 `json:"groups"` // primary first, then supplementary
}

// resolveIdentity computes the credentials Apache's workers get from
// setgid(Group) and initgroups(User, Group): the Group directive's gid plus
// every /etc/group entry listing the user.
func resolveIdentity(userName string, uid int, groupName string, gid int, groupFile string) (Identity, error) {
	id := Identity{User: userName, UID: uid, Group: groupName, GID: gid}
	if uid < 0 {
		u, err := user.Lookup(userName)
		if err != nil {
			return id, fmt.Errorf("looking up Apache's user %q: %w", userName, err)
		}
		id.UID, _ = strconv.Atoi(u.Uid)
		if gid < 0 && groupName == "" {
			id.GID, _ = strconv.Atoi(u.Gid)
		}
	}
	if id.GID < 0 {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			return id, fmt.Errorf("looking up Apache's group %q: %w", groupName, err)
		}
		id.GID, _ = strconv.Atoi(g.Gid)
	}
	if id.Group == "" {
		if g, err := user.LookupGroupId(strconv.Itoa(id.GID)); err == nil {
			id.Group = g.Name
		}
	}
	id.Groups = []uint32{uint32(id.GID)}
	f, err := os.Open(groupFile)
	if err != nil {
		return id, fmt.Errorf("reading supplementary groups: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan() && n < 100000; n++ {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 4 {
			continue
		}
		g, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil || uint32(g) == uint32(id.GID) {
			continue
		}
		for _, m := range strings.Split(fields[3], ",") {
			if strings.TrimSpace(m) == userName {
				id.Groups = append(id.Groups, uint32(g))
				break
			}
		}
	}
	return id, sc.Err()
}

func (id Identity) inGroup(gid uint32) bool {
	for _, g := range id.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

// Step is one path component the kernel checks on connect(2), as
// `namei -l` lists them, with the verdict for Apache's identity.
type Step struct {
	Path  string `json:"path"`
	Mode  string `json:"mode"` // ls -l style, "+" when an ACL is present
	Owner string `json:"owner"`
	Group string `json:"group"`
	// Need is "x" (search a directory) or "w" (write the socket).
	Need string `json:"need"`
	OK   bool   `json:"ok"`
	uid  uint32
	gid  uint32
	acl  *acl
	mode fs.FileMode
}

func (s Step) String() string {
	verdict := "ok"
	if !s.OK {
		verdict = "DENIED (" + s.Need + ")"
	}
	return fmt.Sprintf("%s %s %s %s  %s", s.Mode, s.Owner, s.Group, s.Path, verdict)
}

// walk is the permission walk's result.
type walk struct {
	Steps []Step
	// Denied is the index in Steps of the first component Apache may not
	// use, or -1.
	Denied int
	// Missing is the first component that does not exist, or "".
	Missing string
	// NotSocket is set when the final component is no socket.
	NotSocket fs.FileMode
	// Err is why the walk could not finish (e.g. we lack permission ourselves).
	Err error
}

const maxSymlinks = 40 // the kernel's limit

// walkPath follows path component by component as the kernel does on
// connect(2), symlinks included, and evaluates search permission on every
// directory and write permission on the socket for id.
func walkPath(path string, id Identity) walk {
	w := walk{Denied: -1}
	if !filepath.IsAbs(path) {
		w.Err = fmt.Errorf("%s is not absolute", path)
		return w
	}
	queue := splitPath(path)
	cur := "/"
	if !w.check(cur, id, "x") {
		return w
	}
	links := 0
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		var st unix.Stat_t
		if err := unix.Lstat(next, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				w.Missing = next
			} else {
				w.Err = &fs.PathError{Op: "lstat", Path: next, Err: err}
			}
			return w
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			links++
			if links > maxSymlinks {
				w.Err = &fs.PathError{Op: "resolve", Path: path, Err: unix.ELOOP}
				return w
			}
			target, err := os.Readlink(next)
			if err != nil {
				w.Err = err
				return w
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			queue = append(splitPath(target), queue...)
			continue
		}
		need := "x"
		if len(queue) == 0 {
			need = "w"
			if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
				w.NotSocket = fileMode(st.Mode)
			}
		} else if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			w.Err = &fs.PathError{Op: "walk", Path: next, Err: unix.ENOTDIR}
			return w
		}
		if !w.check(next, id, need) {
			return w
		}
		cur = next
	}
	return w
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// check stats p, records a Step and reports whether the walk may go on.
func (w *walk) check(p string, id Identity, need string) bool {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		w.Err = &fs.PathError{Op: "stat", Path: p, Err: err}
		return false
	}
	a, err := readACL(p)
	if err != nil {
		w.Err = err
		return false
	}
	s := Step{Path: p, Need: need, uid: st.Uid, gid: st.Gid, acl: a, mode: fileMode(st.Mode)}
	s.Mode = lsMode(st.Mode)
	if a != nil {
		s.Mode += "+"
	}
	s.Owner = osuser.UserName(st.Uid)
	s.Group = osuser.GroupName(st.Gid)
	bit := uint16(1) // x
	if need == "w" {
		bit = 2
	}
	s.OK = allowed(s, id, bit)
	w.Steps = append(w.Steps, s)
	if !s.OK && w.Denied < 0 {
		w.Denied = len(w.Steps) - 1
	}
	return true
}

// lsMode formats a mode as ls -l and namei -l do: "drwxrwxrwt", "srw-rw----".
func lsMode(m uint32) string {
	b := []byte("?rwxrwxrwx")
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		b[0] = 'd'
	case unix.S_IFSOCK:
		b[0] = 's'
	case unix.S_IFREG:
		b[0] = '-'
	case unix.S_IFLNK:
		b[0] = 'l'
	case unix.S_IFIFO:
		b[0] = 'p'
	case unix.S_IFCHR:
		b[0] = 'c'
	case unix.S_IFBLK:
		b[0] = 'b'
	}
	for i := 0; i < 9; i++ {
		if m&(1<<(8-i)) == 0 {
			b[i+1] = '-'
		}
	}
	special := func(bit uint32, i int, set, unset byte) {
		if m&bit != 0 {
			if b[i] == '-' {
				b[i] = unset
			} else {
				b[i] = set
			}
		}
	}
	special(unix.S_ISUID, 3, 's', 'S')
	special(unix.S_ISGID, 6, 's', 'S')
	special(unix.S_ISVTX, 9, 't', 'T')
	return string(b)
}

func fileMode(m uint32) fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		fm |= fs.ModeDir
	case unix.S_IFSOCK:
		fm |= fs.ModeSocket
	case unix.S_IFLNK:
		fm |= fs.ModeSymlink
	case unix.S_IFIFO:
		fm |= fs.ModeNamedPipe
	case unix.S_IFCHR:
		fm |= fs.ModeCharDevice | fs.ModeDevice
	case unix.S_IFBLK:
		fm |= fs.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// allowed applies the kernel's DAC rules (acl(7) "access check algorithm")
// for one permission bit (4 r, 2 w, 1 x).
func allowed(s Step, id Identity, bit uint16) bool {
	if id.UID == 0 {
		return true // CAP_DAC_OVERRIDE
	}
	perm := uint16(s.mode.Perm())
	if uint32(id.UID) == s.uid {
		return perm>>6&bit != 0
	}
	if a := s.acl; a != nil {
		mask := uint16(7)
		if a.hasMask {
			mask = a.mask
		}
		for _, e := range a.users {
			if e.id == uint32(id.UID) {
				return e.perm&mask&bit != 0
			}
		}
		matched := false
		groups := append([]aclEntry{{id: s.gid, perm: a.groupObj}}, a.groups...)
		for _, e := range groups {
			if id.inGroup(e.id) {
				matched = true
				if e.perm&mask&bit != 0 {
					return true
				}
			}
		}
		if matched {
			return false
		}
		return perm&bit != 0
	}
	if id.inGroup(s.gid) {
		return perm>>3&bit != 0
	}
	return perm&bit != 0
}

// acl is a POSIX access ACL beyond the three mode entries.
type acl struct {
	users    []aclEntry
	groups   []aclEntry
	groupObj uint16
	mask     uint16
	hasMask  bool
}

type aclEntry struct {
	id   uint32
	perm uint16
}

// ACL xattr tags (linux/posix_acl_xattr.h).
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// readACL returns p's extended access ACL, or nil when there is none.
func readACL(p string) (*acl, error) {
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(p, "system.posix_acl_access", buf)
	switch {
	case errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP):
		return nil, nil
	case err != nil:
		return nil, &fs.PathError{Op: "getxattr", Path: p, Err: err}
	}
	return parseACL(buf[:n]), nil
}

// parseACL decodes the xattr: a little-endian u32 version, then 8-byte
// entries {u16 tag, u16 perm, u32 id}. Garbage yields nil.
func parseACL(b []byte) *acl {
	if len(b) < 4 || binary.LittleEndian.Uint32(b) != 2 || (len(b)-4)%8 != 0 {
		return nil
	}
	a := &acl{}
	extended := false
	for b = b[4:]; len(b) >= 8; b = b[8:] {
		tag := binary.LittleEndian.Uint16(b)
		perm := binary.LittleEndian.Uint16(b[2:]) & 7
		id := binary.LittleEndian.Uint32(b[4:])
		switch tag {
		case aclUser:
			a.users = append(a.users, aclEntry{id, perm})
			extended = true
		case aclGroup:
			a.groups = append(a.groups, aclEntry{id, perm})
			extended = true
		case aclGroupObj:
			a.groupObj = perm
		case aclMask:
			a.mask, a.hasMask = perm, true
			extended = true
		}
	}
	if !extended {
		return nil
	}
	return a
}
