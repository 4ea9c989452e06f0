package backend

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// serverFlags is what sockvisor adds to a preset's command line and
// environment. config.Presets holds the protocol, handoff and signals; this
// is the one table of each server's flags.
type serverFlags struct {
	// listenEnv sets LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES for handoff
	// listen-fds. uWSGI gets fd://N instead: given LISTEN_FDS as well it
	// maps the same fd a second time as a uwsgi-protocol socket (measured).
	listenEnv bool
	// notifies: the server sends READY=1 to NOTIFY_SOCKET from its main
	// process (gunicorn 20.1 arbiter, uWSGI 2.0 master, PHP-FPM master).
	notifies bool
	// args returns flags inserted after argv[0].
	args func(c *cmdContext) ([]string, error)
	// fcgiRequestProbe: the server ignores FCGI_GET_VALUES, so readiness
	// sends a real FastCGI request to ready.path.
	fcgiRequestProbe bool
	// stopMain sends stop_signal to the main process only; the rest of the
	// group gets it once the main process has exited. uWSGI workers die on
	// TERM mid-request, while its master shuts them down gracefully.
	stopMain bool
	// env adds environment variables (through setDefault, so that the
	// backend's own environment wins) and the files they name.
	env func(c *cmdContext)
}

var servers = map[config.Preset]serverFlags{
	config.PresetGunicorn: {listenEnv: true, notifies: true, args: gunicornArgs},
	config.PresetUWSGI:    {notifies: true, args: uwsgiArgs, fcgiRequestProbe: true, stopMain: true},
	config.PresetPHPFPM:   {notifies: true, args: fpmArgs},
	config.PresetUvicorn:  {args: uvicornArgs, env: uvicornEnv},
	config.PresetPuma:     {listenEnv: true, args: pumaArgs, env: pumaEnv},
	config.PresetGeneric:  {listenEnv: true},
}

// cmdContext is what the flag builders may look at.
type cmdContext struct {
	b        *config.Backend
	instance int
	// fd is the socket's fd in the child (3, or 0 for handoff stdin).
	fd int
	// path is the socket path of this instance.
	path string
	// stateDir is the backend's private directory for generated files.
	stateDir string
	// files collects generated files: name inside stateDir → content.
	files map[string]string
	// env collects extra environment variables.
	env map[string]string
}

// hasFlag reports whether argv (without argv[0]) has any of names, as
// "--x", "--x=v" or "-x".
func hasFlag(argv []string, names ...string) bool {
	for _, a := range argv {
		if a == "--" {
			return false
		}
		for _, n := range names {
			if a == n || strings.HasPrefix(a, n+"=") {
				return true
			}
		}
	}
	return false
}

func gunicornArgs(c *cmdContext) ([]string, error) {
	if c.b.Handoff == config.HandoffSelf && !hasFlag(c.b.Command[1:], "--bind", "-b") {
		return []string{"--bind", "unix:" + c.path}, nil
	}
	return nil, nil
}

// uwsgiSocketFlag maps protocol to uWSGI's socket option.
var uwsgiSocketFlag = map[config.Protocol]string{config.ProtocolHTTP: "--http-socket", config.ProtocolUWSGI: "--socket", config.ProtocolFCGI: "--fastcgi-socket"}

func uwsgiArgs(c *cmdContext) ([]string, error) {
	user := c.b.Command[1:]
	var out []string
	// Debian's uwsgi-core has no built-in language plugin.
	if !hasFlag(user, "--plugin", "--plugins", "--need-plugin", "--need-plugins") {
		out = append(out, "--plugin", "python3")
	}
	if !hasFlag(user, "--master", "-M") {
		out = append(out, "--master")
	}
	// Without it uWSGI treats TERM as a brutal reload and never exits.
	if !hasFlag(user, "--die-on-term") {
		out = append(out, "--die-on-term")
	}
	// --die-on-term alone kills workers mid-request; uWSGI 2.0's graceful
	// shutdown is only reachable through this hook (or the master FIFO).
	if !hasFlag(user, "--hook-master-start") {
		out = append(out, "--hook-master-start", "unix_signal:15 gracefully_kill_them_all")
	}
	// uWSGI 2.0 without an app keeps running and answers 500, so a broken
	// deploy would fail only at ready.timeout; with it, it exits at once.
	if !hasFlag(user, "--need-app", "--no-need-app") {
		out = append(out, "--need-app")
	}
	flag := uwsgiSocketFlag[c.b.Protocol]
	switch c.b.Handoff {
	case config.HandoffListenFDs, config.HandoffStdin:
		out = append(out, flag, fmt.Sprintf("fd://%d", c.fd))
	case config.HandoffSelf:
		out = append(out, flag, c.path)
	}
	return out, nil
}

