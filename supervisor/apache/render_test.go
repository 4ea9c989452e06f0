package apache

import (
	"bytes"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func loadConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	return cfg
}

func TestRenderGolden(t *testing.T) {
	cfg := loadConfig(t, "testdata/all-schemes.hcl")
	got := Render(cfg)
	const golden = "testdata/all-schemes.conf"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestRenderGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Render differs from %s (rerun with -update if intended):\n%s", golden, got)
	}
}

func TestRenderStable(t *testing.T) {
	a := Render(loadConfig(t, "testdata/all-schemes.hcl"))
	b := Render(loadConfig(t, "testdata/all-schemes.hcl"))
	if !bytes.Equal(a, b) {
		t.Fatal("two renders of the same config differ")
	}
	// Config order must not matter either.
	cfg := loadConfig(t, "testdata/all-schemes.hcl")
	for i, j := 0, len(cfg.Backends)-1; i < j; i, j = i+1, j-1 {
		cfg.Backends[i], cfg.Backends[j] = cfg.Backends[j], cfg.Backends[i]
	}
	c := Render(cfg)
	// Only the list of unmounted backends keeps config order; there is one.
	if !bytes.Equal(a, c) {
		t.Errorf("render depends on backend order:\n%s", c)
	}
}

// TestRenderUniqueHosts is the guard against Apache's shared-worker trap:
// every socket must sit behind a worker URL no other socket uses, and no
// worker URL may be a prefix of another (Apache matches by longest prefix).
func TestRenderUniqueHosts(t *testing.T) {
	out := string(Render(loadConfig(t, "testdata/all-schemes.hcl")))
	re := regexp.MustCompile(`"unix:([^|"]+)\|([a-z]+://[^/"]+)([^"]*)"`)
	hostOf := map[string]string{}
	var workers []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		sock, worker := m[1], m[2]
		if prev, ok := hostOf[worker]; ok && prev != sock {
			t.Errorf("%s serves both %s and %s", worker, prev, sock)
		}
		hostOf[worker] = sock
		workers = append(workers, m[2]+m[3])
	}
	if len(hostOf) != 11 {
		t.Errorf("found %d socket workers, want 11:\n%s", len(hostOf), out)
	}
	for _, a := range workers {
		for _, b := range workers {
			if a != b && strings.HasPrefix(b, a) {
				t.Errorf("worker %s is a prefix of %s", a, b)
			}
		}
	}
	// "app-1" as a backend must not collide with instance 1 of "app".
	if InstanceHost("app", 1) == Host("app-1") {
		t.Error("instance host collides with a backend host")
	}
}

func TestRenderOrderAndParams(t *testing.T) {
	out := string(Render(loadConfig(t, "testdata/all-schemes.hcl")))
	var mounts []string
	for _, m := range regexp.MustCompile(`(?m)^ProxyPass "([^"]+)"`).FindAllStringSubmatch(out, -1) {
		mounts = append(mounts, m[1])
	}
	// The PHP backends are served from disk now: their mounts appear only
	// as exclusions ("!"), so "/" does not proxy them.
	want := []string{"/chat/", "/pool/", "/u/v2/", "/php/", "/shop", "/u/", "/"}
	if strings.Join(mounts, " ") != strings.Join(want, " ") {
		t.Errorf("ProxyPass order = %v, want %v", mounts, want)
	}
	for _, frag := range []string{
		// retry=0 by default; timeout rounded up to whole seconds.
		`ProxyPass "/" "unix:/run/sockvisor/app.sock|http://app.sockvisor.invalid/" retry=0 timeout=60`,
		// Gunicorn keeps the mount in the path and reads it from SCRIPT_NAME.
		`"unix:/run/sockvisor/chat.sock|http://chat.sockvisor.invalid/chat/" retry=0 timeout=2 upgrade=websocket`,
		`RequestHeader set SCRIPT_NAME "/chat"`,
		`RequestHeader set X-Forwarded-Prefix "/chat"`,
		`RequestHeader set X-Forwarded-Proto "expr=%{REQUEST_SCHEME}"`,
		"ProxyPreserveHost Off",
		// balancer members: no trailing slash, one host each.
		`BalancerMember "unix:/run/sockvisor/shop-2.sock|http://2.shop.sockvisor.invalid" max=20 acquire=250 retry=5 timeout=60 upgrade=websocket`,
		`ProxyPass "/shop" "balancer://shop.sockvisor.invalid/shop"`,
		// fcgi with a document root: Apache serves the tree, PHP-FPM runs
		// the .php files that exist.
		`Alias "/php" "/var/www/html"`,
		`SetHandler "proxy:unix:/run/sockvisor/php.sock|fcgi://php.sockvisor.invalid"`,
		`SetHandler "proxy:balancer://php_pool.sockvisor.invalid"`,
		`<FilesMatch "\.php$">`,
		`ProxyPass "/u/" "unix:/run/sockvisor/legacy.sock|uwsgi://legacy.sockvisor.invalid/"`,
		`# Backend "worker" has no mount`,
	} {
		if !strings.Contains(out, frag) {
			t.Errorf("render lacks %s", frag)
		}
	}
	if !strings.Contains(out, `ProxyPass "/php/" "!"`) {
		t.Error("PHP mount not excluded from shorter ProxyPass mounts")
	}
	if strings.Contains(out, "ProxyPassReverse \"/php/\"") {
		t.Error("ProxyPassReverse rendered for fcgi")
	}
}

