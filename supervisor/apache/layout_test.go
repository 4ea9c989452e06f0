package apache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDetectLayout(t *testing.T) {
	deb := fakeRoot(t, map[string]string{
		"etc/apache2/apache2.conf": "",
		"etc/apache2/envvars":      "export APACHE_RUN_USER=web\nexport APACHE_RUN_GROUP=webgrp\n",
	})
	l, err := detectLayout(config.Apache{Flavor: "auto"}, deb)
	if err != nil {
		t.Fatal(err)
	}
	want := Layout{
		Flavor:     "debian",
		ConfigFile: deb + "/etc/apache2/conf-available/sockvisor.conf",
		EnableLink: deb + "/etc/apache2/conf-enabled/sockvisor.conf",
		SitesFile:  deb + "/etc/apache2/sites-available/sockvisor.conf",
		SitesLink:  deb + "/etc/apache2/sites-enabled/sockvisor.conf",
		IncludeDir: deb + "/etc/apache2/sockvisor-sites",
		Apachectl:  []string{"/usr/sbin/apache2ctl"},
		Unit:       "apache2.service",
		RunUser:    "web",
		RunGroup:   "webgrp",
	}
	if !layoutEqual(l, want) {
		t.Errorf("debian layout = %+v, want %+v", l, want)
	}

	rhel := fakeRoot(t, map[string]string{"etc/httpd/conf/httpd.conf": ""})
	l, err = detectLayout(config.Apache{Flavor: "auto", Unit: "web.service"}, rhel)
	if err != nil {
		t.Fatal(err)
	}
	want = Layout{Flavor: "rhel", ConfigFile: rhel + "/etc/httpd/conf.d/sockvisor.conf", Apachectl: []string{"/usr/sbin/httpd"},
		SitesFile: rhel + "/etc/httpd/conf.d/sockvisor-sites.conf", IncludeDir: rhel + "/etc/httpd/sockvisor-sites",
		Unit: "web.service", RunUser: "apache", RunGroup: "apache"}
	if !layoutEqual(l, want) {
		t.Errorf("rhel layout = %+v, want %+v", l, want)
	}

	// An explicit file outside conf-available needs no link.
	l, _ = detectLayout(config.Apache{Flavor: "debian", ConfigFile: "/etc/apache2/sites-enabled/sv.conf"}, t.TempDir())
	if l.ConfigFile != "/etc/apache2/sites-enabled/sv.conf" || l.EnableLink != "" || l.RunUser != "www-data" {
		t.Errorf("explicit file: %+v", l)
	}

	if _, err := detectLayout(config.Apache{Flavor: "auto"}, t.TempDir()); !errors.Is(err, ErrNoApache) || !strings.Contains(err.Error(), "set apache.flavor") {
		t.Errorf("no Apache: %v", err)
	}
}

func layoutEqual(a, b Layout) bool {
	return a.Flavor == b.Flavor && a.ConfigFile == b.ConfigFile && a.EnableLink == b.EnableLink &&
		strings.Join(a.Apachectl, " ") == strings.Join(b.Apachectl, " ") && a.Unit == b.Unit &&
		a.RunUser == b.RunUser && a.RunGroup == b.RunGroup &&
		a.SitesFile == b.SitesFile && a.SitesLink == b.SitesLink && a.IncludeDir == b.IncludeDir
}

func TestEnableCommand(t *testing.T) {
	deb := Layout{Flavor: "debian"}.enableCommand([]string{"proxy_fcgi", "proxy_uwsgi"})
	if !strings.Contains(deb, `"a2enmod proxy_fcgi proxy_uwsgi"`) {
		t.Errorf("debian: %s", deb)
	}
	rhel := Layout{Flavor: "rhel"}.enableCommand([]string{"proxy_fcgi"})
	if !strings.Contains(rhel, `"LoadModule proxy_fcgi_module modules/mod_proxy_fcgi.so"`) || !strings.Contains(rhel, "/etc/httpd/conf.modules.d/") {
		t.Errorf("rhel: %s", rhel)
	}
}
