package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Part 6: a broken deploy under load. The same Gunicorn (no --preload, so
// its arbiter reports ready before a worker imports the app) gets an app
// with a syntax error, once behind sockvisor (`sockvisor restart`) and once
// binding its own socket and restarted the way `systemctl restart` does
// (stop, then start). Requests fail only where the broken version replaced
// the working one.

const (
	svDeploy      = "svbench-deploy"
	pathDeploy    = "/deploy/"  // sockvisor
	pathDeployS   = "/deploys/" // gunicorn --bind unix:, stop then start
	deployConf    = "apache-deploy.conf"
	brokenHelloPy = "def app(:\n"
)

// deployRow is one side of the comparison.
type deployRow struct {
	Mode    string // how the new version was deployed
	Command string // what the deploy command reported
	OK      int64
	Failed  int64
	Reasons string
	// Window is how long the load ran after the deploy command returned.
	Window time.Duration
}

// deploySite is what the bench's Apache site needs for part 6: the
// config the deploy sockvisor writes and the self-bound socket.
func deploySite(work string) string {
	return fmt.Sprintf("IncludeOptional %s\nProxyPass %q \"unix:%s|http://deploys.invalid/\"\n",
		filepath.Join(work, deployConf), pathDeployS, deploySelfSock(work))
}

func deploySelfSock(work string) string { return filepath.Join(work, "dself", "app.sock") }

// deployApp is a private copy of hello.py the part breaks and repairs.
func (b *bench) deployApp() (string, error) {
	dir := filepath.Join(b.e.work, "deploy-app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	src, err := os.ReadFile(filepath.Join(b.e.apps, "hello.py"))
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "hello.py"), src, 0o644)
}

func (b *bench) brokenDeploy(ctx context.Context) error {
	app, err := b.deployApp()
	if err != nil {
		return err
	}
	good, err := os.ReadFile(filepath.Join(app, "hello.py"))
	if err != nil {
		return err
	}
	setApp := func(src string) error { return os.WriteFile(filepath.Join(app, "hello.py"), []byte(src), 0o644) }
	window := 10 * time.Second
	if b.p.quick {
		window = 3 * time.Second
	}

	// sockvisor.
	b.progress("starting sockvisor with a gunicorn backend (no --preload)")
	body := fmt.Sprintf("apache {\n  config_file = %q\n  reload = \"apachectl\"\n  apachectl = %s\n}\n"+
		"backend %q {\n  preset = \"gunicorn\"\n  command = [\"/usr/bin/gunicorn\", \"--workers\", \"2\", \"--chdir\", %q, \"hello:app\"]\n  mount = %q\n  user = \"www-data\"\n  %s}\n",
		filepath.Join(b.e.work, deployConf), quoteArgv(b.e.apache.Command()), svDeploy, app, pathDeploy, svHCLTail)
	sv, err := b.e.startSockvisor(ctx, "deploy", body, startMax)
	if err != nil {
		return err
	}
	defer sv.stop()
	if err := waitFor(ctx, startMax, "the deploy backend through Apache", func() error {
		return getOK(apacheClient(), b.e.apache.URL(pathDeploy))
	}); err != nil {
		return err
	}
	row, err := b.deployOnce(ctx, pathDeploy, window, func() string {
		setApp(brokenHelloPy)
		t := time.Now()
		out, err := sv.cli(ctx, 90*time.Second, "restart", svDeploy)
		return exitText(err, time.Since(t), out)
	})
	setApp(string(good))
	if err != nil {
		return err
	}
	row.Mode = "sockvisor restart"
	b.res.Deploy = append(b.res.Deploy, row)

	// Gunicorn on its own socket, restarted as systemctl restart would.
	dir := filepath.Dir(deploySelfSock(b.e.work))
	if err := mkdirForWWWData(dir); err != nil {
		return err
	}
	argv := []string{"/usr/bin/setpriv", "--reuid=www-data", "--regid=www-data", "--init-groups", "--",
		"/usr/bin/gunicorn", "--workers", "2", "--chdir", app, "--bind", "unix:" + deploySelfSock(b.e.work), "--umask", "0007", "hello:app"}
	b.progress("starting gunicorn on its own socket")
	p, err := b.e.start("deploy-self", argv, nil)
	if err != nil {
		return err
	}
	defer func() { b.e.stop(p, syscall.SIGTERM, stopGrace) }()
	if err := waitFor(ctx, startMax, "self-bound gunicorn through Apache", func() error {
		return getOK(apacheClient(), b.e.apache.URL(pathDeployS))
	}); err != nil {
		return err
	}
	time.Sleep(time.Second) // every worker booted: TERM to a booting one stalls the stop
	row, err = b.deployOnce(ctx, pathDeployS, window, func() string {
		setApp(brokenHelloPy)
		t := time.Now()
		b.e.stop(p, syscall.SIGTERM, stopGrace)
		p, err = b.e.start("deploy-self", argv, nil)
		if err != nil {
			return err.Error()
		}
		// systemctl returns once the process is started (Type=simple).
		return fmt.Sprintf("exit 0 after %s (the unit started; the site is down)", ms(time.Since(t)))
	})
	setApp(string(good))
	if err != nil {
		return err
	}
	row.Mode = "stop, then start (systemctl restart), own socket"
	b.res.Deploy = append(b.res.Deploy, row)
	return nil
}

// deployOnce loads path, runs deploy after a second, keeps the load for
// window once it returned, and counts.
func (b *bench) deployOnce(ctx context.Context, path string, window time.Duration, deploy func() string) (deployRow, error) {
	load := startLoad(ctx, b.e.apache.URL(path), b.p.loadConns, window+2*time.Minute, 50_000_000)
	sleepCtx(ctx, time.Second)
	cmd := deploy()
	b.progress(path + ": " + cmd)
	sleepCtx(ctx, window)
	lr := load.stop()
	if ctx.Err() != nil {
		return deployRow{}, ctx.Err()
	}
	row := deployRow{Command: cmd, OK: lr.OK, Failed: lr.Failed, Reasons: reasonsText(lr.Reasons), Window: window}
	b.progress(fmt.Sprintf("%s: %d ok, %d failed %s", path, row.OK, row.Failed, row.Reasons))
	return row, nil
}

// exitText summarizes a CLI run: its exit code, time and first line.
func exitText(err error, took time.Duration, out string) string {
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return err.Error()
	}
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if len(line) > 160 {
		line = line[:160] + "…"
	}
	return fmt.Sprintf("exit %d after %s: %s", code, ms(took), line)
}

func quoteArgv(a []string) string {
	q := make([]string, len(a))
	for i, s := range a {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (r *results) deployTable() string {
	var sb strings.Builder
	sb.WriteString("| Gunicorn (no --preload) deployed with | the deploy command | failed / requests |\n|---|---|---:|\n")
	for _, d := range r.Deploy {
		fmt.Fprintf(&sb, "| %s | %s | **%d** / %d %s |\n", d.Mode, strings.ReplaceAll(d.Command, "|", "\\|"), d.Failed, d.OK+d.Failed, d.Reasons)
	}
	return sb.String()
}
