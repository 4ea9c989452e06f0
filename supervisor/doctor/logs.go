package doctor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
)

const (
	defaultLogTail = 256 << 10
	maxLogFiles    = 16
	keepLogLines   = 3
)

// logLine is one Apache error-log line about a proxy failure.
type logLine struct {
	text   string
	code   string // AHnnnnn
	errno  string // "2" from "(2)No such file or directory"
	socket string // from AH02454
	host   string // worker host from the line, lowercased
	scheme string // from AH01144
	path   string // URL path from AH00898
}

var (
	ahRe     = regexp.MustCompile(`AH(\d{5})`)
	errnoRe  = regexp.MustCompile(`\] \((\d+)\)`)
	sockRe   = regexp.MustCompile(`Unix domain socket (\S+) \(([^):]*)`)
	hostRe2  = regexp.MustCompile(`(?:backend: |remote server |disabling worker for \(|connection for \()([^\s:()]+)`)
	schemeRe = regexp.MustCompile(`\(scheme '([^']+)'\)`)
	pathRe   = regexp.MustCompile(`returned by (\S+)`)
)

// explains maps AH codes (and errnos for AH02454) to the finding IDs that
// explain them, best first.
var explains = map[string][]string{
	"02454/2":   {IDSocketMissing, IDPrivateTmp},
	"02454/13":  {IDPermission, IDSELinuxLabel},
	"02454/22":  {IDPathTooLong},
	"02454/11":  {IDBacklogFull, IDNotAccepting, IDBackendDown, IDBackendNotReady},
	"02454/111": {IDStale, IDNotSocket, IDBackendDown, IDBackendNotReady, IDNotAccepting},
	"02454":     {IDConnectFailed},
	"01114":     {IDSocketMissing, IDPrivateTmp, IDStale, IDNotSocket, IDPermission, IDSELinuxLabel, IDPathTooLong, IDBackendDown, IDBackendNotReady, IDNotAccepting, IDBacklogFull, IDConnectFailed},
	// Timeouts: the connect was queued and nobody answered.
	"01102/70007": {IDBackendDown, IDBackendNotReady, IDNotAccepting, IDBacklogFull, IDBacklogHigh, IDPHPMaxChildren},
	"01075/70007": {IDBackendDown, IDBackendNotReady, IDNotAccepting, IDBacklogFull, IDBacklogHigh, IDPHPMaxChildren},
	"01071":       {IDPHPScriptUnknown, IDPHPLimitExt, IDPHPDocRoot},
	"01079":       {IDSocketMissing, IDPrivateTmp, IDStale, IDNotSocket, IDPermission, IDSELinuxLabel, IDPathTooLong, IDConnectFailed},
	"10101":       {IDSocketMissing, IDPrivateTmp, IDStale, IDNotSocket, IDPermission, IDSELinuxLabel, IDPathTooLong, IDConnectFailed},
	"01102":       {IDProtocolMismatch},
	"00898":       {IDProtocolMismatch, IDBackendDown, IDBackendNotReady, IDNotAccepting, IDBacklogFull, IDBacklogHigh},
	"01068":       {IDProtocolMismatch},
	// Broken pipe writing the request: the server closed first.
	"01074": {IDProtocolMismatch, IDFcgiDropped},
	"01067": {IDProtocolMismatch, IDFcgiDropped},
	"01075": {IDProtocolMismatch, IDFcgiDropped},
	"00959": {IDBalancerRetry, IDSocketMissing, IDStale, IDPermission},
	"01144": {IDModuleMissing},
	"01145": {IDSharedWorker},
	"01146": {IDSharedWorker},
	"01149": {IDSharedWorker},
	"01150": {IDSharedWorker},
	"00941": {IDBacklogFull, IDBacklogHigh},
}

func parseLogLine(s string) (logLine, bool) {
	m := ahRe.FindStringSubmatch(s)
	if m == nil {
		return logLine{}, false
	}
	l := logLine{text: s, code: m[1]}
	if _, ok := explains[l.code]; !ok {
		return logLine{}, false
	}
	if m := errnoRe.FindStringSubmatch(s); m != nil {
		l.errno = m[1]
	}
	if m := sockRe.FindStringSubmatch(s); m != nil {
		l.socket, l.host = m[1], strings.ToLower(m[2])
	} else if m := hostRe2.FindStringSubmatch(s); m != nil {
		l.host = strings.ToLower(m[1])
	}
	if m := schemeRe.FindStringSubmatch(s); m != nil {
		l.scheme = strings.ToLower(m[1])
	}
	if m := pathRe.FindStringSubmatch(s); m != nil {
		l.path = m[1]
	}
	return l, true
}

// tail returns the last n bytes of file, from the first whole line.
func tail(file string, n int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, n))
	if err != nil {
		return nil, err
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b, nil
}

