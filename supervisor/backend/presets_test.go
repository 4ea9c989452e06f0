package backend

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

func TestBuildCommand(t *testing.T) {
	const rubyopt = "-r/run/st/app/sockvisor_puma.rb"
	cases := []struct {
		name      string
		b         config.Backend
		want      []string
		env       map[string]string
		listenEnv bool
	}{
		{
			name:      "gunicorn listen-fds adds nothing",
			b:         config.Backend{Preset: "gunicorn", Handoff: "listen-fds", Protocol: "http", Command: []string{"gunicorn", "app:app"}},
			want:      []string{"gunicorn", "app:app"},
			listenEnv: true,
		},
		{
			name: "gunicorn self binds the path",
			b:    config.Backend{Preset: "gunicorn", Handoff: "self", Protocol: "http", Command: []string{"gunicorn", "app:app"}},
			want: []string{"gunicorn", "--bind", "unix:/run/sv/a.sock", "app:app"},
			env:  map[string]string{"SOCKVISOR_SOCKET": "/run/sv/a.sock"},
		},
		{
			name: "gunicorn self keeps the user's bind",
			b:    config.Backend{Preset: "gunicorn", Handoff: "self", Protocol: "http", Command: []string{"gunicorn", "-b", "unix:/x", "app:app"}},
			want: []string{"gunicorn", "-b", "unix:/x", "app:app"},
			env:  map[string]string{"SOCKVISOR_SOCKET": "/run/sv/a.sock"},
		},
		{
			name: "uwsgi http on fd 3, no LISTEN_FDS",
			b:    config.Backend{Preset: "uwsgi", Handoff: "listen-fds", Protocol: "http", Command: []string{"uwsgi", "--module", "app"}},
			want: []string{"uwsgi", "--plugin", "python3", "--master", "--die-on-term", "--hook-master-start", "unix_signal:15 gracefully_kill_them_all", "--need-app", "--http-socket", "fd://3", "--module", "app"},
		},
		{
			name: "uwsgi keeps the user's plugin and master",
			b:    config.Backend{Preset: "uwsgi", Handoff: "listen-fds", Protocol: "uwsgi", Command: []string{"uwsgi", "--plugins=python311", "--master", "--module", "app"}},
			want: []string{"uwsgi", "--die-on-term", "--hook-master-start", "unix_signal:15 gracefully_kill_them_all", "--need-app", "--socket", "fd://3", "--plugins=python311", "--master", "--module", "app"},
		},
		{
			name: "uwsgi fastcgi on stdin",
			b:    config.Backend{Preset: "uwsgi", Handoff: "stdin", Protocol: "fcgi", Command: []string{"uwsgi", "-M", "--plugin", "python3", "--need-app"}},
			want: []string{"uwsgi", "--die-on-term", "--hook-master-start", "unix_signal:15 gracefully_kill_them_all", "--fastcgi-socket", "fd://0", "-M", "--plugin", "python3", "--need-app"},
		},
		{
			name: "php-fpm with its own config",
			b:    config.Backend{Preset: "php-fpm", Handoff: "fpm", Protocol: "fcgi", UID: 33, Command: []string{"php-fpm8.2", "--fpm-config=/etc/x.conf"}},
			want: []string{"php-fpm8.2", "-F", "--fpm-config=/etc/x.conf"},
			env:  map[string]string{"FPM_SOCKETS": "/run/sv/a.sock=3"},
		},
		{
			name: "uvicorn at / on fd 3",
			b:    config.Backend{Preset: "uvicorn", Handoff: "listen-fds", Protocol: "http", Mount: "/", Command: []string{"/usr/bin/uvicorn", "app:app"}},
			want: []string{"/usr/bin/uvicorn", "--fd", "3", "app:app"},
			env:  map[string]string{"FORWARDED_ALLOW_IPS": "*", "PYTHONPATH": "/run/st/app"},
		},
		{
			name: "uvicorn under a mount gets its root path",
			b:    config.Backend{Preset: "uvicorn", Handoff: "listen-fds", Protocol: "http", Mount: "/ws/", Command: []string{"/usr/bin/uvicorn", "app:app"}},
			want: []string{"/usr/bin/uvicorn", "--fd", "3", "--root-path", "/ws", "app:app"},
			env:  map[string]string{"FORWARDED_ALLOW_IPS": "*", "PYTHONPATH": "/run/st/app"},
		},
		{
			name: "uvicorn keeps the user's root path and trusted proxies",
			b: config.Backend{Preset: "uvicorn", Handoff: "listen-fds", Protocol: "http", Mount: "/ws", Command: []string{"/usr/bin/uvicorn", "--root-path=/x", "app:app"},
				Environment: map[string]string{"FORWARDED_ALLOW_IPS": "10.0.0.1", "PYTHONPATH": "/srv/lib"}},
			want: []string{"/usr/bin/uvicorn", "--fd", "3", "--root-path=/x", "app:app"},
			env:  map[string]string{"PYTHONPATH": "/run/st/app:/srv/lib"},
		},
		{
			name: "uvicorn self binds the path",
			b:    config.Backend{Preset: "uvicorn", Handoff: "self", Protocol: "http", Mount: "", Command: []string{"/usr/bin/uvicorn", "app:app"}},
			want: []string{"/usr/bin/uvicorn", "--uds", "/run/sv/a.sock", "app:app"},
			env:  map[string]string{"FORWARDED_ALLOW_IPS": "*", "PYTHONPATH": "/run/st/app", "SOCKVISOR_SOCKET": "/run/sv/a.sock"},
		},
		{
			name:      "puma adopts only the activated socket",
			b:         config.Backend{Preset: "puma", Handoff: "listen-fds", Protocol: "http", Mount: "/", Command: []string{"/usr/bin/puma", "config.ru"}},
			want:      []string{"/usr/bin/puma", "--bind-to-activated-sockets", "only", "config.ru"},
			env:       map[string]string{"RUBYOPT": rubyopt},
			listenEnv: true,
		},
		{
			name: "puma under a mount gets SCRIPT_NAME; a stray bind is harmless",
			b:    config.Backend{Preset: "puma", Handoff: "listen-fds", Protocol: "http", Mount: "/rack/", Command: []string{"/usr/bin/puma", "-b", "unix:///elsewhere.sock", "config.ru"}},
			want: []string{"/usr/bin/puma", "--bind-to-activated-sockets", "only", "-b", "unix:///elsewhere.sock", "config.ru"},
			env:  map[string]string{"SCRIPT_NAME": "/rack", "RUBYOPT": rubyopt}, listenEnv: true,
		},
		{
			name: "puma self binds the path",
			b:    config.Backend{Preset: "puma", Handoff: "self", Protocol: "http", Mount: "/", Command: []string{"/usr/bin/puma"}},
			want: []string{"/usr/bin/puma", "--bind", "unix:///run/sv/a.sock"},
			env:  map[string]string{"SOCKVISOR_SOCKET": "/run/sv/a.sock", "RUBYOPT": rubyopt},
		},
		{
			name: "generic listen-fds",
			b:    config.Backend{Preset: "generic", Handoff: "listen-fds", Protocol: "http", Command: []string{"/srv/app"}},
			want: []string{"/srv/app"}, listenEnv: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd, err := buildCommand(&c.b, 0, "/run/sv/a.sock", "/run/st/app")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cmd.argv, c.want) {
				t.Errorf("argv %q\nwant %q", cmd.argv, c.want)
			}
			if c.env == nil {
				c.env = map[string]string{}
			}
			if len(cmd.env) != len(c.env) {
				t.Errorf("env %v; want %v", cmd.env, c.env)
			}
			for k, v := range c.env {
				if cmd.env[k] != v {
					t.Errorf("env %s=%q; want %q", k, cmd.env[k], v)
				}
			}
			if cmd.listenEnv != c.listenEnv {
				t.Errorf("listenEnv %t; want %t", cmd.listenEnv, c.listenEnv)
			}
		})
	}
}

