package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/opencontainers/selinux/go-selinux"

	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/daemon"
)

func init() {
	commands["check"] = &command{
		summary: "validate the config and print the socket plan",
		help: `Loads the config exactly as 'run' does, with no side effects, and prints one
line per socket: path, length in bytes, owner, group, mode, SELinux label,
handoff, protocol and Apache mount; then one line per site (virtual host
names, addresses, TLS, how it is rendered and its backends). Exit 0 when
valid, 1 when invalid (each problem is printed as FILE:LINE:COL: message),
2 when the file is missing.

With --json it prints one JSON object on stdout instead, for provisioning
tools: "valid", "problems" (each with pos, file, line, col and message),
"required_modules" (the Apache modules the generated config needs, as
'apachectl -M' names them without "_module", the list 'apache-config' writes
in its header), "sockets" and "sites". The exit codes are the same.`,
		flags: func(fs *flag.FlagSet) {
			configFlag(fs)
			fs.Bool("json", false, "print the result as JSON")
		},
		run: runCheck,
	}
}

func runCheck(e *env, fs *flag.FlagSet, args []string) (int, error) {
	if len(args) > 0 {
		return ExitFailure, usageErr("takes no arguments")
	}
	cfg, code, err := loadConfig(fs)
	if err == nil {
		if perr := checkCommands(cfg); perr != nil {
			cfg, code, err = nil, ExitProblems, perr
		}
	}
	if fs.Lookup("json").Value.String() == "true" {
		path := config.Path(fs.Lookup("config").Value.String())
		return code, writeCheckJSON(e.stdout, checkReport(path, cfg, err))
	}
	if err != nil {
		return code, err
	}
	label := socketLabel(cfg)
	fmt.Fprintf(e.stdout, "%s: valid, %d backend(s), %d socket(s) in %s (%s %s:%s)\n\n",
		cfg.File, len(cfg.Backends), len(cfg.AllSockets()), cfg.SocketDir, cfg.SocketDirMode, cfg.SocketOwner, cfg.SocketGroup)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tSOCKET\tBYTES\tOWNER\tGROUP\tMODE\tLABEL\tHANDOFF\tPROTOCOL\tMOUNT")
	for _, b := range cfg.Backends {
		mount := b.Mount
		if mount == "" {
			mount = "(none)"
		}
		for _, s := range b.Sockets {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				b.Name, s.Path, len(s.Path), cfg.SocketOwner, cfg.SocketGroup, b.SocketMode, label, b.Handoff, b.Protocol, mount)
		}
	}
	tw.Flush()
	notes := append(checkNotes(cfg), printSites(e, cfg)...)
	if label == "-" {
		fmt.Fprintf(e.stdout, "\nSELinux is disabled here: no labels will be applied (selinux_type = %q where enabled).\n", cfg.SELinuxType)
	}
	for _, n := range notes {
		fmt.Fprintln(e.stdout, n)
	}
	fmt.Fprintf(e.stdout, "Path limits: %d bytes for a socket, %d for one Apache proxies to.\n", config.MaxSocketPath, config.MaxApachePath)
	return ExitOK, nil
}

// socketLabel is the SELinux type applied to the sockets, or "-" where
// SELinux is disabled.
func socketLabel(cfg *config.Config) string {
	if selinux.GetEnabled() {
		return cfg.SELinuxType
	}
	return "-"
}

// checkNotes are the warnings check prints about backends for a valid
// config (printSites adds those about sites).
func checkNotes(cfg *config.Config) []string {
	var notes []string
	for _, b := range cfg.Backends {
		if b.FCGIProxyAll {
			notes = append(notes, fmt.Sprintf("warning: backend %q has fcgi_proxy_all = true: every request under %s goes to FastCGI, past Apache's <Directory> and .htaccess rules (a denied directory's .php files run); remove it so Apache serves document_root and runs only existing .php files", b.Name, b.Mount))
		}
		if b.Handoff == config.HandoffSelf {
			notes = append(notes, fmt.Sprintf("note: backend %q binds its own socket (handoff = \"self\"): requests can fail while it restarts; use a handoff that inherits the socket to avoid that", b.Name))
		}
		notes = append(notes, accessNotes(b)...)
	}
	notes = append(notes, config.OnDemandNotes(cfg)...)
	// Against the running sockvisor, if any: a reload would refuse these.
	for _, w := range daemon.HandoffChanges(cfg, backend.DefaultStateDir) {
		notes = append(notes, "warning: "+w)
	}
	return notes
}

// checkJSON is what `check --json` prints. Its field names are an interface
// for provisioning tools (the Ansible role reads required_modules and
// problems): add fields, never rename them.
type checkJSON struct {
	File  string `json:"file"`
	Valid bool   `json:"valid"`
	// Error is set when the file could not be read at all (exit 2).
	Error    string         `json:"error,omitempty"`
	Problems []checkProblem `json:"problems"`
	// RequiredModules are the Apache modules apache.Render's output needs.
	RequiredModules []string      `json:"required_modules"`
	SocketDir       string        `json:"socket_dir,omitempty"`
	SocketDirMode   string        `json:"socket_dir_mode,omitempty"`
	SocketOwner     string        `json:"socket_owner,omitempty"`
	SocketGroup     string        `json:"socket_group,omitempty"`
	Backends        []string      `json:"backends"`
	Sockets         []checkSocket `json:"sockets"`
	Sites           []checkSite   `json:"sites"`
	Notes           []string      `json:"notes"`
	Limits          struct {
		Socket int `json:"socket"`
		Apache int `json:"apache"`
	} `json:"limits"`
}