func fpmArgs(c *cmdContext) ([]string, error) {
	user := c.b.Command[1:]
	var out []string
	if !hasFlag(user, "-F", "--nodaemonize") {
		out = append(out, "-F")
	}
	if c.b.UID == 0 && !hasFlag(user, "-R", "--allow-to-run-as-root") {
		out = append(out, "-R")
	}
	if own := fpmConfigArg(user); own != "" {
		if len(c.b.FPM.Settings) > 0 {
			return nil, fmt.Errorf("backend %q has fpm settings and its own pool config (%s); the settings apply only to the pool sockvisor generates, so remove one of them", c.b.Name, own)
		}
		// The user's pool must listen on the socket path itself; PHP-FPM
		// then adopts fd 3 but unlinks the path at exit, which the
		// supervisor restores (EnsurePath).
		if c.b.Handoff == config.HandoffFPM {
			c.env["FPM_SOCKETS"] = fmt.Sprintf("%s=%d", c.path, c.fd)
		}
		return out, nil
	}
	listen := c.path
	if c.b.Handoff == config.HandoffFPM {
		// The alias trick: the pool listens on a name that never exists,
		// FPM_SOCKETS maps it to the inherited fd, so PHP-FPM never
		// probes, chmods or unlinks the real socket path.
		listen = filepath.Join(c.stateDir, fmt.Sprintf("fpm-%d.alias", c.instance))
		c.env["FPM_SOCKETS"] = fmt.Sprintf("%s=%d", listen, c.fd)
	}
	name := fmt.Sprintf("php-fpm-%d.conf", c.instance)
	conf, err := fpmPoolConfig(c.b, c.instance, listen)
	if err != nil {
		return nil, err
	}
	c.files[name] = conf
	return append(out, "-y", filepath.Join(c.stateDir, name)), nil
}

// fpmConfigArg returns the value of -y/--fpm-config, or "".
func fpmConfigArg(argv []string) string {
	for i, a := range argv {
		switch {
		case (a == "-y" || a == "--fpm-config") && i+1 < len(argv):
			return argv[i+1]
		case strings.HasPrefix(a, "--fpm-config="):
			return strings.TrimPrefix(a, "--fpm-config=")
		case strings.HasPrefix(a, "-y") && len(a) > 2:
			return a[2:]
		}
	}
	return ""
}

// command is what one instance runs, before the shim.
type command struct {
	argv      []string
	env       map[string]string
	files     map[string]string
	listenEnv bool
}

// buildCommand adds the preset's flags to the configured command.
func buildCommand(b *config.Backend, instance int, path, stateDir string) (command, error) {
	srv := servers[b.Preset]
	c := &cmdContext{b: b, instance: instance, fd: 3, path: path, stateDir: stateDir,
		files: map[string]string{}, env: map[string]string{}}
	if b.Handoff == config.HandoffStdin {
		c.fd = 0
	}
	if b.Handoff == config.HandoffSelf {
		c.env["SOCKVISOR_SOCKET"] = path
	}
	argv := slices.Clone(b.Command)
	if srv.args != nil {
		extra, err := srv.args(c)
		if err != nil {
			return command{}, err
		}
		argv = slices.Concat(argv[:1], extra, argv[1:])
	}
	if srv.env != nil {
		srv.env(c)
	}
	return command{argv: argv, env: c.env, files: c.files, listenEnv: srv.listenEnv && b.Handoff == config.HandoffListenFDs}, nil
}

// mountPrefix is the mount as an application's script name or root path:
// "/app/" gives "/app"; "/" and "" (no Apache config) give "".
func mountPrefix(b *config.Backend) string {
	return strings.TrimSuffix(b.Mount, "/")
}

