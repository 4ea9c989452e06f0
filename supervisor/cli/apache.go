package cli

import (
	"flag"

	"github.com/sockvisor/sockvisor/supervisor/apache"
)

func init() {
	commands["apache-config"] = &command{
		summary: "print the Apache config sockvisor generates",
		help: `Prints exactly what 'run' writes to Apache's config (same input, same
bytes): the main file (worker settings, each socket behind a worker host of
its own, balancers for instances > 1, and the rules of backends without a
site), then the sites file with one <VirtualHost> per site address, then one
include file per site with render = "include", each after a line naming
where it goes. With apache.reload = "none" this is how to install the
config yourself. Changes nothing.`,
		flags: func(fs *flag.FlagSet) { configFlag(fs) },
		run: func(e *env, fs *flag.FlagSet, args []string) (int, error) {
			if len(args) > 0 {
				return ExitFailure, usageErr("takes no arguments")
			}
			cfg, code, err := loadConfig(fs)
			if err != nil {
				return code, err
			}
			e.stdout.Write(apache.Render(cfg))
			return ExitOK, nil
		},
	}
}
