package apache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/supervisor/apacheconf"
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

// TestDetectLayout places sockvisor's files for the instance
// apacheconf.Discover chose (its tests cover the choice: flavor, command,
// unit and root for each fake /etc below).
func TestDetectLayout(t *testing.T) {
	deb := fakeRoot(t, map[string]string{
		"etc/apache2/apache2.conf": "",
		"etc/apache2/envvars":      "export APACHE_RUN_USER=web\nexport APACHE_RUN_GROUP=webgrp\n",
	})
	debian := apacheconf.Instance{Flavor: "debian", ServerRoot: "/etc/apache2", Apachectl: []string{"/usr/sbin/apache2ctl"}, Unit: "apache2.service"}
	l, err := layoutOf(config.Apache{Flavor: "auto"}, debian, deb)
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
	l, err = layoutOf(config.Apache{Flavor: "auto", Unit: "web.service"},
		apacheconf.Instance{Flavor: "rhel", ServerRoot: "/etc/httpd", Apachectl: []string{"/usr/sbin/httpd"}, Unit: "web.service"}, rhel)
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
	l, _ = layoutOf(config.Apache{Flavor: "debian", ConfigFile: "/etc/apache2/sites-enabled/sv.conf"}, debian, t.TempDir())
	if l.ConfigFile != "/etc/apache2/sites-enabled/sv.conf" || l.EnableLink != "" || l.RunUser != "www-data" {
		t.Errorf("explicit file: %+v", l)
	}

	// Debian's second instance gets the files in its own root.
	web := fakeRoot(t, map[string]string{"etc/apache2-web/envvars": "export APACHE_RUN_USER=webuser\n"})
	l, err = layoutOf(config.Apache{Flavor: "auto"}, apacheconf.Instance{Name: "web", Flavor: "debian", ServerRoot: "/etc/apache2-web",
		Apachectl: []string{"/usr/sbin/apache2", "-d", "/etc/apache2-web"}, Unit: "apache2@web.service"}, web)
	if err != nil {
		t.Fatal(err)
	}
	want = Layout{
		Flavor:     "debian",
		ConfigFile: web + "/etc/apache2-web/conf-available/sockvisor.conf",
		EnableLink: web + "/etc/apache2-web/conf-enabled/sockvisor.conf",
		SitesFile:  web + "/etc/apache2-web/sites-available/sockvisor.conf",
		SitesLink:  web + "/etc/apache2-web/sites-enabled/sockvisor.conf",
		IncludeDir: web + "/etc/apache2-web/sockvisor-sites",
		Apachectl:  []string{"/usr/sbin/apache2", "-d", "/etc/apache2-web"},
		Unit:       "apache2@web.service",
		RunUser:    "webuser",
		RunGroup:   "www-data",
	}
	if !layoutEqual(l, want) {
		t.Errorf("second instance layout = %+v, want %+v", l, want)
	}

	if _, err := layoutOf(config.Apache{Flavor: "auto"}, apacheconf.Instance{}, t.TempDir()); !errors.Is(err, ErrNoApache) || !strings.Contains(err.Error(), "set apache.flavor") {
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