// uvicornArgs passes the socket as --fd (uvicorn 0.17.6 neither reads
// LISTEN_FDS nor unlinks an fd it was given) or, for handoff self, as
// --uds, and tells the app where Apache mounts it. A --host, --port or
// --uds of the user's would make uvicorn listen somewhere Apache never
// connects, so it is refused rather than silently left unused.
//
// uvicorn 0.17 neither notifies nor stops without losing requests; the
// generated sitecustomize.py (uvicornFix) adds both.
func uvicornArgs(c *cmdContext) ([]string, error) {
	user := c.b.Command[1:]
	var out []string
	switch c.b.Handoff {
	case config.HandoffListenFDs:
		if hasFlag(user, "--fd", "--uds", "--host", "--port") {
			return nil, fmt.Errorf("backend %q: uvicorn's command sets --fd, --uds, --host or --port, but sockvisor passes the socket itself (--fd %d); remove that flag", c.b.Name, c.fd)
		}
		out = append(out, "--fd", fmt.Sprint(c.fd))
	case config.HandoffSelf:
		if hasFlag(user, "--fd", "--uds", "--host", "--port") {
			return nil, fmt.Errorf("backend %q: uvicorn's command sets --fd, --uds, --host or --port, but sockvisor adds --uds %s itself; remove that flag", c.b.Name, c.path)
		}
		out = append(out, "--uds", c.path)
	default:
		return nil, fmt.Errorf("backend %q: uvicorn cannot take handoff %q; use \"listen-fds\" or \"self\"", c.b.Name, c.b.Handoff)
	}
	// Apache strips the mount from the path; uvicorn 0.17 puts --root-path
	// into the ASGI scope's root_path, from which apps build their links.
	if p := mountPrefix(c.b); p != "" && !hasFlag(user, "--root-path") {
		out = append(out, "--root-path", p)
	}
	return out, nil
}

// setDefault sets an environment variable for the backend unless its
// config sets it.
func setDefault(c *cmdContext, k, v string) {
	if _, own := c.b.Environment[k]; !own {
		c.env[k] = v
	}
}

// uvicornEnv trusts X-Forwarded-Proto and X-Forwarded-For from every peer:
// on a Unix socket the ASGI client is None, which matches no address list,
// so anything short of "*" ignores the headers Apache sets (uvicorn 0.17.6
// ProxyHeadersMiddleware). Only Apache's group can connect to the socket.
// It goes in the environment, which uvicorn reads when the flag is absent,
// so a --forwarded-allow-ips of the user's still wins.
//
// PYTHONPATH puts the generated sitecustomize.py below first on the path
// (the state directory holds nothing else Python could import).
func uvicornEnv(c *cmdContext) {
	setDefault(c, "FORWARDED_ALLOW_IPS", "*")
	c.files["sitecustomize.py"] = uvicornFix
	path := c.stateDir
	if own := c.b.Environment["PYTHONPATH"]; own != "" {
		path += ":" + own
	}
	c.env["PYTHONPATH"] = path
}

// uvicornFix patches uvicorn 0.17 in two places; other versions are left
// alone, and the system's sitecustomize, which it shadows, still runs.
//
//   - Readiness: after its startup (lifespan done, listening) it sends
//     READY=1 to NOTIFY_SOCKET, so a replacement counts as ready when the
//     new process is, not when the socket answers, which the old process
//     still does (ready after 1 ms before, while the new one was booting).
//   - Graceful stop: uvicorn stops listening and, in the same step of its
//     event loop, closes every connection with no request in progress,
//     including those it has just accepted and not yet read. On a socket
//     shared with the next process that lost about one request in 7,000
//     over 10 restarts through Apache (502, "AH00898: Error reading from
//     remote server"; 3 of 8 runs, test/apps). The patch stops listening,
//     lets the loop read what has arrived for 100 ms, then runs uvicorn's
//     own shutdown, which finishes those requests.
const uvicornFix = `# Generated by sockvisor; changes are overwritten.
import sys


def _sockvisor_chain():
    import importlib.machinery
    import importlib.util
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def _sockvisor_notify(state):
    import os
    import socket
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    if not addr:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.send(state)
    except OSError:
        pass


def _sockvisor_patch():
    try:
        import asyncio
        import uvicorn
        from uvicorn import server
    except Exception:
        return
    if not uvicorn.__version__.startswith("0.17."):
        return
    startup, shutdown = server.Server.startup, server.Server.shutdown

    async def startup_then_notify(self, sockets=None):
        await startup(self, sockets=sockets)
        if not self.should_exit:
            _sockvisor_notify(b"READY=1")

    async def read_then_shutdown(self, sockets=None):
        for s in self.servers:
            s.close()
        await asyncio.sleep(0.1)
        await shutdown(self, sockets=sockets)

    server.Server.startup = startup_then_notify
    server.Server.shutdown = read_then_shutdown


_sockvisor_chain()
_sockvisor_patch()
`

