package apache

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"

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
	cmd.Env = apacheconf.CommandEnv(apachectl)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
