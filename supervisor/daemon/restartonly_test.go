package daemon

import (
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// A change only a restart applies used to advise `systemctl restart
// sockvisor` and systemd's fd store on hosts without systemd too.
func TestRestartOnlyChangeAdvice(t *testing.T) {
	old := &config.Config{SocketDir: "/run/sockvisor"}
	next := &config.Config{SocketDir: "/run/sv2"}
	if err := restartOnlyChanges(old, old, false); err != nil {
		t.Fatalf("unchanged config refused: %v", err)
	}
	err := restartOnlyChanges(old, next, true)
	if err == nil || !strings.Contains(err.Error(), "socket_dir") || !strings.Contains(err.Error(), "systemctl restart sockvisor") {
		t.Errorf("under systemd: %v", err)
	}
	err = restartOnlyChanges(old, next, false)
	if err == nil || !strings.Contains(err.Error(), "socket_dir") || !strings.Contains(err.Error(), "sockvisor run") ||
		strings.Contains(err.Error(), "systemctl") || strings.Contains(err.Error(), "fd store") {
		t.Errorf("without systemd: %v", err)
	}

	t.Setenv("INVOCATION_ID", "")
	t.Setenv("NOTIFY_SOCKET", "")
	if runsUnderSystemd() {
		t.Error("without INVOCATION_ID and NOTIFY_SOCKET: under systemd")
	}
	t.Setenv("INVOCATION_ID", "0123456789abcdef")
	if !runsUnderSystemd() {
		t.Error("with INVOCATION_ID: not under systemd")
	}
}
