package doctor

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/apacheconf"
	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/daemon"
	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// backendState's verdict for each state a backend can be in, and for a
// ready one whose queue is full or grows.
func TestBackendStateFindings(t *testing.T) {
	const sock = "/run/sv/a.sock"
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		name          string
		state         backend.State
		ready         bool
		before, after uint32 // queue at the doctor's start and at live()
		id            string
		sev           Severity
		what          string
	}{
		{"failed", backend.StateFailed, false, 7, 7, IDBackendDown, SevError, "is failed"},
		{"backoff", backend.StateBackoff, false, 0, 0, IDBackendDown, SevError, "backing off"},
		{"starting", backend.StateStarting, false, 0, 1, IDBackendNotReady, SevError, "not ready"},
		{"at backlog", backend.StateReady, true, 16, 17, IDNotAccepting, SevError, "maximum backlog (17 of 16)"},
		{"growing", backend.StateReady, true, 1, 9, IDNotAccepting, SevWarning, "grew from 1 to 9"},
		{"own connects only", backend.StateReady, true, 1, 4, "", "", ""},
		{"healthy", backend.StateReady, true, 0, 0, "", "", ""},
		// On demand, with no process until a connection comes: healthy,
		// even with that connection queued (it is what starts it).
		{"idle", backend.StateIdle, false, 0, 1, "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := &Target{Socket: sock, Scheme: "http", conf: apacheconf.Target{Host: "a.invalid"}}
			d := &checkup{report: &Report{Targets: []*Target{tg}}, diag: map[string]sockdiag.Stat{sock: {Queue: c.before, Backlog: 16}}, svLogRead: true}
			b := daemon.BackendReport{
				Status: backend.Status{Name: "a", State: c.state, Ready: c.ready, Sockets: []string{sock},
					Instances: []backend.InstanceStatus{{Socket: sock, State: c.state, Ready: c.ready, Restarts: 5,
						LastExit: &backend.Exit{PID: 42, Code: 3, At: at}, LastError: "process 42 exited with status 3"}}},
				Queues: []daemon.SocketQueue{{Path: sock, Queue: c.after, Backlog: 16}},
			}
			d.backendState(context.Background(), b, nil)
			if c.id == "" {
				if len(tg.Findings) != 0 {
					t.Fatalf("false alarm: %+v", tg.Findings)
				}
				return
			}
			if len(tg.Findings) != 1 || tg.Findings[0].ID != c.id || tg.Findings[0].Severity != c.sev {
				t.Fatalf("findings %+v, want one %s %s", tg.Findings, c.sev, c.id)
			}
			f := tg.Findings[0]
			mustContain(t, "what", f.What, c.what)
			mustContain(t, "evidence", strings.Join(f.Evidence, "\n"), "last exit: pid 42 code 3", "last error: process 42", "backlog 16")
			if c.sev == SevWarning {
				// Apache's connect failures for the socket confirm it.
				d.logs = []string{"[proxy:error] (111)Connection refused: AH02454: http: attempt to connect to Unix domain socket " + sock + " (a.invalid:80) failed"}
				d.logTimes = []time.Time{{}}
				d.claimed = map[int]bool{}
				d.errorLogs()
				d.confirmNotAccepting()
				if tg.Findings[0].Severity != SevError || tg.Findings[0].LogCount != 1 {
					t.Errorf("a growing queue with connect failures logged: %+v", tg.Findings[0])
				}
			}
		})
	}
}

func TestApplyStateNamesStepAndFix(t *testing.T) {
	d := &checkup{report: &Report{}}
	d.applyState(&daemon.ApacheApply{OK: true})
	if len(d.report.General) != 0 {
		t.Fatalf("a successful apply is a finding: %+v", d.report.General)
	}
	d.applyState(&daemon.ApacheApply{Step: "modules", Error: "apache: module not loaded: proxy_uwsgi", ConfigFile: "/etc/apache2/conf-available/sockvisor.conf"})
	f := d.report.General[0]
	if f.ID != IDApacheApply || f.Severity != SevError {
		t.Fatalf("finding %+v", f)
	}
	mustContain(t, "evidence", strings.Join(f.Evidence, "\n"), "proxy_uwsgi", "/etc/apache2/conf-available/sockvisor.conf")
	mustContain(t, "fix", f.Fix, "a2enmod", "sockvisor reload")
	mustContain(t, "what", f.What, "still runs its previous config")

	// A reload that killed Apache for good: saying it still serves would lie.
	d = &checkup{report: &Report{}}
	d.applyState(&daemon.ApacheApply{Step: "apache-died", Error: "apache: Apache died on reload; Apache is down: sockvisor restored the previous config but could not start Apache again"})
	f = d.report.General[0]
	mustContain(t, "what", f.What, "did not start again", "every site it serves is down")
	if strings.Contains(f.What, "still runs") {
		t.Errorf("a dead Apache reported as serving: %s", f.What)
	}
}

// A socket that something holds and listens on but never accepts from (a
// socket unit whose service is down, a stopped server): connects succeed
// into the queue and Apache's requests hang until its timeout.
func TestQueuedButNeverAccepted(t *testing.T) {
	needApache(t)
	dir := testutil.ShortDir(t)
	sock := dir + "/held.sock"
	testutil.ListenUnix(t, sock, 16)
	os.Chmod(sock, 0o777)
	in := apachetest.Start(t, fmt.Sprintf("ProxyPass \"/q/\" \"unix:%s|http://held.invalid/\" timeout=1\n", sock))
	if code, _ := get(t, in, "/q/"); code < 500 {
		t.Fatalf("setup: GET /q/ = %d, want a 5xx", code)
	}
	r := diagnose(t, in, Options{ProbeTimeout: time.Second})
	f := wantProblem(t, r, IDNotAccepting)
	mustContain(t, "what", f.What, "nothing accepts", sock, "queued")
	if f.Severity != SevError || f.LogCount == 0 {
		t.Errorf("Apache's timeout is not attached, or the finding is not an error: %+v", f)
	}
	if len(r.Find(IDPastError)) > 0 {
		t.Errorf("log lines filed as past errors: %+v", r.Find(IDPastError))
	}

	// Fixed: a server that answers on the socket.
	dir2 := testutil.ShortDir(t)
	sock2 := dir2 + "/held.sock"
	httpServer(t, dir2, sock2, "ok")
	in2 := apachetest.Start(t, fmt.Sprintf("ProxyPass \"/q/\" \"unix:%s|http://held.invalid/\" timeout=1\n", sock2))
	if code, _ := get(t, in2, "/q/"); code != 200 {
		t.Fatalf("fixed: GET /q/ = %d", code)
	}
	wantHealthy(t, diagnose(t, in2, Options{ProbeTimeout: time.Second}))
}
