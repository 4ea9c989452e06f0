package apache

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sockvisor/sockvisor/supervisor/apacheconf"
)

// runApache runs the apachectl argv plus args and returns its combined
// output. The error wraps the exit error; the output is Apache's message.
func runApache(ctx context.Context, apachectl []string, args ...string) (string, error) {
	if len(apachectl) == 0 {
		return "", fmt.Errorf("no apachectl command configured")
	}
	argv := append(append([]string{}, apachectl[1:]...), args...)
	cmd := exec.CommandContext(ctx, apachectl[0], argv...)
	cmd.Env = apacheEnv(apachectl)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// apacheEnv supplies Debian's envvars to the bare apache2/httpd binary,
// which, unlike apache2ctl, does not read them itself.
func apacheEnv(apachectl []string) []string {
	env := os.Environ()
	base := filepath.Base(apachectl[0])
	if base != "apache2" && base != "httpd" {
		return env
	}
	_, root := apacheconf.Locate(apachectl)
	vars, err := apacheconf.ReadEnvvars(filepath.Join(root, "envvars"))
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

// apacheMessage keeps the lines of Apache's output that say what is wrong,
// joined into one line.
func apacheMessage(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "", l == "Syntax OK",
			strings.HasPrefix(l, "AH00558:"), // ServerName not set: noise
			strings.HasPrefix(l, "Action '"),
			strings.HasPrefix(l, "The Apache error log may have more information"):
			continue
		}
		keep = append(keep, l)
		if len(keep) == 6 {
			break
		}
	}
	if len(keep) == 0 {
		return "(no output)"
	}
	return strings.Join(keep, " ")
}
