package apache

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestHiddenFilesDenied: in every tree Apache serves for sockvisor (a
// document root in a site and globally, an alias), dot-files,
// dot-directories and backup copies answer 403, /.well-known/ still
// serves, and a dot in the tree's own path does not deny the tree.
func TestHiddenFilesDenied(t *testing.T) {
	dir := testutil.ShortDir(t)
	port := apachetest.FreePort(t)
	in, l := testApacheSite(t, dir, defaultVhost(t, dir, port), apachetest.ListenOn(port))
	// The trees sit below a dot-directory of their own.
	base := filepath.Join(dir, ".srv")
	files := map[string]string{
		"index.html":                    "HOME\n",
		"style.css":                     "CSS\n",
		".git/config":                   "LEAK git\n",
		"sub/.svn/entries":              "LEAK svn\n",
		".env":                          "LEAK env\n",
		"sub/.htpasswd":                 "LEAK htpasswd\n",
		"index.php.bak":                 "<?php LEAK bak",
		"wp-config.php~":                "<?php LEAK tilde",
		"config.php.orig":               "LEAK orig",
		"config.php.old":                "LEAK old",
		"config.php.save":               "LEAK save",
		"config.php.dist":               "LEAK dist",
		"sub/x.BAK":                     "LEAK BAK",
		".well-known/acme-challenge/tk": "ACME\n",
		".well-known/security.txt":      "SECTXT\n",
	}
	for _, tree := range []string{"site", "global", "alias"} {
		for p, body := range files {
			full := filepath.Join(base, tree, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	startEcho(t, dir+"/app.sock", "app")
	cfg := loadHCL(t, dir, fmt.Sprintf(`
site "a.example" {
  listen = ["*:%[1]d"]
}
backend "site" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  site          = "a.example"
  document_root = "%[2]s/site"
}
backend "global" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  mount         = "/php/"
  document_root = "%[2]s/global"
}
backend "app" {
  command = ["/bin/true"]
  mount   = "/app/"
  alias   = { "/app/static/" = "%[2]s/alias/" }
}
`, port, base))
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	for _, tc := range []struct{ host, prefix string }{
		{"a.example", "/"}, {"localhost", "/php/"}, {"localhost", "/app/static/"}, {"a.example", "/app/static/"},
	} {
		for p, body := range files {
			r := fetch(t, port, "GET", tc.host, tc.prefix+p, "", nil)
			what := tc.host + tc.prefix + p
			if strings.Contains(body, "LEAK") {
				if r.code != 403 || strings.Contains(r.body, "LEAK") {
					t.Errorf("GET %s = %d %q, want 403", what, r.code, r.body)
				}
				continue
			}
			r.want(t, in, what, 200, strings.TrimSpace(body))
		}
	}
}
