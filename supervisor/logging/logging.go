// Package logging builds sockvisor's root hclog.Logger. Invariant: every
// component gets a Named child of the one logger built here; nothing in
// sockvisor writes through the standard library's global logger except via
// the redirect installed by New.
package logging

import (
	"fmt"
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
)

// New returns the root logger writing to w at level ("trace".."error"), as
// text or JSON, and routes the standard library logger through it.
func New(level, format string, w io.Writer) (hclog.Logger, error) {
	lvl := hclog.LevelFromString(level)
	if lvl == hclog.NoLevel {
		return nil, fmt.Errorf("log_level %q is not one of trace, debug, info, warn, error", level)
	}
	l := hclog.New(&hclog.LoggerOptions{
		Name:       "sockvisor",
		Level:      lvl,
		Output:     w,
		JSONFormat: format == "json",
		// journald adds its own timestamps; keep ours for plain terminals too.
		TimeFormat: "2006-01-02T15:04:05.000Z07:00",
	})
	log.SetFlags(0)
	log.SetOutput(l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}))
	return l, nil
}
