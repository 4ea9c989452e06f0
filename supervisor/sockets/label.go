package sockets

import (
	"fmt"

	"github.com/opencontainers/selinux/go-selinux"
)

// selinuxEnabled reports whether SELinux is on. Our test hosts have no
// SELinux, so the labelling path below is untested there; keep it small.
func selinuxEnabled() bool { return selinux.GetEnabled() }

// applyLabel sets the SELinux type of the file at path (which may be a
// /proc/self/fd link), keeping user, role and level of its current context.
// It does nothing where SELinux is disabled or typ is empty.
func applyLabel(path, typ string) error {
	if typ == "" || !selinuxEnabled() {
		return nil
	}
	cur, err := selinux.FileLabel(path)
	if err != nil {
		return fmt.Errorf("read SELinux label: %w", err)
	}
	ctx, err := selinux.NewContext(cur)
	if err != nil {
		return fmt.Errorf("parse SELinux label %q: %w", cur, err)
	}
	if ctx["type"] == typ {
		return nil
	}
	ctx["type"] = typ
	if err := selinux.SetFileLabel(path, ctx.Get()); err != nil {
		return fmt.Errorf("set SELinux label %q: %w", ctx.Get(), err)
	}
	return nil
}
