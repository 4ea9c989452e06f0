package daemon

import (
	"context"
	"sort"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// ApacheFactory builds the Apache manager for a config; tests point it at a
// private Apache.
type ApacheFactory func(cfg *config.Config, log hclog.Logger) (*apache.Manager, error)

func defaultApache(cfg *config.Config, log hclog.Logger) (*apache.Manager, error) {
	return apache.New(cfg, log)
}

// StatusReport is what `sockvisor status --json` prints.
type StatusReport struct {
	// Phase is "starting" until every backend was started and Apache
	// configured, then "running", then "stopping".
	Phase           string          `json:"phase"`
	Backends        []BackendReport `json:"backends"`
	LastReloadError string          `json:"last_reload_error,omitempty"`
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
	procs := make([]*proc, 0, len(d.procs))
	for _, p := range d.procs {
		procs = append(procs, p)
	}
	socks := make(map[string]*sockets.Listener, len(d.socks))
	for k, v := range d.socks {
		socks[k] = v
	}
	r := &StatusReport{Phase: d.phase, LastReloadError: d.lastReloadErr}
	d.mu.Unlock()

	sort.Slice(procs, func(i, j int) bool { return procs[i].cfg.Name < procs[j].cfg.Name })
	for _, p := range procs {
		br := BackendReport{Status: p.p.Status()}
		for _, s := range p.cfg.Sockets {
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

// newProcess builds the supervisor of one backend of cfg (the generation
// it belongs to, which may not be in force yet) on its listeners.
func (d *Daemon) newProcess(cfg *config.Config, b *config.Backend, socks []backend.Socket) *backend.Backend {
	return backend.New(b, socks, backend.Options{
		Logger:     d.log.Named("backend"),
		Executable: d.opts.Executable,
		StateDir:   d.opts.StateDir,
		FixUp:      func(s config.Socket) error { return sockets.FixSocketFile(cfg, s) },
	})
}