func TestFPMGeneratedConfig(t *testing.T) {
	b := &config.Backend{Name: "php", Preset: "php-fpm", Handoff: "fpm", Protocol: "fcgi", UID: 0,
		Command: []string{"php-fpm8.2"}, StopTimeout: 1500 * time.Millisecond,
		Environment: map[string]string{"APP_ENV": "prod", "A": "x y"}}
	cmd, err := buildCommand(b, 1, "/run/sv/php-1.sock", "/run/st/php")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"php-fpm8.2", "-F", "-R", "-y", "/run/st/php/php-fpm-1.conf"}
	if !slices.Equal(cmd.argv, want) {
		t.Fatalf("argv %q; want %q", cmd.argv, want)
	}
	alias := "/run/st/php/fpm-1.alias"
	if cmd.env["FPM_SOCKETS"] != alias+"=3" {
		t.Fatalf("FPM_SOCKETS=%q; want the alias on fd 3", cmd.env["FPM_SOCKETS"])
	}
	conf := cmd.files["php-fpm-1.conf"]
	for _, line := range []string{"listen = " + alias, "process_control_timeout = 2s", "user = root", "env[A] = 'x y'", "env[APP_ENV] = 'prod'", "daemonize = no"} {
		if !strings.Contains(conf, line+"\n") {
			t.Errorf("config lacks %q:\n%s", line, conf)
		}
	}
	if strings.Contains(conf, "/run/sv/") {
		t.Errorf("config names the real socket path; PHP-FPM would unlink it:\n%s", conf)
	}
	b.Environment["BAD"] = "it's"
	if _, err := buildCommand(b, 0, "/run/sv/php.sock", "/run/st/php"); err == nil || !strings.Contains(err.Error(), "BAD") {
		t.Fatalf("quote in an environment value: %v; want an error naming it", err)
	}
}

