package cli

import (
	"flag"

	"github.com/sockvisor/sockvisor/supervisor/apache"
)

func init() {
	commands["apache-config"] = &command{
		summary: "print the Apache config sockvisor generates",
		help: `Prints exactly the bytes 'run' writes to Apache's config (same input, same
bytes): one ProxyPass per backend with a mount, each socket behind a worker
host of its own, balancers for instances > 1. Changes nothing.`,
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
