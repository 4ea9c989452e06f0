package doctor

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/opencontainers/selinux/go-selinux"
)

// httpdSocketTypes are the file types httpd_t may write sock_files of
// (Fedora policy; refpolicy's httpd_runtime_t is the new name of
// httpd_var_run_t).
var httpdSocketTypes = []string{"httpd_var_run_t", "httpd_runtime_t", "httpd_tmp_t", "httpd_tmpfs_t"}

// selinuxMode returns "disabled", "permissive" or "enforcing".
func selinuxMode() string {
	if !selinux.GetEnabled() {
		return "disabled"
	}
	if selinux.EnforceMode() == selinux.Enforcing {
		return "enforcing"
	}
	return "permissive"
}

// labelType returns the type field of an SELinux context
// ("system_u:object_r:httpd_var_run_t:s0" → "httpd_var_run_t").
func labelType(label string) string {
	f := strings.SplitN(label, ":", 4)
	if len(f) < 3 {
		return ""
	}
	return f[2]
}

// checkLabel compares a socket's label with the types Apache may connect
// through. It returns "" when the label is fine, else what is wrong.
func checkLabel(label string, expected []string) string {
	t := labelType(label)
	if t == "" {
		return fmt.Sprintf("the socket has no readable SELinux label (%q)", label)
	}
	for _, e := range expected {
		if t == e {
			return ""
		}
	}
	return fmt.Sprintf("the socket is labeled %s, but httpd_t may only write sockets of type %s", t, strings.Join(expected, " or "))
}

// labelFix is the persistent relabel for the socket's directory.
func labelFix(path, want string) string {
	dir := filepath.Dir(path)
	return fmt.Sprintf("semanage fcontext -a -t %s '%s(/.*)?' && restorecon -Rv %s", want, dir, dir)
}
