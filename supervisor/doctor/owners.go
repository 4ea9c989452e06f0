package doctor

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// owner names what should create a socket path.
type owner struct {
	// Backend is the sockvisor backend, or "".
	Backend  string
	Instance int
	// Service is who else declares the path: a PHP-FPM pool, a systemd
	// socket unit or a uWSGI app, with how to start it.
	Service string
}

// ownerDirs are where other services declare their sockets. Globs only;
// each file is read up to maxOwnerFile bytes and at most maxOwnerFiles files.
var ownerDirs = []struct {
	glob string
	kind string
}{
	{"/etc/php/*/fpm/pool.d/*.conf", "fpm"},
	{"/etc/php-fpm.d/*.conf", "fpm"},
	{"/etc/systemd/system/*.socket", "unit"},
	{"/lib/systemd/system/*.socket", "unit"},
	{"/usr/lib/systemd/system/*.socket", "unit"},
	{"/etc/uwsgi/apps-enabled/*.ini", "uwsgi"},
	{"/etc/uwsgi.d/*.ini", "uwsgi"},
}

const (
	maxOwnerFiles = 500
	maxOwnerFile  = 1 << 20
)

var phpVersionRe = regexp.MustCompile(`/etc/php/([0-9.]+)/fpm/`)

// owners maps socket paths to who creates them: sockvisor's config first,
// then what PHP-FPM pools, systemd socket units and uWSGI apps declare.
func owners(cfg *config.Config) map[string]owner {
	m := map[string]owner{}
	files := 0
	for _, d := range ownerDirs {
		matches, _ := filepath.Glob(d.glob)
		for _, f := range matches {
			if files++; files > maxOwnerFiles {
				break
			}
			for _, p := range declaredSockets(f, d.kind) {
				if _, ok := m[p.path]; !ok {
					m[p.path] = owner{Service: p.what}
				}
			}
		}
	}
	if cfg != nil {
		for _, s := range cfg.AllSockets() {
			m[s.Path] = owner{Backend: s.Backend, Instance: s.Instance}
		}
	}
	return m
}

type declared struct{ path, what string }

func declaredSockets(file, kind string) []declared {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []declared
	section := ""
	sc := bufio.NewScanner(io.LimitReader(f, maxOwnerFile))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.Trim(line, "[]")
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		val = strings.Trim(strings.TrimSpace(val), `"'`)
		if !strings.HasPrefix(val, "/") {
			continue
		}
		switch {
		case kind == "fpm" && key == "listen":
			svc := "php-fpm"
			if m := phpVersionRe.FindStringSubmatch(file); m != nil {
				svc = "php" + m[1] + "-fpm"
			}
			out = append(out, declared{val, fmt.Sprintf("PHP-FPM pool [%s] in %s listens here: start it (systemctl start %s) and check its log", section, file, svc)})
		case kind == "unit" && key == "ListenStream":
			u := filepath.Base(file)
			out = append(out, declared{val, fmt.Sprintf("systemd socket unit %s listens here: systemctl start %s", u, u)})
		case kind == "uwsgi" && strings.HasSuffix(key, "socket"):
			val, _, _ = strings.Cut(val, ",")
			out = append(out, declared{val, fmt.Sprintf("uWSGI app %s binds it: systemctl start uwsgi (or the app's unit)", file)})
		}
	}
	return out
}
