package apache

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestGlobalMountsInSiteRoot: global backends apply to every virtual host,
// also a site with a backend at "/", whose <Location "/"> used to take
// every global mount's requests; the site's own longer mounts and its "/"
// still win where they should.
func TestGlobalMountsInSiteRoot(t *testing.T) {
	dir := testutil.ShortDir(t)
	port := apachetest.FreePort(t)
	in, l := testApacheSite(t, dir, defaultVhost(t, dir, port), apachetest.ListenOn(port))
	for _, n := range []string{"site", "deep", "g", "groot"} {
		startEcho(t, dir+"/"+n+".sock", n)
	}
	root, static := filepath.Join(dir, "php"), filepath.Join(dir, "static")
	for _, d := range []string{root, static} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "x.css"), []byte("from "+filepath.Base(d)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := loadHCL(t, dir, fmt.Sprintf(`
site "a.example" {
  listen = ["*:%[1]d"]
}
backend "site" {
  command = ["/bin/true"]
  site    = "a.example"
}
backend "deep" {
  command = ["/bin/true"]
  site    = "a.example"
  mount   = "/global/deep/"
}
backend "g" {
  command = ["/bin/true"]
  mount   = "/global/"
  alias   = { "/global/static/" = "%[3]s/" }
}
backend "groot" {
  command = ["/bin/true"]
}
backend "php" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  mount         = "/php/"
  document_root = %[2]q
}
`, port, root, static))
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	get := func(host, path string) reply { return fetch(t, port, "GET", host, path, "", nil) }
	get("a.example", "/global/q").want(t, in, "global mount in a site with /", 200, "name=g path=/q ")
	get("a.example", "/global/static/x.css").want(t, in, "global alias in a site with /", 200, "from static")
	get("a.example", "/php/x.css").want(t, in, "global document root in a site with /", 200, "from php")
	get("a.example", "/global/deep/q").want(t, in, "the site's longer mount", 200, "name=deep path=/q ")
	get("a.example", "/other").want(t, in, "the site's / over the global /", 200, "name=site path=/other ")
	get("localhost", "/global/q").want(t, in, "global mount elsewhere", 200, "name=g path=/q ")
	get("localhost", "/other").want(t, in, "global / elsewhere", 200, "name=groot path=/other ")
}
