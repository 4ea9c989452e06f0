package apacheconf

import (
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// memFS is an in-memory fileSystem for parser tests and the fuzzer.
type memFS map[string]string

type memInfo struct {
	name string
	dir  bool
	size int
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return int64(i.size) }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (i memInfo) ModTime() time.Time         { return time.Time{} }
func (i memInfo) IsDir() bool                { return i.dir }
func (i memInfo) Sys() any                   { return nil }
func (i memInfo) Type() fs.FileMode          { return i.Mode().Type() }
func (i memInfo) Info() (fs.FileInfo, error) { return i, nil }

func (m memFS) ReadFile(n string) ([]byte, error) {
	s, ok := m[n]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return []byte(s), nil
}

func (m memFS) Stat(n string) (fs.FileInfo, error) {
	if s, ok := m[n]; ok {
		return memInfo{name: path.Base(n), size: len(s)}, nil
	}
	for k := range m {
		if strings.HasPrefix(k, strings.TrimSuffix(n, "/")+"/") {
			return memInfo{name: path.Base(n), dir: true}, nil
		}
	}
	return nil, fs.ErrNotExist
}

func (m memFS) Glob(pattern string) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, err
	}
	var out []string
	for k := range m {
		if ok, _ := path.Match(pattern, k); ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (m memFS) ReadDir(n string) ([]fs.DirEntry, error) {
	prefix := strings.TrimSuffix(n, "/") + "/"
	seen := map[string]bool{}
	var out []fs.DirEntry
	for k := range m {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		name, _, sub := strings.Cut(rest, "/")
		if !seen[name] {
			seen[name] = true
			out = append(out, memInfo{name: name, dir: sub})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}
