package shim

import (
	"sort"
	"strings"
)

// DefaultPath is the PATH a backend gets when sockvisor has none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Account names the user a backend runs as, for HOME, USER and LOGNAME.
type Account struct {
	Name string
	Home string
}

// inherited reports whether a variable of sockvisor's own environment may
// reach a backend. It is an allow-list: NOTIFY_SOCKET, LISTEN_* and
// WATCHDOG_* describe sockvisor's relation to systemd and must never leak.
func inherited(key string) bool {
	return key == "PATH" || key == "LANG" || key == "TZ" || strings.HasPrefix(key, "LC_")
}

// Environ builds a backend's environment: the allow-listed variables of
// parent (usually os.Environ()), HOME, USER and LOGNAME for acct, then
// extra (the backend's configured environment), which wins. The result is
// sorted so identical inputs give identical environments.
func Environ(parent []string, acct Account, extra map[string]string) []string {
	vars := map[string]string{"PATH": DefaultPath}
	for _, kv := range parent {
		k, v, ok := strings.Cut(kv, "=")
		if ok && inherited(k) {
			vars[k] = v
		}
	}
	if acct.Name != "" {
		vars["USER"], vars["LOGNAME"] = acct.Name, acct.Name
	}
	if acct.Home != "" {
		vars["HOME"] = acct.Home
	}
	for k, v := range extra {
		vars[k] = v
	}
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
