package apache

import (
	"strings"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// scriptNamePresets are the servers that take the mount from a SCRIPT_NAME
// request header. Gunicorn does (gunicorn/http/wsgi.py, 20.1): it sets
// SCRIPT_NAME from the header and PATH_INFO to the request path after it,
// and a request path that does not contain the header's value fails with
// IndexError. Their requests therefore keep the mount in the path.
var scriptNamePresets = map[string]bool{"gunicorn": true}

// keepsPrefix reports whether be's requests keep the mount in their path
// (and carry it in SCRIPT_NAME); every other backend sees the path below
// its mount.
func keepsPrefix(be *config.Backend) bool {
	return be.Protocol == "http" && scriptNamePresets[be.Preset] && be.Mount != "/"
}

// prefixHeaders are the RequestHeader lines that tell an http backend the
// client's scheme and the mount it is served under. Each header is set or
// removed, never passed through, so a client cannot forge it.
//
// mod_proxy_http adds X-Forwarded-For, X-Forwarded-Host and
// X-Forwarded-Server itself (ProxyAddHeaders On), but appends to whatever
// the client sent: "X-Forwarded-For: 6.6.6.6" arrived as
// "6.6.6.6, 127.0.0.1", and uvicorn and Werkzeug read the first entry.
// RequestHeader runs in the fixups, before mod_proxy_http builds the
// request, so unsetting them there leaves exactly Apache's values
// (measured). Behind a load balancer, mod_remoteip restores the client
// address Apache then sends.
func prefixHeaders(be *config.Backend) []string {
	out := []string{
		"RequestHeader unset X-Forwarded-For",
		"RequestHeader unset X-Forwarded-Host",
		"RequestHeader unset X-Forwarded-Server",
		`RequestHeader set X-Forwarded-Proto "expr=%{REQUEST_SCHEME}"`,
	}
	prefix := strings.TrimSuffix(be.Mount, "/")
	if prefix == "" {
		out = append(out, "RequestHeader unset X-Forwarded-Prefix")
	} else {
		// Werkzeug's ProxyFix (x_prefix), Spring, Traefik's convention.
		out = append(out, "RequestHeader set X-Forwarded-Prefix "+quote(prefix))
	}
	if keepsPrefix(be) {
		out = append(out, "RequestHeader set SCRIPT_NAME "+quote(prefix))
	} else {
		out = append(out, "RequestHeader unset SCRIPT_NAME")
	}
	return out
}

// quote puts s in double quotes as Apache reads them: inside quotes Apache
// unescapes only \", so a regular expression must not be Go-quoted (%q
// would double its backslashes). s never holds a double quote.
func quote(s string) string { return `"` + s + `"` }