type checkProblem struct {
	Pos     string `json:"pos"` // "file:line:col", or the file alone
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Col     int    `json:"col,omitempty"`
	Message string `json:"message"`
}

type checkSocket struct {
	Backend  string          `json:"backend"`
	Instance int             `json:"instance"`
	Path     string          `json:"path"`
	Bytes    int             `json:"bytes"`
	Owner    string          `json:"owner"`
	Group    string          `json:"group"`
	Mode     string          `json:"mode"`
	Label    string          `json:"label"` // "-" where SELinux is disabled
	Handoff  config.Handoff  `json:"handoff"`
	Protocol config.Protocol `json:"protocol"`
	Mount    string          `json:"mount"` // "" when Apache does not proxy to it
}

type checkSite struct {
	Name    string   `json:"name"`
	Aliases []string `json:"aliases"`
	Listen  []string `json:"listen"`
	// TLSListen is nil for a site without tls { }.
	TLSListen    []string `json:"tls_listen"`
	RedirectHTTP bool     `json:"redirect_http"`
	Render       string   `json:"render"`
	Backends     []string `json:"backends"`
}

// checkReport describes the result of loading path: cfg when it loaded,
// else err (config.Problems for an invalid file).
func checkReport(path string, cfg *config.Config, err error) checkJSON {
	r := checkJSON{File: path, Problems: []checkProblem{}, RequiredModules: []string{},
		Backends: []string{}, Sockets: []checkSocket{}, Sites: []checkSite{}, Notes: []string{}}
	r.Limits.Socket, r.Limits.Apache = config.MaxSocketPath, config.MaxApachePath
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				r.Problems = append(r.Problems, newCheckProblem(p))
			}
		} else {
			r.Error = err.Error()
		}
		return r
	}
	r.Valid = true
	r.File = cfg.File
	r.RequiredModules = append(r.RequiredModules, apache.RequiredModules(cfg)...)
	r.SocketDir, r.SocketDirMode = cfg.SocketDir, cfg.SocketDirMode.String()
	r.SocketOwner, r.SocketGroup = cfg.SocketOwner, cfg.SocketGroup
	label := socketLabel(cfg)
	for _, b := range cfg.Backends {
		r.Backends = append(r.Backends, b.Name)
		for _, s := range b.Sockets {
			r.Sockets = append(r.Sockets, checkSocket{
				Backend: b.Name, Instance: s.Instance, Path: s.Path, Bytes: len(s.Path),
				Owner: cfg.SocketOwner, Group: cfg.SocketGroup, Mode: b.SocketMode.String(), Label: label,
				Handoff: b.Handoff, Protocol: b.Protocol, Mount: b.Mount,
			})
		}
	}
	for _, s := range cfg.Sites {
		cs := checkSite{Name: s.Name, Aliases: nonNil(s.Aliases), Listen: nonNil(s.Listen),
			RedirectHTTP: s.RedirectHTTP, Render: s.Render, Backends: []string{}}
		if s.TLS != nil {
			cs.TLSListen = nonNil(s.TLS.Listen)
		}
		for _, b := range cfg.Backends {
			if b.Site == s.Name {
				cs.Backends = append(cs.Backends, b.Name)
			}
		}
		r.Sites = append(r.Sites, cs)
	}
	r.Notes = append(r.Notes, checkNotes(cfg)...)
	// printSites writes the site table and returns its notes; only the notes.
	r.Notes = append(r.Notes, printSites(&env{stdout: io.Discard, stderr: io.Discard}, cfg)...)
	return r
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// newCheckProblem splits a problem's "file:line:col" position. The file
// name may itself contain colons, so the numbers are taken from the end.
func newCheckProblem(p config.Problem) checkProblem {
	cp := checkProblem{Pos: p.Pos, File: p.Pos, Message: p.Msg}
	rest, col, ok1 := cutNumber(p.Pos)
	file, line, ok2 := cutNumber(rest)
	if ok1 && ok2 {
		cp.File, cp.Line, cp.Col = file, line, col
	}
	return cp
}

// cutNumber splits "prefix:N" into prefix and N.
func cutNumber(s string) (string, int, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 0, false
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil || n <= 0 {
		return s, 0, false
	}
	return s[:i], n, true
}

func writeCheckJSON(w io.Writer, r checkJSON) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

// checkCommands builds every backend's command line as run would, so what
// only starting the server would otherwise show (a uvicorn --port beside
// the inherited socket, say) is a problem at its backend's line.
func checkCommands(cfg *config.Config) error {
	var ps config.Problems
	for _, b := range cfg.Backends {
		if err := backend.CheckCommand(b); err != nil {
			// b.Pos is the block's "file:line"; a top-level block starts
			// in column 1.
			ps = append(ps, config.Problem{Pos: b.Pos + ":1", Msg: err.Error()})
		}
	}
	if ps == nil {
		return nil
	}
	return ps
}