// loadLogs reads the end of each of the instance's error logs once; php
// and errorLogs share the lines.
func (d *checkup) loadLogs() {
	n := d.opts.LogTail
	if n <= 0 {
		n = defaultLogTail
	}
	for i, file := range d.report.Apache.ErrorLogs {
		if i >= maxLogFiles {
			break
		}
		b, err := tail(file, n)
		if err != nil {
			d.uncheck("error log: %v", err)
			continue
		}
		for _, s := range strings.Split(string(b), "\n") {
			if s = strings.TrimSpace(s); s != "" {
				d.logs = append(d.logs, s)
				d.logTimes = append(d.logTimes, apacheLogTime(s))
			}
		}
	}
	d.claimed = map[int]bool{}
	// Lines logged before Apache last (re)loaded its config, or long ago,
	// say nothing about the config and backends running now.
	d.since = time.Now().Add(-recentLog)
	for i, s := range d.logs {
		if strings.Contains(s, "AH00489:") && d.logTimes[i].After(d.since) {
			d.since = d.logTimes[i]
		}
	}
}

// recentLog is how far back a log line about a PHP failure still counts as
// a problem now; older ones are past errors.
const recentLog = 30 * time.Minute

var logTimeRe = regexp.MustCompile(`^\[(\w{3} \w{3} \d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\]`)

// apacheLogTime reads the default ErrorLogFormat's timestamp, local time;
// zero when the line has another format.
func apacheLogTime(s string) time.Time {
	m := logTimeRe.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}
	}
	for _, layout := range []string{"Mon Jan 02 15:04:05.000000 2006", "Mon Jan 02 15:04:05 2006"} {
		if t, err := time.ParseInLocation(layout, m[1], time.Local); err == nil {
			return t
		}
	}
	return time.Time{}
}

// current reports whether log line i was written under the config and
// backends running now: after Apache's last start or reload, and recently.
// A line without a readable time counts as current.
func (d *checkup) current(i int) bool {
	t := d.logTimes[i]
	return t.IsZero() || !t.Before(d.since)
}

// errorLogs attaches every proxy failure line not claimed yet to the
// target and finding that explain it. A line about a target with no
// matching finding now becomes a past-error note.
func (d *checkup) errorLogs() {
	for i, s := range d.logs {
		if d.claimed[i] {
			continue
		}
		l, ok := parseLogLine(s)
		if !ok {
			continue
		}
		d.attach(l)
	}
}

func (d *checkup) attach(l logLine) {
	key := l.code
	if l.errno != "" {
		if _, ok := explains[key+"/"+l.errno]; ok {
			key += "/" + l.errno
		}
	}
	ids := explains[key]
	for _, t := range d.matchTargets(l, ids) {
		if !attachTo(t, ids, l.text) {
			pastError(t, l.text)
		}
	}
}

// matchTargets finds the targets a log line is about: by socket path, else
// by worker host, else by scheme or mount. Lines about FastCGI framing
// carry neither, so they go to fcgi targets with a protocol mismatch.
func (d *checkup) matchTargets(l logLine, ids []string) []*Target {
	var out []*Target
	for _, t := range d.report.Targets {
		switch {
		case l.socket != "":
			if t.Socket == l.socket || t.conf.Socket == l.socket {
				out = append(out, t)
			}
		case l.host != "":
			if t.conf.Host == l.host {
				out = append(out, t)
			}
		case l.scheme != "":
			if t.Scheme == l.scheme {
				out = append(out, t)
			}
		case l.path != "":
			if t.Mount != "" && strings.HasPrefix(l.path, t.Mount) {
				out = append(out, t)
			}
		case l.code == "01068" || l.code == "01067" || l.code == "01074" || l.code == "01075" || l.code == "01071":
			// FastCGI lines name no socket: they belong to the fcgi
			// targets that explain them.
			if t.Scheme == "fcgi" && t.has(ids...) {
				out = append(out, t)
			}
		}
	}
	// A host shared by several targets: prefer those the line explains.
	if len(out) > 1 && l.socket == "" {
		var best []*Target
		for _, t := range out {
			if t.has(ids...) {
				best = append(best, t)
			}
		}
		if len(best) > 0 {
			return best
		}
	}
	return out
}

// attachTo adds line to the first finding of t whose ID is in ids.
func attachTo(t *Target, ids []string, line string) bool {
	for _, id := range ids {
		for i := range t.Findings {
			f := &t.Findings[i]
			if f.ID == id {
				f.LogCount++
				f.Log = appendKeep(f.Log, line)
				return true
			}
		}
	}
	return false
}

func pastError(t *Target, line string) {
	for i := range t.Findings {
		if f := &t.Findings[i]; f.ID == IDPastError {
			f.LogCount++
			f.Log = appendKeep(f.Log, line)
			return
		}
	}
	t.add(Finding{ID: IDPastError, Severity: SevInfo,
		What: "Apache logged failures for this target recently, but their cause is not present now (fixed since, or intermittent)",
		Log:  []string{line}, LogCount: 1,
		Fix: fmt.Sprintf("if it recurs, run sockvisor doctor while it happens")})
}

func appendKeep(lines []string, l string) []string {
	lines = append(lines, l)
	if len(lines) > keepLogLines {
		lines = lines[len(lines)-keepLogLines:]
	}
	return lines
}
