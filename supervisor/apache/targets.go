package apache

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// target is one file Apply keeps in step with the render, as found on disk.
type target struct {
	path string
	link string // the enable link, "" for none
	// data is what the file must hold; nil means sockvisor's file must not
	// exist (a sites file after the last site went).
	data   []byte
	old    current
	linked bool // link exists and points at path
	mkdir  bool // create the directory first (IncludeDir)
	// optional targets are dropped when the file there is not ours: the
	// sites file when no site needs it, stubs for include files of sites
	// that went.
	optional bool
}

// targets maps the rendered files onto the layout and reads what is there.
func (m *Manager) targets(cfg *config.Config) ([]*target, error) {
	l := m.opts.Layout
	var out []*target
	var sites []byte
	wanted := map[string]bool{}
	for _, f := range m.render(cfg) {
		switch f.Kind {
		case KindMain:
			out = append(out, &target{path: l.ConfigFile, link: l.EnableLink, data: f.Data})
		case KindSites:
			sites = f.Data
		case KindInclude:
			if l.IncludeDir == "" {
				return nil, fmt.Errorf("site %q has render = \"include\", but this Apache layout names no directory for include files; use render = \"vhost\"", f.Site)
			}
			p := filepath.Join(l.IncludeDir, f.Site+".conf")
			wanted[p] = true
			out = append(out, &target{path: p, data: f.Data, mkdir: true})
		}
	}
	switch {
	case l.SitesFile == "":
		if sites != nil && len(out) > 0 {
			out[0].data = append(append([]byte(nil), out[0].data...), sites...)
		}
	default:
		out = append(out, &target{path: l.SitesFile, link: l.SitesLink, data: sites, optional: sites == nil})
	}
	stale, err := staleIncludes(l.IncludeDir, wanted)
	if err != nil {
		return nil, err
	}
	out = append(out, stale...)

	kept := out[:0]
	for _, t := range out {
		old, err := readCurrent(t.path)
		if t.optional && errors.Is(err, ErrNotOurs) {
			continue // not ours, and nothing of ours is needed there
		}
		if err != nil {
			return nil, err
		}
		t.old = old
		if t.link != "" {
			t.linked, err = linkState(t.link, t.path)
			if t.optional && errors.Is(err, ErrLinkConflict) {
				t.link = "" // somebody else's link: leave it
				err = nil
			}
			if err != nil {
				return nil, err
			}
		}
		kept = append(kept, t)
	}
	return kept, nil
}

// staleIncludes turns include files sockvisor wrote for sites that are gone
// into stubs. They are not removed: the operator's virtual host still
// Includes them, and a missing Include would fail Apache's configtest.
func staleIncludes(dir string, wanted map[string]bool) ([]*target, error) {
	if dir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var out []*target
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if wanted[p] || !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		site := strings.TrimSuffix(e.Name(), ".conf")
		stub := fmt.Sprintf("%s: site %q is no longer in sockvisor's config.\n# Remove the Include that names this file; sockvisor leaves it so that Apache still starts.\n", header, comment(site))
		out = append(out, &target{path: p, data: []byte(stub), optional: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out, nil
}

// anyChange reports whether applying targets would touch anything.
func anyChange(ts []*target) bool {
	for _, t := range ts {
		if t.data == nil {
			if t.old.exists || t.linked {
				return true
			}
			continue
		}
		if !t.old.exists || !bytes.Equal(t.old.data, t.data) || (t.link != "" && !t.linked) {
			return true
		}
	}
	return false
}

// writeTargets puts every target in place and returns what undoes it, in
// reverse order. On error the caller runs undo, which puts back what was
// done so far.
func writeTargets(ts []*target) (undo func() error, err error) {
	var undos []func() error
	undo = func() error {
		var errs []error
		for i := len(undos) - 1; i >= 0; i-- {
			errs = append(errs, undos[i]())
		}
		return errors.Join(errs...)
	}
	for _, t := range ts {
		t := t
		if t.data == nil {
			if t.linked {
				if err := removeLink(t.link); err != nil {
					return undo, err
				}
				undos = append(undos, func() error { return makeLink(t.link, t.path) })
			}
			if t.old.exists {
				if err := restore(t.path, current{}); err != nil {
					return undo, err
				}
				undos = append(undos, func() error { return restore(t.path, t.old) })
			}
			continue
		}
		if !t.old.exists || !bytes.Equal(t.old.data, t.data) {
			if t.mkdir {
				if err := os.MkdirAll(filepath.Dir(t.path), 0o755); err != nil {
					return undo, fmt.Errorf("creating %s: %w", filepath.Dir(t.path), err)
				}
			}
			if err := writeAtomic(t.path, t.data, t.old); err != nil {
				return undo, err
			}
			undos = append(undos, func() error { return restore(t.path, t.old) })
		}
		if t.link != "" && !t.linked {
			if err := makeLink(t.link, t.path); err != nil {
				return undo, err
			}
			undos = append(undos, func() error { return removeLink(t.link) })
		}
	}
	return undo, nil
}
