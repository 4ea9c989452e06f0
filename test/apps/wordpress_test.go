package apps

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// WordPress from Debian's package with a private MariaDB: the install POST
// completes, the front page renders, its CSS, JS and images are served
// with the right types, wp-login works, /sample-page/ works with pretty
// permalinks (fallback = "/index.php"), and 10 restarts of PHP-FPM under
// load fail no request.
func TestWordPress(t *testing.T) {
	fpm, version := testutil.PHPFPM(t)
	need(t, "/usr/share/wordpress/wp-config.php", "/usr/sbin/mariadbd", "/usr/bin/mariadb-install-db",
		"/etc/php/"+version+"/fpm/conf.d/20-mysqli.ini",
		"/usr/share/wordpress/wp-content/themes/twentytwentythree/style.css")
	s := newStack(t)
	db := startMariaDB(t, s.dir)
	db.sql(t, "CREATE DATABASE h2wp; CREATE USER 'h2wp'@'localhost' IDENTIFIED BY 'h2wp-pw'; GRANT ALL ON h2wp.* TO 'h2wp'@'localhost';")

	// wp-content is a copy, so the test never writes to /var/lib/wordpress.
	content := filepath.Join(s.dir, "wp-content")
	runCmd(t, time.Minute, nil, "cp", "-a", "/var/lib/wordpress/wp-content", content)
	chownTree(t, content, "www-data")

	// Debian's wp-config.php reads /etc/wordpress/config-HOST.php for the
	// Host of the request: a name of this test's own.
	var rnd [4]byte
	rand.Read(rnd[:])
	host := "wp" + hex.EncodeToString(rnd[:]) + ".test"
	conf := "/etc/wordpress/config-" + host + ".php"
	if _, err := os.Lstat(conf); err == nil {
		t.Fatalf("%s exists already; remove it", conf)
	}
	t.Cleanup(func() { os.Remove(conf) })
	writeFile(t, "/etc/wordpress", filepath.Base(conf), fmt.Sprintf(`<?php
// Written by sockvisor's acceptance test; removed when it ends.
define('DB_NAME', 'h2wp');
define('DB_USER', 'h2wp');
define('DB_PASSWORD', 'h2wp-pw');
define('DB_HOST', 'localhost:%s');
define('WP_CONTENT_DIR', '%s');
`, db.socket, content), 0o644)

	s.run(fmt.Sprintf(`site %q {
  listen = %s
}
backend "h2wp" {
  preset        = "php-fpm"
  command       = [%q]
  site          = %q
  mount         = "/"
  document_root = "/usr/share/wordpress"
  fallback      = "/index.php"
  alias         = { "/wp-content/" = "%s/" }
  user          = "www-data"
  stop_timeout  = "10s"
  fpm {
    max_children = 8
    settings     = { "php_admin_value[memory_limit]" = "128M" }
  }
}
`, host, s.Listen(), fpm, host, content))

	c := s.client()
	base := fmt.Sprintf("http://%s:%d", host, s.Port())
	want(t, get(t, c, base+"/wp-admin/install.php"), 200, "admin_password")
	r := do(t, c, "POST", base+"/wp-admin/install.php?step=2", url.Values{
		"weblog_title": {"sockvisor blog"}, "user_name": {"admin"}, "admin_password": {"h2-Admin-pw-1"},
		"admin_password2": {"h2-Admin-pw-1"}, "pw_weak": {"1"}, "admin_email": {"admin@" + host},
		"blog_public": {"0"}, "language": {""},
	})
	want(t, r, 200, "Success!")
	// Pretty permalinks, as Settings > Permalinks would set them.
	db.sql(t, "UPDATE h2wp.wp_options SET option_value = '/%postname%/' WHERE option_name = 'permalink_structure'; DELETE FROM h2wp.wp_options WHERE option_name = 'rewrite_rules';")

	r = get(t, c, base+"/")
	want(t, r, 200, "sockvisor blog")
	assets := regexp.MustCompile(`(?:href|src)=['"](`+regexp.QuoteMeta(base)+`/[^'"?#]+\.(?:css|js|png|svg))`).FindAllStringSubmatch(r.body, -1)
	types := map[string]string{".css": "text/css", ".js": "javascript", ".png": "image/png", ".svg": "image/svg+xml"}
	for _, m := range assets {
		wantType(t, c, m[1], types[filepath.Ext(m[1])])
	}
	wantType(t, c, base+"/wp-includes/css/dashicons.min.css", "text/css")
	wantType(t, c, base+"/wp-includes/js/jquery/jquery.min.js", "javascript")
	wantType(t, c, base+"/wp-admin/images/wordpress-logo.svg", "image/svg+xml")
	wantType(t, c, base+"/wp-content/themes/twentytwentythree/screenshot.png", "image/png")
	wantType(t, c, base+"/wp-content/themes/twentytwentythree/style.css", "text/css")

	want(t, get(t, c, base+"/sample-page/"), 200, "Sample Page")
	// PATH_INFO reaches PHP: WordPress redirects to the canonical URL.
	if r := get(t, c, base+"/index.php/sample-page/"); r.status != 301 || r.header.Get("Location") != base+"/sample-page/" {
		t.Errorf("/index.php/sample-page/: %d to %q; want 301 to %s/sample-page/", r.status, r.header.Get("Location"), base)
	}
	// A .php file that does not exist is Apache's 404, never PHP-FPM's.
	if r := get(t, c, base+"/no-such-file.php"); r.status != 404 {
		t.Errorf("/no-such-file.php: %d; want 404", r.status)
	}

	want(t, get(t, c, base+"/wp-login.php"), 200, "user_login")
	r = do(t, c, "POST", base+"/wp-login.php", url.Values{
		"log": {"admin"}, "pwd": {"h2-Admin-pw-1"}, "wp-submit": {"Log In"}, "testcookie": {"1"},
		"redirect_to": {base + "/wp-admin/"},
	})
	if r.status != 302 || !strings.HasPrefix(r.header.Get("Location"), base+"/wp-admin/") {
		t.Fatalf("wp-login POST: want 302 to the dashboard, got %s", r)
	}
	want(t, get(t, c, base+"/wp-admin/"), 200, "Dashboard")

	// The front page takes PHP about 100 ms on a busy machine: restarts a
	// second apart let each one meet requests in flight.
	s.restartUnderLoad("h2wp", base+"/", time.Second)
}

