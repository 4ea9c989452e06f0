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
var scriptNamePresets = map[config.Preset]bool{config.PresetGunicorn: true}

// keepsPrefix reports whether be's requests keep the mount in their path
// (and carry it in SCRIPT_NAME); every other backend sees the path below
// its mount.
func keepsPrefix(be *config.Backend) bool {
	return be.Protocol == config.ProtocolHTTP && scriptNamePresets[be.Preset] && be.Mount != "/"
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
	var out []string
	// Apache matches header names case-insensitively but takes "_" and
	// "-" as different characters, while Gunicorn, WSGI and CGI environ
	// fold both into "_": Gunicorn 20.1 merged "X_Forwarded_For: 6.6.6.6"
	// into HTTP_X_FORWARDED_FOR ahead of Apache's value. So every spelling
	// is unset, and the headers sockvisor sets are set in one of them. The
	// standard Forwarded header (RFC 7239) carries the same claims and is
	// never set by Apache, so it goes too.
	for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Server", "X-Forwarded-Proto", "X-Forwarded-Prefix", "Script-Name"} {
		for _, v := range spellings(h) {
			out = append(out, "RequestHeader unset "+v)
		}
	}
	out = append(out, "RequestHeader unset Forwarded",
		`RequestHeader set X-Forwarded-Proto "expr=%{REQUEST_SCHEME}"`)
	prefix := strings.TrimSuffix(be.Mount, "/")
	if prefix != "" {
		// Werkzeug's ProxyFix (x_prefix), Spring, Traefik's convention.
		out = append(out, "RequestHeader set X-Forwarded-Prefix "+quote(prefix))
	}
	if keepsPrefix(be) {
		out = append(out, "RequestHeader set SCRIPT_NAME "+quote(prefix))
	}
	return out
}

// spellings returns every way of writing header h with "-" or "_" between
// its words, h's own first.
func spellings(h string) []string {
	words := strings.Split(h, "-")
	out := []string{words[0]}
	for _, w := range words[1:] {
		var next []string
		for _, o := range out {
			next = append(next, o+"-"+w)
		}
		for _, o := range out {
			next = append(next, o+"_"+w)
		}
		out = next
	}
	return out
}

// quote puts s in double quotes as Apache reads them: inside quotes Apache
// unescapes only \", so a regular expression must not be Go-quoted (%q
// would double its backslashes). s never holds a double quote.
func quote(s string) string { return `"` + s + `"` }
