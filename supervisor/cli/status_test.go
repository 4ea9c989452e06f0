package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/daemon"
)

// status shows sockvisor's last Apache apply: a failure names the step and
// Apache's own message, a success says so.
func TestStatusShowsLastApacheApply(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	writeStatus(&env{stdout: &out}, &daemon.StatusReport{Phase: "running", LastApacheApply: &daemon.ApacheApply{
		At: at, Step: "configtest", Error: "apache: configtest failed: AH00526: Syntax error on line 2 of /etc/apache2/sites-enabled/x.conf:\nInvalid command 'Bogus'",
	}})
	s := out.String()
	for _, want := range []string{"Apache config NOT applied", "configtest failed", "AH00526", "Invalid command 'Bogus'", "previous config"} {
		if !strings.Contains(s, want) {
			t.Errorf("status output %q lacks %q", s, want)
		}
	}
	if strings.Count(strings.TrimSpace(s), "\n") > 2 {
		t.Errorf("the apply error spans lines: %q", s)
	}
	out.Reset()
	writeStatus(&env{stdout: &out}, &daemon.StatusReport{Phase: "running", LastApacheApply: &daemon.ApacheApply{At: at, OK: true}})
	if !strings.Contains(out.String(), "Apache config: applied") {
		t.Errorf("status output %q does not say the apply succeeded", out.String())
	}
}
