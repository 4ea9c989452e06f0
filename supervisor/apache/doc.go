// Package apache renders sockvisor's Apache config and applies it to the
// running Apache: write, enable, check modules, configtest, reload, verify.
//
// Invariants: the rendering is a pure function of the config (same input,
// same bytes); the only Apache files this package ever writes or removes are
// sockvisor's own config file and its enable link; and a config reaches the
// running Apache only after configtest passed, while any later failure puts
// the previous file back.
package apache
