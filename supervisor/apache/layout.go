package apache

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sockvisor/sockvisor/supervisor/apacheconf"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// Layout is where a distribution's Apache keeps things and how to drive it.
type Layout struct {
	Flavor string // "debian" or "rhel"
	// ConfigFile is sockvisor's own config file, the only file it writes.
	ConfigFile string
	// EnableLink is the symlink that enables ConfigFile, as a2enconf makes
	// it on Debian; "" when the file is read where it is (RHEL's conf.d).
	EnableLink string
	// SitesFile holds the <VirtualHost> blocks of render = "vhost" sites,
	// read after the distribution's default virtual host; SitesLink
	// enables it (Debian's sites-enabled), "" when it is read where it is.
	// SitesFile "" puts the virtual hosts at the end of ConfigFile.
	SitesFile string
	SitesLink string
	// IncludeDir holds NAME.conf for each render = "include" site.
	IncludeDir string
	// Apachectl is the argv prefix for -M, -t and -k graceful.
	Apachectl []string
	Unit      string // systemd unit, for reload = "dbus"
	RunUser   string
	RunGroup  string
}

// DetectLayout works out the layout for cfg.Apache. The instance is the
// one apacheconf.Discover chooses from the config and the installed files
// alone, never from what runs now: the default root of the flavor (auto
// looks for Debian's apache2, then RHEL's httpd), or the Debian instance
// /etc/apache2-NAME that config_file or unit (apache2@NAME.service) names;
// its command, unit and run identity follow, with apachectl, config_file
// and unit from the config taking precedence.
func DetectLayout(cfg *config.Config) (Layout, error) {
	a := cfg.Apache
	in, _ := apacheconf.Discover(apacheconf.Hint{Flavor: a.Flavor, Apachectl: a.Apachectl, ConfigFile: a.ConfigFile, Unit: a.Unit})
	return layoutOf(a, in, "/")
}

// layoutOf is the layout for a and the instance Discover chose for it,
// with every file looked up and placed under root, so tests can build a
// fake /etc.
func layoutOf(a config.Apache, in apacheconf.Instance, root string) (Layout, error) {
	at := func(p string) string { return filepath.Join(root, p) }
	// sockvisor's files go into the chosen instance's root when a package
	// installed it (/etc/apache2-NAME included), else into the flavor's.
	base := func(def string) string {
		if in.Installed() {
			return in.ServerRoot
		}
		return def
	}
	var l Layout
	switch in.Flavor {
	case "debian":
		etc := base("/etc/apache2")
		l = Layout{
			Flavor:     "debian",
			ConfigFile: at(etc + "/conf-available/sockvisor.conf"),
			RunUser:    "www-data",
			RunGroup:   "www-data",
		}
		// apache2ctl takes the run identity from envvars; so do we.
		if vars, err := apacheconf.ReadEnvvars(at(etc + "/envvars")); err == nil {
			if u := vars["APACHE_RUN_USER"]; u != "" {
				l.RunUser = u
			}
			if g := vars["APACHE_RUN_GROUP"]; g != "" {
				l.RunGroup = g
			}
		}
	case "rhel":
		l = Layout{
			Flavor:     "rhel",
			ConfigFile: at(base("/etc/httpd") + "/conf.d/sockvisor.conf"),
			RunUser:    "apache",
			RunGroup:   "apache",
		}
	case "":
		return Layout{}, fmt.Errorf("%w: neither %s (Debian) nor %s (RHEL, Fedora) exists; install Apache or set apache.flavor",
			ErrNoApache, at("/etc/apache2/apache2.conf"), at("/etc/httpd/conf/httpd.conf"))
	default:
		return Layout{}, fmt.Errorf("%w: apache.flavor %q is unknown; use auto, debian or rhel", ErrNoApache, in.Flavor)
	}
	l.Apachectl, l.Unit = in.Apachectl, in.Unit
	if a.ConfigFile != "" {
		l.ConfigFile = a.ConfigFile
	}
	l.EnableLink = enableLink(l.ConfigFile)
	l.SitesFile, l.SitesLink = sitesFile(l.ConfigFile)
	l.IncludeDir = filepath.Join(filepath.Dir(filepath.Dir(l.ConfigFile)), "sockvisor-sites")
	return l, nil
}

// sitesFile places the virtual hosts beside file: in sites-available,
// enabled from sites-enabled, when file is in a conf-available directory
// (Debian reads sites-enabled after conf-enabled, and 000-default sorts
// before "sockvisor"); otherwise in the same directory as NAME-sites.conf,
// read after NAME.conf.
func sitesFile(file string) (path, link string) {
	dir, base := filepath.Split(file)
	dir = filepath.Clean(dir)
	if filepath.Base(dir) == "conf-available" {
		root := filepath.Dir(dir)
		return filepath.Join(root, "sites-available", base), filepath.Join(root, "sites-enabled", base)
	}
	ext := filepath.Ext(base)
	return filepath.Join(dir, strings.TrimSuffix(base, ext)+"-sites"+ext), ""
}

// enableLink returns conf-enabled/NAME for a file in a conf-available
// directory, Debian's convention, and "" for any other place.
func enableLink(file string) string {
	dir := filepath.Dir(file)
	if filepath.Base(dir) != "conf-available" {
		return ""
	}
	return filepath.Join(filepath.Dir(dir), "conf-enabled", filepath.Base(file))
}

// enableCommand names what enables a module on this flavor.
func (l Layout) enableCommand(mods []string) string {
	if l.Flavor == "rhel" {
		line := ""
		for i, m := range mods {
			if i > 0 {
				line += `" and "`
			}
			line += fmt.Sprintf("LoadModule %s_module modules/mod_%s.so", m, m)
		}
		return fmt.Sprintf(`add "%s" to a file in /etc/httpd/conf.modules.d/ and restart httpd`, line)
	}
	cmd := "a2enmod"
	for _, m := range mods {
		cmd += " " + m
	}
	return fmt.Sprintf(`run "%s" and restart Apache (a reload does not load modules)`, cmd)
}

// unitName is Apache's systemd unit, for an operator's command.
func (l Layout) unitName() string {
	if l.Unit == "" {
		return "apache2"
	}
	return l.Unit
}
