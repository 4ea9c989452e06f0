package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// This file holds the checks for values that parse but can never work:
// bare literals where a string belongs, NUL bytes, modes that lock Apache
// out, and a control_socket that collides with socket_dir.

// seTypeRe is an SELinux type name: selinux_type is applied as the type
// field of a context, so it must be one identifier.
var seTypeRe = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// modeKeys are the string attributes that v.mode already refuses when not
// quoted; literals reports the others.
var modeKeys = map[string]bool{"socket_dir_mode": true, "socket_mode": true, "umask": true}

// stringAttrs names the attributes of a file* struct that decode into a
// string, which HCL fills from a bare true or 42 without a word.
func stringAttrs(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, kind, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		if kind == "label" || kind == "block" {
			continue
		}
		if ft := f.Type; ft.Kind() == reflect.String || (ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.String) {
			out[name] = true
		}
	}
	return out
}

var stringKeys = map[string]map[string]bool{
	"":        stringAttrs(reflect.TypeOf(fileConfig{})),
	"apache":  stringAttrs(reflect.TypeOf(fileApache{})),
	"backend": stringAttrs(reflect.TypeOf(fileBackend{})),
	"ready":   stringAttrs(reflect.TypeOf(fileReady{})),
	"restart": stringAttrs(reflect.TypeOf(fileRestart{})),
	"proxy":   stringAttrs(reflect.TypeOf(fileProxy{})),
}

// literals reports every string attribute written as a bare bool or
// number (selinux_type = true), which HCL would turn into "true" unasked.
func (v *validator) literals(body hcl.Body) {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return
	}
	var walk func(block string, b *hclsyntax.Body)
	walk = func(block string, b *hclsyntax.Body) {
		for name, a := range b.Attributes {
			lit, ok := a.Expr.(*hclsyntax.LiteralValueExpr)
			if !ok || !stringKeys[block][name] || modeKeys[name] || lit.Val.IsNull() {
				continue
			}
			what := "a " + lit.Val.Type().FriendlyName()
			v.problems = append(v.problems, Problem{Pos: rangePos(a.Expr.Range()),
				Msg: fmt.Sprintf("%s is %s, not a string; quote the value it should have, e.g. %s = %q", name, what, name, exampleFor(name))})
		}
		for _, blk := range b.Blocks {
			if _, known := stringKeys[blk.Type]; known && (block == "" || block == "backend") {
				walk(blk.Type, blk.Body)
			}
		}
	}
	walk("", sb)
}

// exampleFor gives a plausible value for a string key in messages.
func exampleFor(name string) string {
	switch name {
	case "selinux_type":
		return "httpd_var_run_t"
	case "socket_dir":
		return "/run/sockvisor"
	case "control_socket":
		return defaultControlSocket
	case "socket_owner", "user":
		return "www-data"
	case "socket_group", "group":
		return "www-data"
	case "stop_timeout", "timeout", "min_delay", "max_delay", "retry", "acquire":
		return "30s"
	case "idle_timeout":
		return "10m"
	case "start":
		return StartOnDemand
	case "stop_signal", "reload_signal":
		return "TERM"
	}
	return "..."
}

// noNUL reports a NUL byte in any of vals: execve(2) and environ end a
// string at NUL, so such an argument or variable can never reach the
// backend as written.
func (v *validator) noNUL(key, what string, vals ...string) {
	for i, s := range vals {
		if j := strings.IndexByte(s, 0); j >= 0 {
			item := what
			if len(vals) > 1 {
				item = fmt.Sprintf("%s %d", what, i+1)
			}
			v.at(key, "%s %q contains a NUL byte at offset %d, which execve cannot pass; remove it", item, s, j)
			return
		}
	}
}

// usableDirMode refuses a socket_dir_mode with which Apache can never reach
// the sockets: it connects as a member of socket_group, so the directory
// needs the search (x) bit for the group (or for others).
func (v *validator) usableDirMode(c *Config) {
	m := c.SocketDirMode
	if v.badMode["socket_dir_mode"] {
		return
	}
	if m&0o011 == 0 {
		v.at("socket_dir_mode", "socket_dir_mode %s has no search (x) bit for group %s, so Apache could never reach the sockets inside; use \"2750\" (or \"2770\" if a backend binds its own socket)", m, c.SocketGroup)
	}
	if m&0o4000 != 0 {
		v.at("socket_dir_mode", "socket_dir_mode %s sets the setuid bit, which means nothing on a directory; use \"2750\"", m)
	}
}

