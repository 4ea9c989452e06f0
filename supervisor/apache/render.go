package apache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// HostSuffix ends every host name sockvisor puts after "|" in a unix: URL.
// .invalid never resolves (RFC 2606), so a stray request cannot leave the box.
const HostSuffix = ".sockvisor.invalid"

// maxLabel keeps a backend's host label a valid DNS label, which also keeps
// "balancer://<label>.sockvisor.invalid" within Apache's 95-byte balancer
// name limit (measured on 2.4.71).
const maxLabel = 63

// header starts every file sockvisor writes; a file without it is not ours.
const header = "# sockvisor's Apache config"

// Render returns sockvisor's Apache config for cfg. Equal configs give equal
// bytes: nothing time- or environment-dependent goes in.
func Render(cfg *config.Config) []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	p(header+", generated from %s.", comment(cfg.File))
	p("# Do not edit: sockvisor rewrites this file whenever its config changes.")
	p("#")
	p("# This file is part of the global server config, so it applies to every")
	p("# virtual host. Apache tries these rules before a virtual host's own")
	p("# ProxyPass lines (ProxyPassInherit Off does not stop that); a virtual host")
	p("# overrides a path only with a ProxyPass inside its own <Location>.")
	p("#")
	p("# Every socket has a host name of its own under %s: Apache keys a", HostSuffix)
	p("# proxy worker by the URL after \"|\" only, so sockets sharing a host would")
	p("# share one worker and all their traffic would go to the first socket.")
	p("# ProxyPass rules match in order, so longer mounts come first.")
	if mods := RequiredModules(cfg); len(mods) > 0 {
		p("# Needs the modules: %s.", strings.Join(mods, ", "))
	}

	for _, be := range mounted(cfg) {
		p("")
		renderBackend(p, be)
	}
	for _, be := range cfg.Backends {
		if be.Mount == "" {
			p("")
			p("# Backend %q (%s) has no mount, so Apache does not proxy to it.", be.Name, comment(be.Pos))
		}
	}
	return b.Bytes()
}

// mounted returns the backends with a mount, longest mount first; ties go
// by mount, then name, so the order never depends on the config's order.
func mounted(cfg *config.Config) []*config.Backend {
	var out []*config.Backend
	for _, be := range cfg.Backends {
		if be.Mount != "" {
			out = append(out, be)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if len(a.Mount) != len(b.Mount) {
			return len(a.Mount) > len(b.Mount)
		}
		if a.Mount != b.Mount {
			return a.Mount < b.Mount
		}
		return a.Name < b.Name
	})
	return out
}

func renderBackend(p func(string, ...any), be *config.Backend) {
	n := len(be.Sockets)
	what := be.Protocol
	if be.Websocket {
		what += " with WebSocket"
	}
	inst := "1 instance"
	if n != 1 {
		inst = fmt.Sprintf("%d instances", n)
	}
	p("# Backend %q (%s): %s, %s, mounted at %s.", be.Name, comment(be.Pos), what, inst, be.Mount)
	if n == 0 {
		p("# It has no sockets, so nothing is proxied.")
		return
	}

	// A mount ending in "/" maps to "/" on the backend; one without maps to
	// "" so "/app" and "/app/x" work and "/application" stays unmatched.
	slash := ""
	if strings.HasSuffix(be.Mount, "/") {
		slash = "/"
	}
	// mod_proxy_fcgi puts the URL path into SCRIPT_FILENAME, which PHP-FPM
	// resolves: the document root goes between the host and the path.
	root := ""
	if be.Protocol == "fcgi" {
		root = strings.TrimSuffix(be.DocumentRoot, "/")
	}
	scheme := map[string]string{"http": "http", "fcgi": "fcgi", "uwsgi": "uwsgi"}[be.Protocol]
	params := workerParams(be)
	host := Host(be.Name)
	// ProxyPreserveHost matters only to mod_proxy_http; fcgi and uwsgi pass
	// the client's Host header as HTTP_HOST anyway.
	preserve := ""
	if be.Protocol == "http" {
		preserve = "Off"
		if be.Proxy.PreserveHost {
			preserve = "On"
		}
	}

	if n == 1 {
		url := scheme + "://" + host + root + slash
		if preserve != "" {
			// ProxyPreserveHost is per directory since 2.3.3; a <Proxy> section
			// on the backend's own host scopes it to this backend alone.
			p("<Proxy %q>", url)
			p("    ProxyPreserveHost %s", preserve)
			for _, l := range keepaliveLines(be) {
				p("    %s", l)
			}
			p("</Proxy>")
		}
		p("ProxyPass %q %q%s", be.Mount, "unix:"+be.Sockets[0].Path+"|"+url, params)
		if be.Protocol == "http" {
			p("ProxyPassReverse %q %q", be.Mount, url)
		}
		return
	}

	// Members carry no trailing slash: the balancer appends the request's
	// path to the member URL, and "/" would double it.
	balancer := "balancer://" + host
	p("<Proxy %q>", balancer)
	for _, s := range be.Sockets {
		p("    BalancerMember %q%s", "unix:"+s.Path+"|"+scheme+"://"+InstanceHost(be.Name, s.Instance), params)
	}
	if preserve != "" {
		p("    ProxyPreserveHost %s", preserve)
	}
	for _, l := range keepaliveLines(be) {
		p("    %s", l)
	}
	p("</Proxy>")
	p("ProxyPass %q %q", be.Mount, balancer+root+slash)
	if be.Protocol == "http" {
		for _, s := range be.Sockets {
			p("ProxyPassReverse %q %q", be.Mount, "http://"+InstanceHost(be.Name, s.Instance)+slash)
		}
	}
}