// A listening flag of the user's would leave the socket unused: refused
// with the flag named.
func TestPresetRefusesOwnListener(t *testing.T) {
	for _, b := range []config.Backend{
		{Name: "u", Preset: "uvicorn", Handoff: "listen-fds", Protocol: "http", Command: []string{"uvicorn", "--port", "8000", "app:app"}},
		{Name: "u", Preset: "uvicorn", Handoff: "self", Protocol: "http", Command: []string{"uvicorn", "--uds=/x.sock", "app:app"}},
		{Name: "u", Preset: "uvicorn", Handoff: "stdin", Protocol: "http", Command: []string{"uvicorn", "app:app"}},
		{Name: "p", Preset: "puma", Handoff: "self", Protocol: "http", Command: []string{"puma", "-b", "tcp://0.0.0.0:9292"}},
	} {
		_, err := buildCommand(&b, 0, "/run/sv/a.sock", "/run/st/app")
		if err == nil || !strings.Contains(err.Error(), "backend \""+b.Name+"\"") || !strings.Contains(err.Error(), string(b.Handoff)) && !strings.Contains(err.Error(), "remove that flag") {
			t.Errorf("%s %q: %v; want an error saying what to remove", b.Preset, b.Command, err)
		}
	}
}

// The pool is sized by the fpm block, or for the machine without one; the
// user's settings follow sockvisor's lines and may override the spares.
func TestFPMPoolSizing(t *testing.T) {
	b := &config.Backend{Name: "wp", Preset: "php-fpm", Handoff: "fpm", Protocol: "fcgi", UID: 33,
		Command: []string{"php-fpm8.2"}, StopTimeout: 30 * time.Second}
	cmd, err := buildCommand(b, 0, "/run/sv/wp.sock", "/run/st/wp")
	if err != nil {
		t.Fatal(err)
	}
	n := config.DefaultFPMMaxChildren()
	_, lo, _ := fpmSpares(n)
	conf := cmd.files["php-fpm-0.conf"]
	for _, line := range []string{"pm = dynamic", fmt.Sprintf("pm.max_children = %d", n), fmt.Sprintf("pm.min_spare_servers = %d", lo), "process_control_timeout = 30s"} {
		if !strings.Contains(conf, line+"\n") {
			t.Errorf("default pool lacks %q:\n%s", line, conf)
		}
	}
	b.FPM = config.FPM{PM: "dynamic", MaxChildren: 16,
		Settings: map[string]string{"php_admin_value[memory_limit]": "256M", "pm.max_spare_servers": "10", "php_value[error_log]": "/var/log/a b.log"}}
	cmd, err = buildCommand(b, 0, "/run/sv/wp.sock", "/run/st/wp")
	if err != nil {
		t.Fatal(err)
	}
	conf = cmd.files["php-fpm-0.conf"]
	for _, line := range []string{"pm.max_children = 16", "pm.start_servers = 6", "pm.min_spare_servers = 4", "pm.max_spare_servers = 10",
		"php_admin_value[memory_limit] = 256M", `php_value[error_log] = "/var/log/a b.log"`} {
		if !strings.Contains(conf, line+"\n") {
			t.Errorf("pool lacks %q:\n%s", line, conf)
		}
	}
	if strings.Contains(conf, "pm.max_spare_servers = 8") {
		t.Errorf("pool sets pm.max_spare_servers twice:\n%s", conf)
	}
	b.FPM.PM = "static"
	cmd, _ = buildCommand(b, 0, "/run/sv/wp.sock", "/run/st/wp")
	if conf := cmd.files["php-fpm-0.conf"]; !strings.Contains(conf, "pm = static\n") || strings.Contains(conf, "pm.start_servers") {
		t.Errorf("static pool:\n%s", conf)
	}
	b.FPM.Settings["php_value[x]"] = `say "hi"`
	if _, err := buildCommand(b, 0, "/run/sv/wp.sock", "/run/st/wp"); err == nil || !strings.Contains(err.Error(), "php_value[x]") {
		t.Errorf("a quote in a setting: %v; want an error naming it", err)
	}
	delete(b.FPM.Settings, "php_value[x]")
	b.Command = []string{"php-fpm8.2", "-y", "/etc/own.conf"}
	if _, err := buildCommand(b, 0, "/run/sv/wp.sock", "/run/st/wp"); err == nil || !strings.Contains(err.Error(), "remove one of them") {
		t.Errorf("fpm settings with the user's own pool: %v; want an error", err)
	}
	for n := 1; n <= 100; n++ {
		start, lo, hi := fpmSpares(n)
		if lo < 1 || lo > start || start > hi || hi > max(n, 1) {
			t.Errorf("fpmSpares(%d) = start %d, spare %d-%d", n, start, lo, hi)
		}
	}
}

// Every preset config knows must have its flags here: one table.
func TestEveryPresetHasFlags(t *testing.T) {
	for name := range config.Presets {
		if _, ok := servers[name]; !ok {
			t.Errorf("preset %q has no entry in servers", name)
		}
	}
}

// A missing socket is a clear error from New, never a panic.
func TestMissingSocket(t *testing.T) {
	b := &config.Backend{Name: "app", Preset: config.PresetGeneric, Handoff: config.HandoffListenFDs, Protocol: config.ProtocolHTTP,
		Command: []string{"/bin/true"}, Sockets: []config.Socket{{Path: "/run/sv/app.sock"}}}
	for _, socks := range [][]Socket{nil, {nil}} {
		be, err := New(b, socks, Options{Executable: "/bin/true"})
		if err == nil || !strings.Contains(err.Error(), "has no listening socket for instance 0") {
			t.Fatalf("New with sockets %v: %v", socks, err)
		}
		if be != nil {
			t.Fatalf("New with sockets %v returned a backend along with its error", socks)
		}
	}
}
