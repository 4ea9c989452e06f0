package cli

import (
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/opencontainers/selinux/go-selinux"

	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

func init() {
	commands["check"] = &command{
		summary: "validate the config and print the socket plan",
		help: `Loads the config exactly as 'run' does, with no side effects, and prints one
line per socket: path, length in bytes, owner, group, mode, SELinux label,
handoff, protocol and Apache mount; then one line per site (virtual host
names, addresses, TLS, how it is rendered and its backends). Exit 0 when valid, 1 when invalid (each
problem is printed as FILE:LINE:COL: message).`,
		flags: func(fs *flag.FlagSet) { configFlag(fs) },
		run:   runCheck,
	}
}

func runCheck(e *env, fs *flag.FlagSet, args []string) (int, error) {
	if len(args) > 0 {
		return ExitFailure, usageErr("takes no arguments")
	}
	cfg, code, err := loadConfig(fs)
	if err != nil {
		return code, err
	}
	for _, b := range cfg.Backends {
		// What only starting the server would otherwise show (a uvicorn
		// --port beside the inherited socket, say).
		if err := backend.CheckCommand(b); err != nil {
			return ExitProblems, fmt.Errorf("%s: %w", b.Pos, err)
		}
	}
	label := "-"
	if selinux.GetEnabled() {
		label = cfg.SELinuxType
	}
	fmt.Fprintf(e.stdout, "%s: valid, %d backend(s), %d socket(s) in %s (%s %s:%s)\n\n",
		cfg.File, len(cfg.Backends), len(cfg.AllSockets()), cfg.SocketDir, cfg.SocketDirMode, cfg.SocketOwner, cfg.SocketGroup)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tSOCKET\tBYTES\tOWNER\tGROUP\tMODE\tLABEL\tHANDOFF\tPROTOCOL\tMOUNT")
	var notes []string
	for _, b := range cfg.Backends {
		mount := b.Mount
		if mount == "" {
			mount = "(none)"
		}
		for _, s := range b.Sockets {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				b.Name, s.Path, len(s.Path), cfg.SocketOwner, cfg.SocketGroup, b.SocketMode, label, b.Handoff, b.Protocol, mount)
		}
		if b.FCGIProxyAll {
			notes = append(notes, fmt.Sprintf("warning: backend %q has fcgi_proxy_all = true: every request under %s goes to FastCGI, past Apache's <Directory> and .htaccess rules (a denied directory's .php files run); remove it so Apache serves document_root and runs only existing .php files", b.Name, b.Mount))
		}
		if b.Handoff == "self" {
			notes = append(notes, fmt.Sprintf("note: backend %q binds its own socket (handoff = \"self\"): requests can fail while it restarts; use a handoff that inherits the socket to avoid that", b.Name))
		}
	}
	tw.Flush()
	notes = append(notes, printSites(e, cfg)...)
	if label == "-" {
		fmt.Fprintf(e.stdout, "\nSELinux is disabled here: no labels will be applied (selinux_type = %q where enabled).\n", cfg.SELinuxType)
	}
	for _, n := range notes {
		fmt.Fprintln(e.stdout, n)
	}
	fmt.Fprintf(e.stdout, "Path limits: %d bytes for a socket, %d for one Apache proxies to.\n", config.MaxSocketPath, config.MaxApachePath)
	return ExitOK, nil
}
