package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/sockvisor/sockvisor/internal/osuser"
)

// WriteJSON writes the report for automation.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("doctor: writing JSON: %w", err)
	}
	return nil
}

// WriteText writes the report for people: a header, one line per target
// with its verdict, then each finding with its evidence and fix.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	a := r.Apache
	groups := make([]string, 0, len(a.Identity.Groups))
	for _, g := range a.Identity.Groups {
		groups = append(groups, fmt.Sprintf("%s(%d)", osuser.GroupName(g), g))
	}
	inst := ""
	if a.Instance != "" {
		inst = " instance " + a.Instance + ","
	}
	ew.printf("Apache: %s %s (%d files), workers run as %s(%d) groups %s\n",
		inst, a.ConfigFile, a.Files, a.Identity.User, a.Identity.UID, strings.Join(groups, ","))
	if len(a.ErrorLogs) > 0 {
		ew.printf("Logs:    %s\n", strings.Join(a.ErrorLogs, ", "))
	}
	running := "not running"
	if a.PID > 0 {
		running = fmt.Sprintf("running, pid %d", a.PID)
	}
	ew.printf("Status:  %s; SELinux %s\n", running, r.SELinux)
	for _, u := range r.Unchecked {
		ew.printf("Not checked: %s\n", u)
	}
	for _, f := range r.General {
		ew.printf("\n")
		writeFinding(ew, f, "")
	}
	if len(r.Targets) == 0 {
		ew.printf("\nNo unix: targets in Apache's enabled config.\n")
	} else {
		ew.printf("\n")
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "VERDICT\tWHERE\tDIRECTIVE\tSOCKET\tSCHEME\tSPEAKS\n")
		for _, t := range r.Targets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(t.Verdict), t.Pos, describe(t), t.Socket, dash(t.Scheme), dash(t.Speaks))
		}
		tw.Flush()
	}
	for _, t := range r.Targets {
		if len(t.Findings) == 0 {
			continue
		}
		ew.printf("\n%s %s %s -> %s\n", strings.ToUpper(t.Verdict), t.Pos, describe(t), t.Socket)
		for _, f := range t.Findings {
			writeFinding(ew, f, "  ")
		}
	}
	errs, warns := 0, 0
	for _, f := range r.all() {
		switch f.Severity {
		case SevError:
			errs++
		case SevWarning:
			warns++
		}
	}
	if r.Healthy() {
		ew.printf("\nHealthy: %d target(s), no problems found.\n", len(r.Targets))
	} else {
		ew.printf("\nProblems found: %d error(s), %d warning(s) across %d target(s).\n", errs, warns, len(r.Targets))
	}
	return ew.err
}

func describe(t *Target) string {
	s := t.Directive
	switch {
	case t.Mount != "":
		s += " " + t.Mount
	case t.Balancer != "":
		s += " in " + t.Balancer
	}
	if t.Backend != "" {
		s += " [" + t.Backend + "]"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeFinding(ew *errWriter, f Finding, indent string) {
	ew.printf("%s[%s] %s: %s\n", indent, f.Severity, f.ID, f.What)
	for _, e := range f.Evidence {
		ew.printf("%s    evidence: %s\n", indent, e)
	}
	if f.LogCount > 0 {
		ew.printf("%s    apache logged %d such line(s), the last:\n", indent, f.LogCount)
		for _, l := range f.Log {
			ew.printf("%s      %s\n", indent, l)
		}
	}
	if f.Fix != "" {
		ew.printf("%s    fix: %s\n", indent, f.Fix)
	}
}

// errWriter keeps the first write error so rendering code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) {
	fmt.Fprintf(e, format, args...)
}
