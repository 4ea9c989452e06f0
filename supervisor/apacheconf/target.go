package apacheconf

import (
	"strings"
)

// isUnix reports whether an Apache URL addresses a Unix socket; the
// prefix is case-insensitive.
func isUnix(s string) bool {
	return len(s) >= 5 && strings.EqualFold(s[:5], "unix:")
}

// SplitUnixURL splits "unix:/path|scheme://host/" into the socket path as
// Apache reads it and the URL after "|" ("" when there is no "|"). Like
// apr_uri_parse, "?" or "#" ends the path and %xx is not decoded;
// "unix:///path" equals "unix:/path".
func SplitUnixURL(raw string) (socket, url string) {
	if !isUnix(raw) {
		return "", ""
	}
	s := raw[5:]
	s, url, _ = strings.Cut(s, "|")
	if rest, ok := strings.CutPrefix(s, "//"); ok {
		// An authority part is ignored; the path starts at its first "/".
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			s = rest[i:]
		} else {
			s = ""
		}
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	return s, url
}

// defaultPorts are dropped from worker names, as Apache does.
var defaultPorts = map[string]string{"http": "80", "ws": "80", "https": "443", "wss": "443", "fcgi": "8000", "uwsgi": "3031", "ajp": "8009"}

// WorkerName parses the URL after "|" into its lowercased scheme, its host
// ("localhost" when empty) and Apache's worker name,
// scheme://host[:port]/path, which is what Apache shares workers by.
// For ProxyPassMatch (match), the name ends before the first "$".
func WorkerName(url string, match bool) (scheme, host, worker string) {
	if url == "" {
		return "", "", ""
	}
	if match {
		url, _, _ = strings.Cut(url, "$")
	}
	scheme, rest, ok := strings.Cut(url, ":")
	if !ok {
		return "", "", ""
	}
	scheme = strings.ToLower(scheme)
	rest = strings.TrimPrefix(rest, "//")
	hostport, path := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		hostport, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(hostport, '@'); i >= 0 {
		hostport = hostport[i+1:]
	}
	host, port := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host, port = hostport[:i], hostport[i+1:]
	}
	host = strings.ToLower(host)
	if host == "" {
		host = "localhost"
	}
	if port == defaultPorts[scheme] {
		port = ""
	}
	worker = scheme + "://" + host
	if port != "" {
		worker += ":" + port
	}
	return scheme, host, worker + path
}
