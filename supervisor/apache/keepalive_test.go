package apache

import (
	"slices"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// Puma and uvicorn break pooled keep-alive connections when they stop, so
// their <Proxy> turns keep-alive off and the config needs mod_env; other
// servers keep their pooled connections.
func TestRenderNoKeepaliveForPresets(t *testing.T) {
	dir := testutil.ShortDir(t)
	cfg := loadHCL(t, dir, `backend "asgi" {
  preset  = "uvicorn"
  command = ["/bin/true"]
  user    = "root"
  mount   = "/asgi/"
}
backend "rack" {
  preset  = "puma"
  command = ["/bin/true"]
  user    = "root"
  mount   = "/rack/"
}
backend "wsgi" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  user    = "root"
  mount   = "/"
}
`)
	out := string(Render(cfg))
	for _, name := range []string{"asgi", "rack", "wsgi"} {
		start := strings.Index(out, `<Proxy "http://`+name+`.sockvisor.invalid/">`)
		if start < 0 {
			t.Fatalf("no <Proxy> section for %s:\n%s", name, out)
		}
		section := out[start : start+strings.Index(out[start:], "</Proxy>")]
		has := strings.Contains(section, "SetEnv proxy-nokeepalive 1\n")
		if has != (name != "wsgi") {
			t.Errorf("%s: proxy-nokeepalive %t in\n%s", name, has, section)
		}
	}
	if !slices.Contains(RequiredModules(cfg), "env") {
		t.Errorf("RequiredModules = %v; want env for SetEnv", RequiredModules(cfg))
	}
}
