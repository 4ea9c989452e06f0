package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestCheckWarnsUnreachableCommandAndDocroot: a command its user cannot
// execute and a missing document_root pass validation (the file may come
// with the deploy) but check names each, with the fix.
func TestCheckWarnsUnreachableCommandAndDocroot(t *testing.T) {
	dir := testutil.ShortDir(t)
	private := filepath.Join(dir, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	public := filepath.Join(dir, "public")
	if err := os.Mkdir(public, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{private, public} {
		if err := os.WriteFile(filepath.Join(d, "server"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := func(cmdDir, docroot string) string {
		return writeConfig(t, dir, fmt.Sprintf(`socket_dir = %q
control_socket = %q
backend "app" {
  command = [%q]
  user    = "nobody"
  mount   = ""
}
backend "php" {
  preset        = "php-fpm"
  command       = [%q]
  user          = "root"
  mount         = "/php/"
  document_root = %q
}
`, filepath.Join(dir, "s"), filepath.Join(dir, "ctl"), filepath.Join(cmdDir, "server"), filepath.Join(public, "server"), docroot))
	}

	code, out, errOut := run("check", "--config", conf(private, filepath.Join(dir, "missing")))
	if code != ExitOK {
		t.Fatalf("check exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		`backend "app" runs as nobody`, "cannot execute " + filepath.Join(private, "server"), "directory " + private + " (mode 0700",
		`backend "php"'s document_root ` + filepath.Join(dir, "missing") + " is not an existing directory",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	_, out, _ = run("check", "--config", conf(public, public))
	if strings.Contains(out, "cannot execute") || strings.Contains(out, "not an existing directory") {
		t.Errorf("check warns about a reachable command or an existing document_root:\n%s", out)
	}
}