// mariaDB is a private mariadbd on a Unix socket in a temp dir, without
// networking; the host's own MariaDB and its data are never touched.
type mariaDB struct {
	socket string
}

func startMariaDB(t *testing.T, dir string) *mariaDB {
	t.Helper()
	my := filepath.Join(dir, "my")
	data := filepath.Join(my, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	// The socket's directory must let PHP-FPM (www-data) in.
	if err := os.Chmod(my, 0o755); err != nil {
		t.Fatal(err)
	}
	chownTree(t, my, "mysql")
	runCmd(t, 2*time.Minute, nil, "/usr/bin/mariadb-install-db", "--no-defaults", "--datadir="+data,
		"--user=mysql", "--auth-root-authentication-method=socket", "--skip-test-db")
	db := &mariaDB{socket: filepath.Join(my, "m.sock")}
	cmd := exec.Command("/usr/sbin/mariadbd", "--no-defaults", "--datadir="+data, "--socket="+db.socket,
		"--skip-networking", "--user=mysql", "--pid-file="+filepath.Join(my, "m.pid"),
		"--log-error="+filepath.Join(my, "error.log"), "--innodb-buffer-pool-size=32M")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// TERM is mariadbd's clean shutdown; the data is thrown away anyway.
		syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.Dial("unix", db.socket)
		if err == nil {
			c.Close()
			return db
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(my, "error.log"))
			t.Fatalf("mariadbd exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(my, "error.log"))
			t.Fatalf("mariadbd did not open %s within 60 s: %s", db.socket, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (db *mariaDB) sql(t *testing.T, statements string) {
	t.Helper()
	runCmd(t, time.Minute, nil, "/usr/bin/mariadb", "--no-defaults", "--socket="+db.socket, "-uroot", "-e", statements)
}
