package apache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/supervisor/apacheconf"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// DefaultCommandTimeout bounds each apachectl run.
const DefaultCommandTimeout = time.Minute

// Options configures a Manager. Layout is required.
type Options struct {
	Layout Layout
	// Reloader reloads Apache; nil means NoReload. The Manager owns it and
	// closes it if it is an io.Closer.
	Reloader Reloader
	Logger   hclog.Logger
	// CommandTimeout bounds each apachectl run; 0 means DefaultCommandTimeout.
	CommandTimeout time.Duration
	// Off is apache.reload = "none": Apply writes nothing, runs nothing
	// and reports no change. Layout and Reloader are then unused.
	Off bool
}

// Manager applies rendered configs to Apache, one at a time.
type Manager struct {
	opts Options
	log  hclog.Logger
	// render and modules are seams for fault injection in tests.
	render  func(*config.Config) []File
	modules func(ctx context.Context) (map[string]bool, error)

	// applyMu serialises Apply: one transaction at a time, and guards
	// offLogged.
	applyMu   sync.Mutex
	offLogged bool
}

// New builds the Manager the daemon uses: the layout detected for cfg and
// the reloader its apache.reload names.
func New(cfg *config.Config, log hclog.Logger) (*Manager, error) {
	if cfg.Apache.Reload == "none" {
		// Not even the layout: detecting it runs nothing, but an operator
		// who chose "none" may have no Apache on this machine at all.
		return NewManager(Options{Off: true, Logger: log}), nil
	}
	l, err := DetectLayout(cfg)
	if err != nil {
		return nil, err
	}
	r, err := NewReloader(cfg.Apache.Reload, l)
	if err != nil {
		return nil, err
	}
	return NewManager(Options{Layout: l, Reloader: r, Logger: log}), nil
}

// NewManager returns a Manager; Close releases its reloader.
func NewManager(o Options) *Manager {
	if o.Reloader == nil {
		o.Reloader = NoReload{}
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	o.CommandTimeout = orDefault(o.CommandTimeout, DefaultCommandTimeout)
	m := &Manager{
		opts:   o,
		log:    o.Logger.Named("apache"),
		render: RenderFiles,
	}
	m.modules = func(ctx context.Context) (map[string]bool, error) {
		return apacheconf.LoadedModules(ctx, o.Layout.Apachectl)
	}
	return m
}

// Layout returns the layout the Manager writes to.
func (m *Manager) Layout() Layout { return m.opts.Layout }

// Close closes the reloader.
func (m *Manager) Close() error {
	if c, ok := m.opts.Reloader.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Apply makes Apache run RenderFiles(cfg), now: check modules, write every
// file, enable, configtest, reload, verify; on any failure after the first
// write the previous files are back and Apply reports why. It reports
// changed = false, and touches nothing, when the files and links already
// match. If Apache is not running, the tested file stays for its next
// start and Apply returns changed = true with no error. Applies are
// serialised: one transaction at a time.
func (m *Manager) Apply(ctx context.Context, cfg *config.Config) (changed bool, err error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	if m.opts.Off {
		if !m.offLogged {
			m.offLogged = true
			m.log.Info("apache.reload is \"none\": sockvisor writes nothing of Apache's and runs no apachectl; install the output of \"sockvisor apache-config\" yourself")
		}
		return false, nil
	}

	targets, err := m.targets(cfg)
	if err != nil {
		return false, err
	}
	if !anyChange(targets) {
		return false, nil
	}

	if err := m.checkModules(ctx, RequiredModules(cfg)); err != nil {
		return false, err
	}

	// From here on, every failure puts the old state back.
	undo, err := writeTargets(targets)
	if err != nil {
		return false, errors.Join(err, undo())
	}

	if err := m.configTest(ctx); err != nil {
		return false, errors.Join(err, undo())
	}

	err = m.opts.Reloader.Reload(ctx)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotRunning):
		// The file passed configtest; Apache reads it when it starts.
		m.log.Warn("Apache is not running; the new config takes effect when it starts", "reason", err)
		return true, nil
	case errors.Is(err, ErrApacheDied):
		if uerr := undo(); uerr != nil {
			return false, fmt.Errorf("%w; restoring the previous config failed too: %w", err, uerr)
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.CommandTimeout)
		defer cancel()
		if serr := m.opts.Reloader.Start(sctx); serr != nil {
			return false, fmt.Errorf("%w; Apache is down: sockvisor restored the previous config but could not start Apache again (%w); fix what Apache's error log names, then start it (systemctl start %s)", err, serr, m.opts.Layout.unitName())
		}
		return false, fmt.Errorf("%w; sockvisor restored the previous config and started Apache again, which now runs it", err)
	default:
		// Whatever Apache runs now, it is not the new file: keep disk and
		// Apache in step.
		if uerr := undo(); uerr != nil {
			return false, fmt.Errorf("%w; restoring the previous config failed too: %w", err, uerr)
		}
		return false, fmt.Errorf("%w; the previous config was restored", err)
	}
}

// checkModules fails, naming the fix, when Apache lacks a needed module.
func (m *Manager) checkModules(ctx context.Context, need []string) error {
	if len(need) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.CommandTimeout)
	defer cancel()
	loaded, err := m.modules(ctx)
	if err != nil {
		return fmt.Errorf("listing Apache's loaded modules: %w", err)
	}
	var missing []string
	for _, mod := range need {
		if !loaded[mod] {
			missing = append(missing, mod)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	noun := "module " + missing[0] + " is"
	if len(missing) > 1 {
		noun = "modules " + strings.Join(missing, ", ") + " are"
	}
	return fmt.Errorf("%w: Apache %s not loaded, so sockvisor's config was not written; %s", ErrModuleMissing, noun, m.opts.Layout.enableCommand(missing))
}

// configTest runs `<apachectl> -t` on the config as now on disk.
func (m *Manager) configTest(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.CommandTimeout)
	defer cancel()
	out, err := runApache(ctx, m.opts.Layout.Apachectl, "-t")
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: Apache rejected the config, so the previous one was kept (see \"sockvisor apache-config\" for the generated lines): %s: %w", ErrConfigTest, apacheconf.Message([]byte(out), 6), err)
}
