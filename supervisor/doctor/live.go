package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/control"
	"github.com/sockvisor/sockvisor/supervisor/daemon"
	"github.com/sockvisor/sockvisor/supervisor/probe"
	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// Finding IDs about sockvisor's own state.
const (
	// IDBackendDown: the backend is failed, backing off or stopped.
	IDBackendDown = "backend-down"
	// IDBackendNotReady: started but not (yet) past its readiness probe.
	IDBackendNotReady = "backend-not-ready"
	// IDNotAccepting: sockvisor says ready, but its accept queue grows.
	IDNotAccepting = "backend-not-accepting"
	// IDApacheApply: sockvisor's last Apache config apply failed.
	IDApacheApply = "apache-apply-failed"
)

// SockvisorInfo is what the running daemon said over its control socket.
type SockvisorInfo struct {
	Control string               `json:"control_socket"`
	Status  *daemon.StatusReport `json:"status,omitempty"`
}

// ownConnects is how many connections the doctor itself may have left in
// a socket's queue (as Apache's user, as root, the probe): a queue that
// grew by no more says nothing about the backend.
const ownConnects = 3

// statusTimeout bounds the GET /status call.
const statusTimeout = 10 * time.Second

// live reads the daemon's status (GET /status) and turns every backend that
// cannot serve, and a failed Apache apply, into findings. It runs after the
// targets were examined, so a second sock_diag sample shows whether a queue
// grows.
func (d *checkup) live(ctx context.Context) {
	path := d.opts.Control
	if path == "" && d.opts.Sockvisor != nil {
		path = d.opts.Sockvisor.ControlSocket
	}
	if path == "" {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	raw, err := control.NewClient(path).Status(cctx)
	if err != nil {
		if errors.Is(err, control.ErrNotRunning) && d.opts.Sockvisor != nil && len(d.opts.Sockvisor.Backends) > 0 {
			d.uncheck("sockvisor's live backend state: %v", err)
		} else if !errors.Is(err, control.ErrNotRunning) {
			d.uncheck("sockvisor's live backend state: %v", err)
		}
		return
	}
	var st daemon.StatusReport
	if err := json.Unmarshal(raw, &st); err != nil {
		d.uncheck("sockvisor's live backend state: decoding GET /status: %v", err)
		return
	}
	d.report.Sockvisor = &SockvisorInfo{Control: path, Status: &st}
	for _, b := range st.Backends {
		d.backendState(ctx, b, d.later)
	}
	d.applyState(st.LastApacheApply)
}

// queueNow is a socket's queue from the daemon's report, else sock_diag.
func queueNow(b daemon.BackendReport, path string, diag map[string]sockdiag.Stat) (q, backlog uint32, ok bool) {
	for _, s := range b.Queues {
		if s.Path == path && s.Backlog > 0 {
			return s.Queue, s.Backlog, true
		}
	}
	if st, found := diag[path]; found {
		return st.Queue, st.Backlog, true
	}
	return 0, 0, false
}

func (d *checkup) backendState(ctx context.Context, b daemon.BackendReport, later map[string]sockdiag.Stat) {
	socks := b.Sockets
	if len(socks) == 0 {
		for _, q := range b.Queues {
			socks = append(socks, q.Path)
		}
	}
	for i, sock := range socks {
		inst := instanceOf(b, i, sock)
		q, backlog, known := queueNow(b, sock, later)
		queue := "queue unknown"
		if known {
			queue = fmt.Sprintf("%d connection(s) queued, backlog %d", q, backlog)
		}
		ev := []string{fmt.Sprintf("sockvisor status: backend %q instance %d state %s, ready %v, restarts %d", b.Name, inst.Instance, inst.State, inst.Ready, inst.Restarts)}
		if e := inst.LastExit; e != nil {
			s := fmt.Sprintf("last exit: pid %d code %d", e.PID, e.Code)
			if e.Signal != "" {
				s += " (" + e.Signal + ")"
			}
			ev = append(ev, s+" at "+e.At.Local().Format(time.DateTime))
		}
		if inst.LastError != "" {
			ev = append(ev, "last error: "+inst.LastError)
		}
		if inst.NextStart != nil {
			ev = append(ev, "next start: "+inst.NextStart.Local().Format(time.DateTime))
		}
		if known {
			ev = append(ev, fmt.Sprintf("%s's accept queue (sock_diag): %s", sock, queue))
		}
		waiting := "connections to " + sock + " wait in its queue (" + queue + ") until Apache's timeout, then fail with 502/503"
		logs := fmt.Sprintf("journalctl -u sockvisor -g %q", b.Name)
		var f *Finding
		switch inst.State {
		case backend.StateIdle:
			// An on-demand backend with no process: a connection starts it.
		case backend.StateFailed, backend.StateBackoff, backend.StateStopped, backend.StateStopping:
			what := map[backend.State]string{
				backend.StateFailed:   "is failed (it keeps crashing; sockvisor retries every restart.max_delay)",
				backend.StateBackoff:  "is backing off after a crash: no process runs until its next start",
				backend.StateStopped:  "is stopped",
				backend.StateStopping: "is stopping",
			}[inst.State]
			f = &Finding{ID: IDBackendDown, Severity: SevError,
				What:     fmt.Sprintf("sockvisor backend %q %s; nothing accepts on its socket, so %s", b.Name, what, waiting),
				Evidence: ev,
				Fix:      fmt.Sprintf("find why it exits in its output (%s) or run its command by hand as its user; fix that, then `sockvisor restart %s`", logs, b.Name)}
		case backend.StateStarting:
			f = &Finding{ID: IDBackendNotReady, Severity: SevError,
				What:     fmt.Sprintf("sockvisor backend %q is starting and not ready yet (its readiness probe has not passed); %s", b.Name, waiting),
				Evidence: ev,
				Fix:      fmt.Sprintf("wait for it, or read its output (%s); if it never gets ready, check its ready settings (ready.path, ready.timeout) against what the app answers", logs)}
		default:
			if !inst.Ready {
				f = &Finding{ID: IDBackendNotReady, Severity: SevError,
					What:     fmt.Sprintf("sockvisor backend %q is %s but not ready; %s", b.Name, inst.State, waiting),
					Evidence: ev, Fix: fmt.Sprintf("read its output (%s), then `sockvisor restart %s`", logs, b.Name)}
				break
			}
			before, had := d.diag[sock]
			if known && backlog > 0 && q >= backlog {
				f = &Finding{ID: IDNotAccepting, Severity: SevError,
					What:     fmt.Sprintf("sockvisor backend %q is ready, but its accept queue is at the maximum backlog (%d of %d): it accepts nothing, and Apache threads block in connect() with no log line until it recovers", b.Name, q, backlog),
					Evidence: ev, Fix: backlogFix(nil) + fmt.Sprintf("; `sockvisor restart %s` frees the queue now", b.Name)}
			} else if known && had && q > before.Queue+ownConnects {
				f = &Finding{ID: IDNotAccepting, Severity: SevWarning,
					What:     fmt.Sprintf("sockvisor backend %q is ready, but its accept queue grew from %d to %d (backlog %d) while the doctor ran: it accepts more slowly than requests arrive", b.Name, before.Queue, q, backlog),
					Evidence: ev, Fix: backlogFix(nil) + fmt.Sprintf("; `sockvisor restart %s` if it is stuck", b.Name)}
			}
		}
		if f == nil {
			continue
		}
		if f.ID != IDNotAccepting {
			for _, l := range d.backendOutput(ctx, b.Name, 3) {
				f.Evidence = append(f.Evidence, "its output: "+l)
			}
		}
		ts := d.targetsFor(sock)
		if len(ts) == 0 {
			d.general(*f)
			continue
		}
		for _, t := range ts {
			d.addLive(t, *f, b.Name)
		}
	}
}

// addLive adds a finding from the daemon's state to t. It replaces the
// socket-level notes it explains (a queue filling, no protocol answer), and
// a full queue stays the one backlog-full finding, with the backend's state
// added to it.
func (d *checkup) addLive(t *Target, f Finding, name string) {
	if f.ID == IDNotAccepting && f.Severity == SevError {
		for i := range t.Findings {
			if e := &t.Findings[i]; e.ID == IDBacklogFull {
				e.What += fmt.Sprintf(", although sockvisor reports backend %q ready", name)
				e.Evidence = append(e.Evidence, f.Evidence...)
				e.Fix += fmt.Sprintf("; `sockvisor restart %s` frees the queue now", name)
				return
			}
		}
	}
	kept := t.Findings[:0]
	for _, e := range t.Findings {
		if e.ID != IDBacklogHigh && e.ID != IDProtocolUnknown {
			kept = append(kept, e)
		}
	}
	t.Findings = append(kept, f)
}

// instanceOf returns instance i of b (the one on sock), or b's summary.
func instanceOf(b daemon.BackendReport, i int, sock string) backend.InstanceStatus {
	for _, in := range b.Instances {
		if in.Socket == sock {
			return in
		}
	}
	if i < len(b.Instances) {
		return b.Instances[i]
	}
	return backend.InstanceStatus{Instance: i, Socket: sock, State: b.State, PID: b.PID, Ready: b.Ready,
		Restarts: b.Restarts, LastExit: b.LastExit, LastError: b.LastError}
}

func (d *checkup) targetsFor(sock string) []*Target {
	var out []*Target
	for _, t := range d.report.Targets {
		if t.Socket == sock {
			out = append(out, t)
		}
	}
	return out
}

// applyFixes say what to do after each failed step of an Apache apply.
var applyFixes = map[string]string{
	"integration": "install Apache, or name it in the sockvisor config's apache block (flavor, apachectl, config_file), then restart sockvisor",
	"modules":     "enable the module the error names (a2enmod NAME) and restart Apache (systemctl restart apache2), then `sockvisor reload`",
	"configtest":  "fix the line Apache's configtest names in the error (often a hand-written file next to sockvisor's, or a sockvisor setting such as mount), then `sockvisor reload`",
	"reload":      "make sure Apache runs and sockvisor may reload it (systemctl status apache2; apache.reload and apache.unit in the sockvisor config), then `sockvisor reload`",
	"apache-died": "Apache exited on the reload: read its error log for the reason (AH00015, AH00019), fix it, start Apache (systemctl start apache2), then `sockvisor reload`",
	"files":       "the error names the file sockvisor refuses to overwrite: move it away, or set apache.config_file to a file of sockvisor's own, then `sockvisor reload`",
	"other":       "fix the cause the error names, then `sockvisor reload`",
}

func (d *checkup) applyState(a *daemon.ApacheApply) {
	if a == nil || a.OK {
		return
	}
	ev := []string{"sockvisor status: last Apache apply failed at " + a.At.Local().Format(time.DateTime) + ": " + strings.ReplaceAll(a.Error, "\n", "; ")}
	if a.ConfigFile != "" {
		ev = append(ev, "sockvisor's Apache config file: "+a.ConfigFile)
	}
	fix := applyFixes[a.Step]
	if fix == "" {
		fix = applyFixes["other"]
	}
	// Only a reload that killed Apache can leave it down; the manager's
	// error says whether restarting it with the previous config worked.
	state := "so Apache still runs its previous config: backends added or moved since are not routed, and removed ones still are"
	if a.Step == "apache-died" && strings.Contains(a.Error, "Apache is down") {
		state = "and Apache did not start again with its previous config: every site it serves is down"
	}
	d.general(Finding{ID: IDApacheApply, Severity: SevError,
		What:     fmt.Sprintf("sockvisor's last Apache config apply failed (%s step), %s", a.Step, state),
		Evidence: ev, Fix: fix})
}

// applyFailed reports whether the daemon's last Apache apply failed.
func (d *checkup) applyFailed() bool {
	s := d.report.Sockvisor
	return s != nil && s.Status != nil && s.Status.LastApacheApply != nil && !s.Status.LastApacheApply.OK
}

// confirmNotAccepting makes a growing queue an error once Apache's log
// shows connect failures or timeouts for it.
func (d *checkup) confirmNotAccepting() {
	for _, t := range d.report.Targets {
		for i := range t.Findings {
			if f := &t.Findings[i]; f.ID == IDNotAccepting && f.LogCount > 0 {
				f.Severity = SevError
			}
		}
	}
}

// unaccepted flags sockets that take connections into their queue but never
// accept them: the connect worked, the probe got no answer, and the
// connections stay queued (a systemd socket unit whose service is down, a
// stopped or stuck server that still holds the socket). Apache's requests
// then hang until its Timeout. Sockets a finding already explains are
// skipped.
func (d *checkup) unaccepted() {
	if d.diag == nil || d.later == nil {
		return
	}
	seen := map[string]bool{}
	for _, t := range d.report.Targets {
		s := d.sockets[t.Socket]
		if s == nil || seen[t.Socket] || !s.liveKnown || s.liveErr != nil || (s.probed && s.kind != probe.KindUnknown) {
			continue
		}
		seen[t.Socket] = true
		if t.has(IDBackendDown, IDBackendNotReady, IDNotAccepting, IDBacklogFull, IDProtocolMismatch) {
			continue
		}
		before, after := d.diag[t.Socket], d.later[t.Socket]
		if after.Queue == 0 || after.Queue < before.Queue {
			continue
		}
		fix := fmt.Sprintf("find the process holding it (ss -xlp src %s) and restart it, or start the service meant to accept on it", t.Socket)
		if _, ok := d.owners[t.Socket]; ok {
			fix = "the process holding the socket does not accept: " + d.ownerHint(t.Socket) + "; if it is stuck, restart it"
		}
		for _, x := range d.targetsFor(t.Socket) {
			x.add(Finding{ID: IDNotAccepting, Severity: SevWarning,
				What: fmt.Sprintf("nothing accepts connections on %s: they wait in its queue (%d queued, backlog %d) and the doctor's own probe got no answer, so Apache's requests hang until its timeout, then fail with 502/504", t.Socket, after.Queue, after.Backlog),
				Evidence: []string{fmt.Sprintf("sock_diag: %d queued before the checks, %d after (backlog %d)", before.Queue, after.Queue, after.Backlog),
					"probe: " + s.kindEv},
				Fix: fix})
		}
	}
}

// sockvisorLog returns the end of sockvisor's own log, where every
// backend's output goes, and where it came from: Options.SockvisorLogs, or
// the journal of sockvisor.service. It is read once; nil when unavailable.
func (d *checkup) sockvisorLog(ctx context.Context) (string, []byte) {
	if d.svLogRead {
		return d.svLogSrc, d.svLog
	}
	d.svLogRead = true
	if d.opts.SockvisorLogs != nil {
		var all []byte
		for _, f := range d.opts.SockvisorLogs {
			b, err := tail(f, defaultLogTail)
			if err != nil {
				d.uncheck("sockvisor's log: %v", err)
				continue
			}
			all = append(all, b...)
		}
		d.svLogSrc, d.svLog = strings.Join(d.opts.SockvisorLogs, ", "), all
		return d.svLogSrc, d.svLog
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		return "", nil
	}
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(jctx, "journalctl", "-u", "sockvisor.service", "-n", "5000", "-o", "cat", "--no-pager").Output()
	if err != nil || len(out) == 0 {
		return "", nil
	}
	d.svLogSrc, d.svLog = "journalctl -u sockvisor", out
	return d.svLogSrc, d.svLog
}

var outputLineRe = regexp.MustCompile(`line="((?:[^"\\]|\\.)*)"`)

// backendOutput returns the last n lines a backend printed, from
// sockvisor's log ("sockvisor.backend.NAME: output: ... line=...").
func (d *checkup) backendOutput(ctx context.Context, name string, n int) []string {
	_, b := d.sockvisorLog(ctx)
	if b == nil {
		return nil
	}
	mark := "backend." + name + ": output:"
	markJSON := `"@module":"sockvisor.backend.` + name + `"`
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, mark) && !(strings.Contains(l, markJSON) && strings.Contains(l, `"output"`)) {
			continue
		}
		text := l
		if m := outputLineRe.FindStringSubmatch(l); m != nil {
			if u, err := strconv.Unquote(`"` + m[1] + `"`); err == nil {
				text = u
			} else {
				text = m[1]
			}
		}
		out = append(out, text)
		if len(out) > n {
			out = out[1:]
		}
	}
	return out
}