// usableSocketMode refuses a socket_mode with which nobody could connect:
// connect(2) needs write permission on the socket file, and Apache
// connects as a member of socket_group.
func (v *validator) usableSocketMode(c *Config, b *Backend) {
	key := "backend." + b.Name + ".socket_mode"
	m := b.SocketMode
	switch {
	case v.badMode[key]:
	case m&0o222 == 0:
		v.at(key, "socket_mode %s gives nobody write permission, which connect(2) needs, so only root could reach backend %q; use \"0660\"", m, b.Name)
	case b.Mount != "" && m&0o022 == 0:
		v.at(key, "socket_mode %s gives group %s no write permission, which connect(2) needs, so Apache could never reach backend %q; use \"0660\"", m, c.SocketGroup, b.Name)
	}
}

// controlSocketOutside refuses a control_socket inside socket_dir, pointing
// at whichever of the two the file sets and suggesting a path that is
// really outside.
func (v *validator) controlSocketOutside(c *Config) {
	if !within(c.SocketDir, c.ControlSocket) {
		return
	}
	suggest := defaultControlSocket
	if within(c.SocketDir, suggest) {
		suggest = filepath.Clean(c.SocketDir) + ".ctl"
	}
	if _, set := v.pos["control_socket"]; set {
		v.at("control_socket", "control_socket %q is inside socket_dir %q, which sockvisor sweeps; put it outside, e.g. control_socket = %q", c.ControlSocket, c.SocketDir, suggest)
		return
	}
	v.at("socket_dir", "socket_dir %q contains the default control_socket %q, which sockvisor would sweep; choose another socket_dir or set control_socket = %q", c.SocketDir, c.ControlSocket, suggest)
}

// selinuxTypeValid refuses a selinux_type that cannot be a type name.
func (v *validator) selinuxTypeValid(c *Config) {
	if c.SELinuxType != "" && !seTypeRe.MatchString(c.SELinuxType) {
		v.at("selinux_type", "selinux_type %q is not an SELinux type name (letters, digits and _, like \"httpd_var_run_t\"); fix it, or set \"\" to apply no label", c.SELinuxType)
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// nulSpecific are the keys whose NUL bytes build reports with more detail.
var nulSpecific = map[string]bool{"command": true, "environment": true, "apachectl": true, "path": true}

// nulBytes reports a NUL byte in any other string value of the file: no
// path, user, signal, unit or address can hold one, and HCL accepts
// "\u0000" without complaint. A key that already has a problem is skipped.
func (v *validator) nulBytes(fc *fileConfig) {
	reported := map[string]bool{}
	for _, p := range v.problems {
		reported[p.Pos] = true
	}
	walkStrings("", reflect.ValueOf(fc).Elem(), func(key string, vals []string) {
		if nulSpecific[lastField(key)] || reported[v.pos[key]] {
			return
		}
		for _, s := range vals {
			if j := strings.IndexByte(s, 0); j >= 0 {
				v.at(key, "%s %q contains a NUL byte at offset %d, which no path, name or address can hold; remove it", lastField(key), s, j)
				return
			}
		}
	})
}

// walkStrings calls fn with the key path (as positions names it) and the
// string values of every string, list-of-string and map-of-string
// attribute set in the file* struct rv and its blocks.
func walkStrings(prefix string, rv reflect.Value, fn func(key string, vals []string)) {
	t := rv.Type()
	for i := 0; i < t.NumField(); i++ {
		name, kind, _ := strings.Cut(t.Field(i).Tag.Get("hcl"), ",")
		f := rv.Field(i)
		switch {
		case kind == "label":
		case kind == "block" && f.Kind() == reflect.Pointer:
			if !f.IsNil() {
				walkStrings(prefix+name+".", f.Elem(), fn)
			}
		case kind == "block" && f.Kind() == reflect.Slice:
			for j := 0; j < f.Len(); j++ {
				e := f.Index(j)
				walkStrings(prefix+name+"."+labelOf(e)+".", e, fn)
			}
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.String:
			if !f.IsNil() {
				fn(prefix+name, []string{f.Elem().String()})
			}
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			fn(prefix+name, f.Interface().([]string))
		case f.Kind() == reflect.Map && f.Type().Elem().Kind() == reflect.String:
			m := f.Interface().(map[string]string)
			vals := make([]string, 0, len(m))
			for _, k := range sortedKeys(m) {
				vals = append(vals, m[k])
			}
			fn(prefix+name, vals)
		}
	}
}

// labelOf returns the label of a block struct, "" if it has none.
func labelOf(rv reflect.Value) string {
	t := rv.Type()
	for i := 0; i < t.NumField(); i++ {
		if _, kind, _ := strings.Cut(t.Field(i).Tag.Get("hcl"), ","); kind == "label" {
			return rv.Field(i).String()
		}
	}
	return ""
}