func TestRequiredModules(t *testing.T) {
	got := strings.Join(RequiredModules(loadConfig(t, "testdata/all-schemes.hcl")), " ")
	want := "alias authz_core dir env headers lbmethod_byrequests mime proxy proxy_balancer proxy_fcgi proxy_http proxy_uwsgi slotmem_shm"
	if got != want {
		t.Errorf("RequiredModules = %q, want %q", got, want)
	}
	cfg := &config.Config{Backends: []*config.Backend{{Name: "a", Protocol: "http", Mount: "", Sockets: []config.Socket{{Path: "/x"}}}}}
	if mods := RequiredModules(cfg); len(mods) != 0 {
		t.Errorf("no mount needs no modules, got %v", mods)
	}
}

func TestRenderHostileText(t *testing.T) {
	cfg := &config.Config{File: "evil\nProxyPass / http://x/\\", Backends: []*config.Backend{{
		Name: strings.Repeat("n", 100), Protocol: "http", Mount: "/", Pos: "p\r\nInclude /etc/shadow",
		Sockets: []config.Socket{{Path: "/run/a.sock"}, {Path: "/run/b.sock", Instance: 1}},
	}}}
	out := string(Render(cfg))
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "ProxyPass / ") || strings.HasPrefix(line, "Include") {
			t.Errorf("comment text escaped into a directive: %q", line)
		}
		if strings.HasPrefix(line, "#") && strings.HasSuffix(line, "\\") {
			t.Errorf("comment continues onto the next line: %q", line)
		}
	}
	h := Host(strings.Repeat("n", 100))
	if l := len(strings.TrimSuffix(h, HostSuffix)); l > maxLabel {
		t.Errorf("label is %d bytes", l)
	}
	if len("balancer://"+h) > 95 {
		t.Errorf("balancer name %d bytes, Apache allows 95", len("balancer://"+h))
	}
	if Host(strings.Repeat("n", 100)) == Host(strings.Repeat("n", 101)) {
		t.Error("shortened names collide")
	}
}

// keepalive = false (the default) makes Apache open a fresh connection per
// request to an http backend; true leaves Apache's reuse on; fcgi and uwsgi
// never get the line (Apache does not reuse those connections anyway).
func TestRenderKeepalive(t *testing.T) {
	cfg := loadConfig(t, "testdata/all-schemes.hcl")
	const line = "SetEnv proxy-nokeepalive 1"
	http := 0
	for _, be := range cfg.Backends {
		if be.Proxy.Keepalive {
			t.Fatalf("backend %q: keepalive defaults to true", be.Name)
		}
		if be.Protocol == "http" && be.Mount != "" {
			http++
		}
	}
	out := string(Render(cfg))
	if n := strings.Count(out, line); n != http {
		t.Errorf("%d %q lines for the %d mounted http backends:\n%s", n, line, http, out)
	}
	for _, be := range cfg.Backends {
		be.Proxy.Keepalive = true
	}
	out = string(Render(cfg))
	if strings.Contains(out, line) {
		t.Errorf("keepalive = true still renders %q", line)
	}
	if mods := strings.Join(RequiredModules(cfg), " "); strings.Contains(mods, "env") {
		t.Errorf("keepalive = true still needs mod_env: %s", mods)
	}
}
