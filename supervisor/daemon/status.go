package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// StatusReport is what `sockvisor status --json` prints.
type StatusReport struct {
	// Phase is "starting" until every backend was started and Apache
	// configured, then "running", then "stopping".
	Phase string `json:"phase"`
	// ConfigFile is the absolute path of the config file this sockvisor
	// reads at a reload; clients refuse to reload on behalf of another.
	ConfigFile      string          `json:"config_file,omitempty"`
	Backends        []BackendReport `json:"backends"`
	LastReloadError string          `json:"last_reload_error,omitempty"`
	// LastApacheApply is the outcome of sockvisor's last attempt to apply
	// its Apache config; nil before the first attempt.
	LastApacheApply *ApacheApply `json:"last_apache_apply,omitempty"`
}

// ApacheApply is one attempt to apply the Apache config.
type ApacheApply struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Changed says the file was rewritten and Apache reloaded.
	Changed bool `json:"changed,omitempty"`
	// Step names what failed: "integration" (no Apache found), "modules",
	// "configtest", "reload", "apache-died", "files" or "other".
	Step string `json:"step,omitempty"`
	// Error is the reason, as the daemon logged it.
	Error string `json:"error,omitempty"`
	// ConfigFile is the file sockvisor renders, when known.
	ConfigFile string `json:"config_file,omitempty"`
}

// applyRecord keeps the last ApacheApply; its own lock, so recording never
// waits for the daemon's.
type applyRecord struct {
	mu   sync.Mutex
	last *ApacheApply
}

// record stores the outcome of an apply; file may be "".
func (r *applyRecord) record(file string, changed bool, err error) {
	a := &ApacheApply{At: time.Now().UTC(), OK: err == nil, Changed: changed, ConfigFile: file}
	if err != nil {
		a.Step, a.Error = applyStep(err), err.Error()
	}
	r.mu.Lock()
	r.last = a
	r.mu.Unlock()
}

func (r *applyRecord) get() *ApacheApply {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return nil
	}
	c := *r.last
	return &c
}

// note is the STATUS= suffix for a failed last apply, else "".
func (r *applyRecord) note() string {
	if a := r.get(); a != nil && !a.OK {
		return "; Apache config not applied (" + a.Step + " failed)"
	}
	return ""
}

// applyStep names the step of Apply that err comes from.
func applyStep(err error) string {
	switch {
	case errors.Is(err, apache.ErrNoApache):
		return "integration"
	case errors.Is(err, apache.ErrModuleMissing):
		return "modules"
	case errors.Is(err, apache.ErrConfigTest), strings.Contains(err.Error(), "AH00526"):
		// AH00526 is Apache's syntax error, also when -M reads the config.
		return "configtest"
	case errors.Is(err, apache.ErrApacheDied):
		return "apache-died"
	case errors.Is(err, apache.ErrReload):
		return "reload"
	case errors.Is(err, apache.ErrNotRegular), errors.Is(err, apache.ErrNotOurs), errors.Is(err, apache.ErrLinkConflict):
		return "files"
	}
	return "other"
}

// BackendReport is one backend's status plus its sockets' listen queues.
type BackendReport struct {
	backend.Status
	Queues []SocketQueue `json:"queues"`
}

// SocketQueue is a socket's accept queue as the kernel reports it (ss -xl).
type SocketQueue struct {
	Path    string `json:"path"`
	Queue   uint32 `json:"queue"`
	Backlog uint32 `json:"backlog"`
}

// Status implements control.Handler.
func (d *Daemon) Status(context.Context) (any, error) { return d.report(), nil }

func (d *Daemon) report() *StatusReport {
	d.mu.Lock()
	svs := make([]*supervised, 0, len(d.backends))
	for _, sv := range d.backends {
		svs = append(svs, sv)
	}
	for _, sv := range d.starting {
		if d.backends[sv.cfg.Name] == nil {
			svs = append(svs, sv)
		}
	}
	socks := make(map[string]*sockets.Listener, len(d.socks))
	for k, v := range d.socks {
		socks[k] = v
	}
	r := &StatusReport{Phase: d.phase, ConfigFile: absPath(d.cfg.File), LastReloadError: d.lastReloadErr}
	d.mu.Unlock()
	r.LastApacheApply = d.applied.get()

	sort.Slice(svs, func(i, j int) bool { return svs[i].cfg.Name < svs[j].cfg.Name })
	for _, sv := range svs {
		br := BackendReport{Status: sv.sup.Status()}
		for _, s := range sv.cfg.Sockets {
			q := SocketQueue{Path: s.Path}
			if l := socks[s.Name]; l != nil {
				if st, err := l.Diag(); err == nil {
					q.Queue, q.Backlog = st.Queue, st.Backlog
				}
			}
			br.Queues = append(br.Queues, q)
		}
		r.Backends = append(r.Backends, br)
	}
	return r
}

// absPath is path made absolute against sockvisor's working directory,
// which never changes, or path itself if that fails.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}
