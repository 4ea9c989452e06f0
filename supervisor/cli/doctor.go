package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/doctor"
	"github.com/sockvisor/sockvisor/supervisor/logging"
)

func init() {
	commands["doctor"] = &command{
		summary: "diagnose every unix: target in Apache's enabled config",
		help: `Diagnoses the Apache instance the config's apache block names (apachectl,
config_file, unit), else the running installed one, with that instance's own
config, envvars and error logs. Reads every unix: socket target in its
enabled config (ProxyPass, ProxyPassMatch, BalancerMember, <Proxy>,
SetHandler), whether sockvisor wrote it or not, and checks each one as Apache
would reach it: path limits, whether the socket exists and is one, every
directory on the way as Apache's run user, SELinux labels, a real connect
(refused, backlog full), the protocol the backend speaks against the scheme
Apache uses, worker sharing, SetHandler forms that leak PHP source, private
/tmp, missing modules. When sockvisor runs it asks the control socket for
each backend's state (failed, backing off, not ready, queue at its backlog)
and for the last Apache apply. For PHP-FPM: .php files Apache would serve as
text (requested for real), the fcgi:// document root, Primary script
unknown, limit_extensions, AH01067 on restarts, mod_php next to FPM,
pm.max_children reached. Recent error-log lines are attached to the finding
that explains them. Each finding comes with its evidence and the fix.
Without root it says what it could not check.
Exit 0 healthy, 1 problems found, 2 could not run.`,
		flags: func(fs *flag.FlagSet) {
			configFlag(fs)
			fs.Bool("json", false, "print the report as JSON")
		},
		run: runDoctor,
	}
}

func runDoctor(e *env, fs *flag.FlagSet, args []string) (int, error) {
	if len(args) > 0 {
		return ExitFailure, usageErr("takes no arguments")
	}
	log, _ := logging.New("warn", "text", e.stderr)
	opts := doctor.Options{Log: log.Named("doctor")}
	// The sockvisor config is optional here: the doctor also serves Apache
	// setups written by hand.
	cfg, _, err := loadConfig(fs)
	switch {
	case err == nil:
		// The doctor picks the Apache instance the config's apache block
		// names (apachectl, config_file or unit), not the flavor's default.
		opts.Sockvisor = cfg
	case errors.Is(err, config.ErrNotFound):
	default:
		fmt.Fprintf(e.stderr, "sockvisor doctor: ignoring the sockvisor config: %v\n", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := doctor.Run(ctx, opts)
	if err != nil {
		return ExitFailure, err
	}
	if fs.Lookup("json").Value.String() == "true" {
		r.WriteJSON(e.stdout)
	} else {
		r.WriteText(e.stdout)
	}
	return r.ExitCode(), nil
}
