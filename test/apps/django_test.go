package apps

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// Django's admin behind Gunicorn on a site of its own: the login page has
// its CSS (Apache serves /static/ from the collected files), the login POST
// with its CSRF token works, and 10 restarts under load fail no request.
func TestDjangoAdmin(t *testing.T) {
	need(t, "/usr/bin/gunicorn", "/usr/bin/python3", "/usr/lib/python3/dist-packages/django")
	s := newStack(t)
	dir := filepath.Join(s.dir, "django")
	copyTree(t, filepath.Join("testdata", "django"), dir)
	env := []string{"SV_DJANGO_DIR=" + dir, "DJANGO_SUPERUSER_PASSWORD=sv-admin-pw"}
	manage := func(args ...string) {
		runCmd(t, 2*time.Minute, env, "/usr/bin/python3", append([]string{filepath.Join(dir, "manage.py")}, args...)...)
	}
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	manage("migrate", "--noinput")
	manage("collectstatic", "--noinput")
	manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@django.test")
	// Sessions are written to the database by the backend's user.
	chownTree(t, filepath.Join(dir, "db"), "www-data")

	s.run(fmt.Sprintf(`site "django.test" {
  listen = %s
}
backend "h2django" {
  preset       = "gunicorn"
  command      = ["/usr/bin/gunicorn", "--workers", "2", "--chdir", %q, "mysite.wsgi"]
  environment  = { SV_DJANGO_DIR = %q }
  site         = "django.test"
  mount        = "/"
  alias        = { "/static/" = "%s/" }
  user         = "www-data"
  stop_timeout = "10s"
  ready { path = "/admin/login/" }
}
backend "h2djsub" {
  preset       = "gunicorn"
  command      = ["/usr/bin/gunicorn", "--chdir", %q, "mysite.wsgi"]
  environment  = { SV_DJANGO_DIR = %q }
  site         = "django.test"
  mount        = "/sub/"
  user         = "www-data"
  stop_timeout = "10s"
  ready { path = "/sub/admin/login/" }
}
`, s.Listen(), dir, dir, filepath.Join(dir, "static"), dir, dir))

	c := s.client()
	base := fmt.Sprintf("http://django.test:%d", s.Port())
	r := get(t, c, base+"/admin/login/?next=/admin/")
	want(t, r, 200, "Django administration", "csrfmiddlewaretoken")
	css := regexp.MustCompile(`href="(/static/[^"]+\.css)"`).FindAllStringSubmatch(r.body, -1)
	if len(css) == 0 {
		t.Fatalf("the login page links no CSS under /static/:\n%s", r)
	}
	for _, m := range css {
		wantType(t, c, base+m[1], "text/css")
	}
	wantType(t, c, base+"/static/admin/img/icon-yes.svg", "image/svg+xml")
	wantType(t, c, base+"/static/admin/js/core.js", "javascript")

	token := regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`).FindStringSubmatch(r.body)
	if token == nil {
		t.Fatalf("no CSRF token in the login form:\n%s", r)
	}
	r = do(t, c, "POST", base+"/admin/login/?next=/admin/", url.Values{
		"csrfmiddlewaretoken": {token[1]}, "username": {"admin"}, "password": {"sv-admin-pw"}, "next": {"/admin/"},
	})
	if r.status != 302 || r.header.Get("Location") != "/admin/" {
		t.Fatalf("login POST: want 302 to /admin/, got %s", r)
	}
	want(t, get(t, c, base+"/admin/"), 200, "Site administration")
	// Without the token the POST is refused: CSRF protection is on.
	r = do(t, s.client(), "POST", base+"/admin/login/", url.Values{"username": {"admin"}, "password": {"sv-admin-pw"}})
	if r.status != 403 {
		t.Errorf("login POST without a CSRF token: %d; want 403", r.status)
	}

	// The same project under /sub/: no code change, and Django's links
	// carry the mount (Gunicorn's SCRIPT_NAME from Apache).
	r = get(t, s.client(), base+"/sub/admin/")
	if r.status != 302 || r.header.Get("Location") != "/sub/admin/login/?next=/sub/admin/" {
		t.Errorf("/sub/admin/: want 302 to /sub/admin/login/?next=/sub/admin/, got %s", r)
	}
	want(t, get(t, s.client(), base+"/sub/admin/login/"), 200, `action="/sub/admin/login/"`)

	s.restartUnderLoad("h2django", base+"/admin/login/", 200*time.Millisecond)
}

// copyTree copies the regular files below src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// chownTree gives dir and everything below it to user.
func chownTree(t *testing.T, dir, user string) {
	t.Helper()
	runCmd(t, 30*time.Second, nil, "chown", "-R", user+":"+user, dir)
}
