// Package cli implements sockvisor's command line. Invariant: subcommands
// return an exit code and an error; only Main turns them into output and only
// cmd/sockvisor calls os.Exit, so deferred cleanup always runs. Exit codes:
// 0 ok, 1 invalid input or problems found, 2 usage error or could not run.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/shim"
)

// Exit codes, stable for scripts and RestartPreventExitStatus=.
const (
	ExitOK       = 0
	ExitProblems = 1
	ExitFailure  = 2
)

// Version is set at build time with -ldflags "-X .../cli.Version=...".
var Version = "dev"

// env carries what every command needs.
type env struct {
	stdout, stderr io.Writer
}

type command struct {
	summary string
	usage   string // arguments after the command name
	help    string // longer text for --help
	hidden  bool
	run     func(e *env, fs *flag.FlagSet, args []string) (int, error)
	flags   func(fs *flag.FlagSet)
}

var commands = map[string]*command{}

// errUsage marks an error as a usage error (exit 2, usage printed).
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usageErr(format string, args ...any) error { return errUsage{fmt.Sprintf(format, args...)} }

// Main runs sockvisor with args (without the program name).
func Main(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				printCommandHelp(stdout, args[1], c, newFlagSet(args[1], c))
				return ExitOK
			}
		}
		printUsage(stdout)
		if len(args) == 0 {
			return ExitFailure
		}
		return ExitOK
	}
	name := args[0]
	if name == shim.Arg {
		// Hidden: the backend supervisor re-executes sockvisor as the shim.
		return shim.Main(args[1:])
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "sockvisor: unknown command %q; run `sockvisor --help` for the list\n", name)
		return ExitFailure
	}
	fs := newFlagSet(name, c)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(stdout, name, c, fs)
			return ExitOK
		}
		fmt.Fprintf(stderr, "sockvisor %s: %v; run `sockvisor %s --help`\n", name, err, name)
		return ExitFailure
	}
	code, err := c.run(e, fs, fs.Args())
	if err != nil {
		var u errUsage
		if errors.As(err, &u) {
			fmt.Fprintf(stderr, "sockvisor %s: %s; run `sockvisor %s --help`\n", name, u.msg, name)
			return ExitFailure
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "sockvisor %s: %s\n", name, line)
		}
	}
	return code
}

func newFlagSet(name string, c *command) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	if c.flags != nil {
		c.flags(fs)
	}
	return fs
}

// visibleCommands lists the commands --help and the man page show, sorted.
func visibleCommands() []string {
	var names []string
	for n, c := range commands {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, `sockvisor %s: supervises app servers behind Apache over Unix domain sockets.

Usage: sockvisor COMMAND [flags] [args]

Commands:
`, Version)
	for _, n := range visibleCommands() {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, `
The config is read from --config FILE, else $%s, else %s.
Exit codes: 0 ok, 1 invalid input or problems found, 2 usage error or could not run.
Run 'sockvisor COMMAND --help' for a command's flags.
`, config.EnvPath, config.DefaultPath)
}

func printCommandHelp(w io.Writer, name string, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: sockvisor %s [flags]%s\n\n%s\n", name, c.usage, c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	var flags strings.Builder
	fs.SetOutput(&flags)
	fs.PrintDefaults()
	if flags.Len() > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", flags.String())
	}
}

// configFlag registers --config on fs.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "config file (default $"+config.EnvPath+", else "+config.DefaultPath+")")
}

// loadConfig loads the config named by --config, mapping errors to exit codes:
// an invalid file is 1, a missing or unreadable one is 2.
func loadConfig(fs *flag.FlagSet) (*config.Config, int, error) {
	path := config.Path(fs.Lookup("config").Value.String())
	cfg, err := config.Load(path)
	switch {
	case err == nil:
		return cfg, ExitOK, nil
	case errors.Is(err, config.ErrInvalid):
		return nil, ExitProblems, err
	default:
		return nil, ExitFailure, err
	}
}

func init() {
	commands["version"] = &command{
		summary: "print the version",
		run: func(e *env, fs *flag.FlagSet, args []string) (int, error) {
			if len(args) > 0 {
				return ExitFailure, usageErr("takes no arguments")
			}
			fmt.Fprintf(e.stdout, "sockvisor %s\n", Version)
			return ExitOK, nil
		},
	}
}
