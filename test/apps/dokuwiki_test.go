package apps

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// DokuWiki from Debian's package under /dokuwiki/: the start page and its
// images work, a logged-in user's edit is saved, bin/ and inc/ answer 403
// (their .htaccess applies because Apache serves the tree), and 10
// restarts of PHP-FPM under load fail no request.
func TestDokuWiki(t *testing.T) {
	fpm, _ := testutil.PHPFPM(t)
	need(t, "/usr/share/dokuwiki/doku.php", "/var/lib/dokuwiki/data/pages")
	s := newStack(t)
	// A copy of the installation, its config and its data, so the test
	// never writes to /etc/dokuwiki or /var/lib/dokuwiki.
	root := filepath.Join(s.dir, "dw")
	conf := filepath.Join(s.dir, "dwconf")
	data := filepath.Join(s.dir, "dwdata")
	runCmd(t, time.Minute, nil, "cp", "-a", "/usr/share/dokuwiki", root)
	runCmd(t, time.Minute, nil, "cp", "-aL", "/etc/dokuwiki", conf)
	runCmd(t, time.Minute, nil, "cp", "-a", "/var/lib/dokuwiki/data", data)
	writeFile(t, root, "inc/preload.php", fmt.Sprintf("<?php\n// sockvisor's acceptance test: config in a copy.\ndefine('DOKU_CONF', '%s/');\n", conf), 0o644)
	writeFile(t, conf, "local.php", fmt.Sprintf(`<?php
$conf['title'] = 'sockvisor wiki';
$conf['useacl'] = 1;
$conf['superuser'] = '@admin';
$conf['savedir'] = '%s';
`, data), 0o644)
	sum := md5.Sum([]byte("h2-editor-pw"))
	writeFile(t, conf, "users.auth.php", "editor:"+hex.EncodeToString(sum[:])+":Editor:editor@wiki.test:admin,user\n", 0o644)
	writeFile(t, conf, "acl.auth.php", "*\t@ALL\t1\n*\t@user\t8\n", 0o644)
	chownTree(t, data, "www-data")
	chownTree(t, conf, "www-data")

	s.run(fmt.Sprintf(`backend "h2dw" {
  preset        = "php-fpm"
  command       = [%q]
  mount         = "/dokuwiki/"
  document_root = %q
  user          = "www-data"
  stop_timeout  = "10s"
}
`, fpm, root))

	c := s.client()
	base := fmt.Sprintf("http://127.0.0.1:%d/dokuwiki", s.Port())
	r := get(t, c, base+"/")
	if r.status == 302 || r.status == 301 {
		loc, err := url.Parse(r.url)
		if err != nil {
			t.Fatal(err)
		}
		next, err := loc.Parse(r.header.Get("Location"))
		if err != nil {
			t.Fatalf("redirect to %q: %v", r.header.Get("Location"), err)
		}
		r = get(t, c, next.String())
	}
	want(t, r, 200, "sockvisor wiki")
	imgs := regexp.MustCompile(`src="(/dokuwiki/[^"?]+\.(?:png|gif|svg))"`).FindAllStringSubmatch(r.body, -1)
	if len(imgs) == 0 {
		t.Errorf("the start page shows no image:\n%s", r)
	}
	for _, m := range imgs {
		wantType(t, c, fmt.Sprintf("http://127.0.0.1:%d%s", s.Port(), m[1]), "image/")
	}
	wantType(t, c, base+"/lib/tpl/dokuwiki/images/logo.png", "image/png")
	wantType(t, c, base+"/lib/exe/css.php?t=dokuwiki", "text/css")
	for _, p := range []string{"/bin/dwpage.php", "/bin/", "/inc/init.php", "/inc/"} {
		if r := get(t, c, base+p); r.status != 403 {
			t.Errorf("%s: %d; want 403", base+p, r.status)
		}
	}

	// Log in, edit a page, read it back.
	r = get(t, c, base+"/doku.php?id=start&do=login")
	want(t, r, 200, `name="sectok"`)
	r = do(t, c, "POST", base+"/doku.php?id=start&do=login", url.Values{
		"do": {"login"}, "id": {"start"}, "u": {"editor"}, "p": {"h2-editor-pw"}, "sectok": {hidden(t, r, "sectok")},
	})
	if r.status != 302 && r.status != 303 {
		t.Fatalf("login: want a redirect, got %s", r)
	}
	r = get(t, c, base+"/doku.php?id=h2test&do=edit")
	want(t, r, 200, "wikitext")
	form := url.Values{"id": {"h2test"}, "do[save]": {"1"}, "summary": {"sockvisor test"},
		"wikitext": {"====== sockvisor edit ======\nSaved through Apache and PHP-FPM.\n"}}
	for _, name := range []string{"sectok", "changecheck", "date", "prefix", "suffix", "target"} {
		form.Set(name, hidden(t, r, name))
	}
	r = do(t, c, "POST", base+"/doku.php", form)
	if r.status != 302 && r.status != 303 && r.status != 200 {
		t.Fatalf("save: %s", r)
	}
	want(t, get(t, c, base+"/doku.php?id=h2test"), 200, "Saved through Apache and PHP-FPM.")
	if _, err := os.Stat(filepath.Join(data, "pages", "h2test.txt")); err != nil {
		t.Errorf("the edit is not in the data copy: %v", err)
	}

	s.restartUnderLoad("h2dw", base+"/doku.php?id=start", 200*time.Millisecond)
}

// hidden returns the value of the form input name in r.
func hidden(t *testing.T, r *response, name string) string {
	t.Helper()
	m := regexp.MustCompile(`name="` + regexp.QuoteMeta(name) + `"[^>]*value="([^"]*)"|value="([^"]*)"[^>]*name="` + regexp.QuoteMeta(name) + `"`).FindStringSubmatch(r.body)
	if m == nil {
		return ""
	}
	return m[1] + m[2]
}