// workerParams renders the backend's proxy settings as worker parameters.
func workerParams(be *config.Backend) string {
	var ps []string
	if be.Proxy.Max > 0 {
		ps = append(ps, fmt.Sprintf("max=%d", be.Proxy.Max))
	}
	if be.Proxy.Acquire > 0 {
		// acquire is in milliseconds.
		ps = append(ps, fmt.Sprintf("acquire=%d", ceilDiv(be.Proxy.Acquire, time.Millisecond)))
	}
	// retry=0: a restarting backend must never lock a balancer member out
	// for Apache's default 60 s.
	if r := be.Proxy.Retry; r%time.Second == 0 {
		ps = append(ps, fmt.Sprintf("retry=%d", r/time.Second))
	} else {
		ps = append(ps, fmt.Sprintf("retry=%dms", ceilDiv(r, time.Millisecond)))
	}
	// Apache refuses a timeout under one second.
	t := ceilDiv(be.Proxy.Timeout, time.Second)
	if t < 1 {
		t = 1
	}
	ps = append(ps, fmt.Sprintf("timeout=%d", t))
	if be.Websocket {
		ps = append(ps, "upgrade=websocket")
	}
	return " " + strings.Join(ps, " ")
}

// comment makes s safe inside a "#" line: a newline in a file name must not
// end the comment, nor a trailing backslash continue it onto the next line.
func comment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return '?'
		}
		return r
	}, s)
}

func ceilDiv(d, unit time.Duration) int64 {
	return int64((d + unit - 1) / unit)
}

// Host returns the host name of a single-instance backend, and the name of
// its balancer when it has several instances.
func Host(backend string) string {
	return label(backend) + HostSuffix
}

// InstanceHost returns the host name of one instance of a balanced backend.
// Backend names contain no dot, so "1.app" can never equal another
// backend's host; "app-1" could.
func InstanceHost(backend string, instance int) string {
	return fmt.Sprintf("%d.%s", instance, Host(backend))
}

// label shortens names longer than a DNS label, keeping them unique with a
// hash of the full name.
func label(name string) string {
	if len(name) <= maxLabel {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:maxLabel-9] + "-" + hex.EncodeToString(sum[:4])
}

// RequiredModules lists the Apache modules the rendered config needs,
// sorted, as `apachectl -M` names them without "_module".
func RequiredModules(cfg *config.Config) []string {
	set := map[string]bool{}
	for _, be := range mounted(cfg) {
		if len(be.Sockets) == 0 {
			continue
		}
		set["proxy"] = true
		set["proxy_"+be.Protocol] = true
		for _, m := range keepaliveModules(be) {
			set[m] = true
		}
		if len(be.Sockets) > 1 {
			set["proxy_balancer"] = true
			set["lbmethod_byrequests"] = true // the default lbmethod
			set["slotmem_shm"] = true         // balancers keep their state in it
		}
	}
	out := make([]string, 0, len(set))
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
