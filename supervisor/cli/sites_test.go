package cli

import (
	"strings"
	"testing"
)

// TestCheckListsSites: check prints every site with its addresses and
// backends, warns about fcgi_proxy_all and names the Listen line a
// non-default port needs; apache-config prints every file.
func TestCheckListsSites(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, `
site "blog.example" {
  aliases = ["www.blog.example"]
  listen  = ["*:80", "127.0.0.1:8080"]
}
site "panel.example" {
  render = "include"
}
backend "wp" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  user          = "root"
  site          = "blog.example"
  document_root = "/var/www/html"
}
backend "p" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  user    = "root"
  site    = "panel.example"
  mount   = "/app/"
}
backend "old" {
  preset         = "php-fpm"
  command        = ["/bin/true"]
  user           = "root"
  mount          = "/old/"
  document_root  = "/var/www/html"
  fcgi_proxy_all = true
}
`)
	code, out, errOut := run("check", "--config", cfg)
	if code != ExitOK {
		t.Fatalf("check = %d %s", code, errOut)
	}
	for _, frag := range []string{
		"SITE", "blog.example", "www.blog.example", "*:80,127.0.0.1:8080", "wp@/",
		"panel.example", "include ", "p@/app/",
		`warning: backend "old" has fcgi_proxy_all = true`,
		`Apache needs "Listen 127.0.0.1:8080"`,
		`put "Include `,
	} {
		if !strings.Contains(out, frag) {
			t.Errorf("check output lacks %q:\n%s", frag, out)
		}
	}
	if strings.Contains(out, "Apache needs \"Listen 80\"") {
		t.Error("check asks for a Listen line Debian's ports.conf has")
	}
	code, out, _ = run("apache-config", "--config", cfg)
	if code != ExitOK || !strings.Contains(out, "<VirtualHost *:80>") || !strings.Contains(out, "==== include file for site \"panel.example\"") {
		t.Errorf("apache-config = %d:\n%s", code, out)
	}
}
