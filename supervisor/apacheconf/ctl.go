package apacheconf

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNoCommand means the apachectl argv given was empty.
var ErrNoCommand = errors.New("apacheconf: no apachectl command given")

// Identity is a user or group as Apache reports it.
type Identity struct {
	Name string
	ID   int
}

// RunCfg is what `apachectl -t -D DUMP_RUN_CFG` prints: the identity the
// workers run as and the files the server writes.
type RunCfg struct {
	ServerRoot   string
	DocumentRoot string
	ErrorLog     string // main server's; vhosts may log elsewhere
	PidFile      string
	User         Identity
	Group        Identity
	// DefaultRuntimeDir is set only when Apache prints it (2.4.71 does not).
	DefaultRuntimeDir string
	// MutexDir is the default mutex directory, which is the compiled-in
	// runtime directory unless the config sets `Mutex ... default`.
	MutexDir string
	// Defines holds every -D/Define name in force, for <IfDefine>.
	Defines []string
}

// LoadedModules runs `<apachectl...> -M` and returns every loaded module,
// keyed by name without the "_module" suffix ("proxy_fcgi").
func LoadedModules(ctx context.Context, apachectl []string) (map[string]bool, error) {
	out, err := run(ctx, apachectl, "-M")
	if err != nil {
		return nil, err
	}
	mods := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || !strings.HasPrefix(f[1], "(") || !strings.HasSuffix(f[0], "_module") {
			continue
		}
		mods[strings.TrimSuffix(f[0], "_module")] = true
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("apacheconf: %s -M listed no modules: %s", strings.Join(apachectl, " "), Message(out, 5))
	}
	return mods, nil
}

// RunConfig runs `<apachectl...> -t -D DUMP_RUN_CFG` and parses its output.
func RunConfig(ctx context.Context, apachectl []string) (RunCfg, error) {
	out, err := run(ctx, apachectl, "-t", "-D", "DUMP_RUN_CFG")
	if err != nil {
		return RunCfg{}, err
	}
	rc := parseRunCfg(out)
	if rc.ServerRoot == "" && rc.User.Name == "" {
		return rc, fmt.Errorf("apacheconf: %s -t -D DUMP_RUN_CFG printed no run config: %s", strings.Join(apachectl, " "), Message(out, 5))
	}
	return rc, nil
}

func parseRunCfg(out []byte) RunCfg {
	var rc RunCfg
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		key, val, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch key {
		case "ServerRoot":
			rc.ServerRoot = unquote(val)
		case "Main DocumentRoot":
			rc.DocumentRoot = unquote(val)
		case "Main ErrorLog":
			rc.ErrorLog = unquote(val)
		case "PidFile":
			rc.PidFile = unquote(val)
		case "DefaultRuntimeDir":
			rc.DefaultRuntimeDir = unquote(val)
		case "Define":
			name, _, _ := strings.Cut(val, "=")
			rc.Defines = append(rc.Defines, strings.TrimSpace(name))
		case "User":
			rc.User = parseIdentity(val)
		case "Group":
			rc.Group = parseIdentity(val)
		case "Mutex default":
			if _, rest, ok := strings.Cut(val, `dir="`); ok {
				rc.MutexDir, _, _ = strings.Cut(rest, `"`)
			}
		}
	}
	return rc
}

// parseIdentity reads `name="www-data" id=33`.
func parseIdentity(s string) Identity {
	id := Identity{ID: -1}
	for _, f := range splitArgs(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "name":
			id.Name = unquote(v)
		case "id":
			if n, err := strconv.Atoi(v); err == nil {
				id.ID = n
			}
		}
	}
	return id
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// run executes the apachectl argv plus args and returns stdout. A failure
// carries Apache's own message (stderr, else stdout).
func run(ctx context.Context, apachectl []string, args ...string) ([]byte, error) {
	if len(apachectl) == 0 {
		return nil, ErrNoCommand
	}
	argv := append(append([]string{}, apachectl[1:]...), args...)
	cmd := exec.CommandContext(ctx, apachectl[0], argv...)
	cmd.Env = CommandEnv(apachectl)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		msg := stderr.Bytes()
		if len(bytes.TrimSpace(msg)) == 0 {
			msg = stdout.Bytes()
		}
		return nil, fmt.Errorf("apacheconf: %s %s: %w: %s", strings.Join(apachectl, " "), strings.Join(args, " "), err, Message(msg, 8))
	}
	return stdout.Bytes(), nil
}

// CommandEnv returns the environment for running Apache. apachectl sources
// Debian's envvars itself; the bare binary needs them supplied, or
// ${APACHE_RUN_DIR} and friends stay undefined and the config fails.
func CommandEnv(apachectl []string) []string {
	env := os.Environ()
	base := filepath.Base(apachectl[0])
	if base != "apache2" && base != "httpd" {
		return env
	}
	vars, err := ReadEnvvars(filepath.Join(FromCommand(apachectl).ServerRoot, "envvars"))
	if err != nil {
		return env
	}
	for k, v := range vars {
		if os.Getenv(k) == "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Message returns up to n lines of Apache's output that say what is wrong,
// joined by "; ": without blank lines, "Syntax OK", apachectl's own
// epilogue and the ServerName warning every unconfigured Debian Apache prints.
func Message(b []byte, n int) string {
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l == "Syntax OK" || strings.HasPrefix(l, "AH00558:") ||
			strings.HasPrefix(l, "Action '") || strings.HasPrefix(l, "The Apache error log may have more information") {
			continue
		}
		keep = append(keep, l)
		if len(keep) == n {
			break
		}
	}
	if len(keep) == 0 {
		return "(no output)"
	}
	return strings.Join(keep, "; ")
}

// ReadEnvvars reads the `export NAME=value` lines of Debian's envvars file,
// expanding $VAR and ${VAR} from earlier lines. Shell logic is not run:
// Debian's only conditional sets SUFFIX, which is computed here as it does:
// "-NAME" for /etc/apache2-NAME/envvars (setup-instance's second
// instance, whose logs, pid file and runtime dir end in -NAME), else "".
func ReadEnvvars(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("apacheconf: reading envvars: %w", err)
	}
	suffix := ""
	if n := instanceName(filepath.Dir(path)); n != "" {
		suffix = "-" + n
	}
	vars := map[string]string{"SUFFIX": suffix}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		name, val, ok := strings.Cut(strings.TrimSpace(rest), "=")
		if !ok || name == "" || strings.ContainsAny(name, " \t$") {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"'`)
		vars[name] = os.Expand(val, func(k string) string { return vars[k] })
	}
	delete(vars, "SUFFIX")
	return vars, nil
}
