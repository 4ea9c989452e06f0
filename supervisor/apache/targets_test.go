package apache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// fileManager is a Manager on a Debian-like tree in dir whose configtest is
// apachectl (e.g. /bin/true or /bin/false) and whose modules are all loaded.
func fileManager(t *testing.T, dir, apachectl string) (*Manager, Layout) {
	t.Helper()
	for _, d := range []string{"conf-available", "conf-enabled", "sites-available", "sites-enabled"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l := Layout{
		Flavor:     "debian",
		ConfigFile: filepath.Join(dir, "conf-available", "sockvisor.conf"),
		EnableLink: filepath.Join(dir, "conf-enabled", "sockvisor.conf"),
		SitesFile:  filepath.Join(dir, "sites-available", "sockvisor.conf"),
		SitesLink:  filepath.Join(dir, "sites-enabled", "sockvisor.conf"),
		IncludeDir: filepath.Join(dir, "sockvisor-sites"),
		Apachectl:  []string{apachectl},
	}
	m := NewManager(Options{Layout: l, Logger: hclog.NewNullLogger()})
	m.modules = func(context.Context) (map[string]bool, error) {
		all := map[string]bool{}
		for _, mod := range []string{"proxy", "proxy_http", "headers", "ssl", "rewrite", "alias", "mime", "dir", "authz_core", "proxy_fcgi", "env"} {
			all[mod] = true
		}
		return all, nil
	}
	t.Cleanup(func() { m.Close() })
	return m, l
}

const twoSites = `
site "a.example" {}
site "b.example" {
  render = "include"
}
backend "a" {
  command = ["/bin/true"]
  site    = "a.example"
}
backend "b" {
  command = ["/bin/true"]
  site    = "b.example"
}
`

const noSites = `
backend "a" {
  command = ["/bin/true"]
}
`

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// TestApplyFileSet: sites and include files appear and go with the config,
// a gone include site leaves a stub, and foreign files are left alone.
func TestApplyFileSet(t *testing.T) {
	dir := t.TempDir()
	m, l := fileManager(t, dir, "/bin/true")
	if err := os.MkdirAll(l.IncludeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(l.IncludeDir, "mine.conf")
	if err := os.WriteFile(foreign, []byte("# the operator's own\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	apply := func(body string) bool {
		t.Helper()
		changed, err := m.Apply(ctx, loadHCL(t, dir, body))
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		return changed
	}
	if !apply(twoSites) {
		t.Fatal("first Apply changed nothing")
	}
	inc := filepath.Join(l.IncludeDir, "b.example.conf")
	for _, p := range []string{l.ConfigFile, l.EnableLink, l.SitesFile, l.SitesLink, inc} {
		if !exists(p) {
			t.Errorf("%s missing", p)
		}
	}
	if apply(twoSites) {
		t.Error("the same config applied twice changed something")
	}
	if !apply(noSites) {
		t.Fatal("dropping the sites changed nothing")
	}
	if exists(l.SitesFile) || exists(l.SitesLink) {
		t.Error("sites file or link left behind")
	}
	if b, _ := os.ReadFile(inc); !strings.Contains(string(b), "no longer in sockvisor's config") {
		t.Errorf("include file is not a stub: %q", b)
	}
	if apply(noSites) {
		t.Error("a stub is rewritten on every apply")
	}
	if b, _ := os.ReadFile(foreign); string(b) != "# the operator's own\n" {
		t.Errorf("foreign include file changed: %q", b)
	}
	// A sites file sockvisor did not write is not in the way while no
	// site needs it.
	if err := os.WriteFile(l.SitesFile, []byte("<VirtualHost *:80>\n</VirtualHost>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if apply(noSites) {
		t.Error("a foreign sites file counted as a change")
	}
	if _, err := m.Apply(ctx, loadHCL(t, dir, twoSites)); !errors.Is(err, ErrNotOurs) {
		t.Errorf("Apply over a foreign sites file = %v, want ErrNotOurs", err)
	}
}

// TestApplyRollsBackEveryFile: when configtest fails, every file and link
// of the transaction is as before.
func TestApplyRollsBackEveryFile(t *testing.T) {
	dir := t.TempDir()
	m, l := fileManager(t, dir, "/bin/true")
	ctx := context.Background()
	if _, err := m.Apply(ctx, loadHCL(t, dir, noSites)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(l.ConfigFile)
	bad, _ := fileManager(t, dir+"/x", "/bin/false")
	badLayout := l
	badLayout.Apachectl = []string{"/bin/false"}
	bad.opts.Layout = badLayout
	_, err := bad.Apply(ctx, loadHCL(t, dir, strings.Replace(twoSites, `backend "a" {`, "backend \"a\" {\n  mount = \"/x/\"", 1)))
	if !errors.Is(err, ErrConfigTest) {
		t.Fatalf("Apply = %v, want ErrConfigTest", err)
	}
	if after, _ := os.ReadFile(l.ConfigFile); string(after) != string(before) {
		t.Error("main file not restored")
	}
	for _, p := range []string{l.SitesFile, l.SitesLink, filepath.Join(l.IncludeDir, "b.example.conf")} {
		if exists(p) {
			t.Errorf("%s left behind after a failed configtest", p)
		}
	}
}