// pumaArgs adopts exactly the activated sockets. Puma 5.6 matches each
// LISTEN_FDS socket to a -b by path and closes and unlinks any it cannot
// match (then crashes on the unlink, measured), so the path would have to
// be repeated by hand; with "only" it binds what it was given and drops
// every other bind, and never unlinks an adopted path.
func pumaArgs(c *cmdContext) ([]string, error) {
	user := c.b.Command[1:]
	switch c.b.Handoff {
	case config.HandoffListenFDs:
		if hasFlag(user, "--bind-to-activated-sockets") {
			return nil, nil
		}
		return []string{"--bind-to-activated-sockets", "only"}, nil
	case config.HandoffSelf:
		if hasFlag(user, "--bind", "-b") {
			return nil, fmt.Errorf("backend %q: puma's command sets --bind, but sockvisor binds unix://%s itself; remove that flag", c.b.Name, c.path)
		}
		return []string{"--bind", "unix://" + c.path}, nil
	}
	return nil, fmt.Errorf("backend %q: puma cannot take handoff %q; use \"listen-fds\" or \"self\"", c.b.Name, c.b.Handoff)
}

// pumaEnv gives Rack its SCRIPT_NAME: Puma 5.6 copies SCRIPT_NAME from its
// environment into every request, and Rack builds URLs from it, while
// Apache strips the mount from PATH_INFO. (With the sd_notify gem Puma
// sends READY=1 itself once booted, so a replacement waits for it.)
// RUBYOPT preloads pumaFix, before the user's own RUBYOPT.
func pumaEnv(c *cmdContext) {
	if p := mountPrefix(c.b); p != "" {
		setDefault(c, "SCRIPT_NAME", p)
	}
	c.files[pumaFixFile] = pumaFix
	opt := "-r" + filepath.Join(c.stateDir, pumaFixFile)
	if own := c.b.Environment["RUBYOPT"]; own != "" {
		opt += " " + own
	}
	c.env["RUBYOPT"] = opt
}

const pumaFixFile = "sockvisor_puma.rb"

// pumaFix makes Puma 5's graceful stop lose no request. Puma stops
// accepting and at once shuts its reactor down, which closes every
// connection that has not sent a complete request yet, including those it
// has just accepted: on a socket shared with the next process that lost 1
// request in 41,082 over 10 restarts at 4,800 req/s through Apache (502,
// test/apps). The patch lets the reactor read for 100 ms first, so those
// requests reach a thread and finish. Only a process running Puma 5 is
// patched (RUBYOPT reaches every Ruby the backend starts).
const pumaFix = `# Generated by sockvisor; changes are overwritten.
if File.basename($0) == "puma"
  begin
    require "puma/const"
    require "puma/reactor"
    if Puma::Const::PUMA_VERSION.start_with?("5.")
      module SockvisorReactorDrain
        def shutdown
          sleep 0.1
          super
        end
      end
      Puma::Reactor.prepend(SockvisorReactorDrain)
    end
  rescue LoadError
  end
end
`

// CheckCommand builds b's command line for every instance as Run would,
// without side effects, and returns the first reason it cannot (a listening
// flag of the user's that would leave the socket unused, say), so
// `sockvisor check` refuses what `run` would.
func CheckCommand(b *config.Backend) error {
	for _, s := range b.Sockets {
		if _, err := buildCommand(b, s.Instance, s.Path, filepath.Join(DefaultStateDir, b.Name)); err != nil {
			return err
		}
	}
	return nil
}
