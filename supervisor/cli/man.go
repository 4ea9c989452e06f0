package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

func init() {
	commands["man"] = &command{
		summary: "print the sockvisor(8) man page (roff), generated from --help",
		hidden:  true,
		run: func(e *env, fs *flag.FlagSet, args []string) (int, error) {
			writeMan(e.stdout)
			return ExitOK, nil
		},
	}
}

// writeMan renders the man page from the same texts --help prints, so the two
// cannot drift apart.
func writeMan(w io.Writer) {
	esc := func(s string) string {
		s = strings.ReplaceAll(s, `\`, `\e`)
		s = strings.ReplaceAll(s, "-", `\-`)
		// A line starting with . or ' would be a roff request.
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
				l = `\&` + l
			}
			out = append(out, l)
		}
		return strings.Join(out, "\n")
	}
	// SOURCE_DATE_EPOCH keeps packaged man pages reproducible.
	date := time.Now()
	if n, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		date = time.Unix(n, 0)
	}
	fmt.Fprintf(w, ".TH SOCKVISOR 8 %q \"sockvisor %s\" \"System Administration\"\n", date.UTC().Format("2006-01-02"), esc(Version))
	fmt.Fprintf(w, ".SH NAME\nsockvisor \\- supervise app servers behind Apache over Unix domain sockets\n")
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B sockvisor\n.I command\n[\\fIflags\\fR] [\\fIargs\\fR]\n")
	fmt.Fprintf(w, ".SH DESCRIPTION\n%s\n", esc(`sockvisor owns a socket directory, creates each backend's listening socket with
the owner, group, mode and SELinux label Apache needs, sweeps stale sockets,
starts the backends handing them the already-listening socket so restarts never
refuse a request, and renders, tests and reloads Apache's proxy config.`))
	fmt.Fprintf(w, ".SH COMMANDS\n")
	for _, n := range visibleCommands() {
		c := commands[n]
		fmt.Fprintf(w, ".TP\n.B sockvisor %s\\fR%s\n%s\n", esc(n), esc(c.usage), esc(c.summary))
		if c.help != "" {
			fmt.Fprintf(w, ".IP\n%s\n", esc(strings.TrimSpace(c.help)))
		}
		fs := newFlagSet(n, c)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(w, ".IP\n.B \\-\\-%s\n%s\n", esc(f.Name), esc(f.Usage))
		})
	}
	fmt.Fprintf(w, ".SH FILES\n.TP\n.I %s\nthe config (HCL); override with \\fB\\-\\-config\\fR or \\fB%s\\fR\n", config.DefaultPath, config.EnvPath)
	fmt.Fprintf(w, ".TP\n.I /run/sockvisor\nthe default socket directory\n.TP\n.I /run/sockvisor.ctl\nthe default control socket (root only)\n")
	fmt.Fprintf(w, ".SH EXIT STATUS\n0 ok, 1 invalid input or problems found, 2 usage error or could not run.\n")
	fmt.Fprintf(w, ".SH SEE ALSO\n.BR apache2 (8),\n.BR systemctl (1),\n.BR systemd.service (5)\n")
}
