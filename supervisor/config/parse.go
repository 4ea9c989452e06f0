package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

const defaultControlSocket = "/run/sockvisor.ctl"

// The file* types mirror the HCL file. Optional scalars are pointers so that
// "unset" and "set to the zero value" stay distinct; there is no ",remain"
// field anywhere, so an unknown key is always an error.
type fileConfig struct {
	SocketDir     *string `hcl:"socket_dir,optional"`
	SocketDirMode *string `hcl:"socket_dir_mode,optional"`
	SocketOwner   *string `hcl:"socket_owner,optional"`
	SocketGroup   *string `hcl:"socket_group,optional"`
	SELinuxType   *string `hcl:"selinux_type,optional"`
	ControlSocket *string `hcl:"control_socket,optional"`
	Backlog       *int    `hcl:"backlog,optional"`
	MetricsListen *string `hcl:"metrics_listen,optional"`
	LogLevel      *string `hcl:"log_level,optional"`
	LogFormat     *string `hcl:"log_format,optional"`

	Apache   *fileApache   `hcl:"apache,block"`
	Sites    []fileSite    `hcl:"site,block"`
	Backends []fileBackend `hcl:"backend,block"`
}

type fileApache struct {
	Flavor     *string  `hcl:"flavor,optional"`
	ConfigFile *string  `hcl:"config_file,optional"`
	Unit       *string  `hcl:"unit,optional"`
	Reload     *string  `hcl:"reload,optional"`
	Apachectl  []string `hcl:"apachectl,optional"`
}

type fileBackend struct {
	Name         string            `hcl:"name,label"`
	Preset       *string           `hcl:"preset,optional"`
	Command      []string          `hcl:"command,optional"`
	Protocol     *string           `hcl:"protocol,optional"`
	Websocket    *bool             `hcl:"websocket,optional"`
	Handoff      *string           `hcl:"handoff,optional"`
	Socket       *string           `hcl:"socket,optional"`
	SocketMode   *string           `hcl:"socket_mode,optional"`
	Mount        *string           `hcl:"mount,optional"`
	Instances    *int              `hcl:"instances,optional"`
	User         *string           `hcl:"user,optional"`
	Group        *string           `hcl:"group,optional"`
	Umask        *string           `hcl:"umask,optional"`
	Directory    *string           `hcl:"directory,optional"`
	Environment  map[string]string `hcl:"environment,optional"`
	Notify       *bool             `hcl:"notify,optional"`
	DocumentRoot *string           `hcl:"document_root,optional"`
	StopSignal   *string           `hcl:"stop_signal,optional"`
	StopTimeout  *string           `hcl:"stop_timeout,optional"`
	ReloadSignal *string           `hcl:"reload_signal,optional"`
	Start        *string           `hcl:"start,optional"`
	IdleTimeout  *string           `hcl:"idle_timeout,optional"`
	Ready        *fileReady        `hcl:"ready,block"`
	Restart      *fileRestart      `hcl:"restart,block"`
	Proxy        *fileProxy        `hcl:"proxy,block"`
	// Sites, static files and PHP: see site.go.
	Site               *string           `hcl:"site,optional"`
	Index              []string          `hcl:"index,optional"`
	Fallback           *string           `hcl:"fallback,optional"`
	Htaccess           *bool             `hcl:"htaccess,optional"`
	Alias              map[string]string `hcl:"alias,optional"`
	AliasWorldWritable *bool             `hcl:"alias_world_writable,optional"`
	FCGIProxyAll       *bool             `hcl:"fcgi_proxy_all,optional"`
	FPM                *fileFPM          `hcl:"fpm,block"`
}

type fileReady struct {
	Path    *string `hcl:"path,optional"`
	Timeout *string `hcl:"timeout,optional"`
}

type fileRestart struct {
	MinDelay *string `hcl:"min_delay,optional"`
	MaxDelay *string `hcl:"max_delay,optional"`
}

type fileProxy struct {
	Max          *int    `hcl:"max,optional"`
	Timeout      *string `hcl:"timeout,optional"`
	Retry        *string `hcl:"retry,optional"`
	Acquire      *string `hcl:"acquire,optional"`
	PreserveHost *bool   `hcl:"preserve_host,optional"`
	Keepalive    *bool   `hcl:"keepalive,optional"`
}

// Parse decodes and validates src; filename is used in messages only.
// src larger than MaxFileSize or nested deeper than MaxNesting is refused
// before HCL parses it.
func Parse(src []byte, filename string) (*Config, error) {
	return parseLimited(src, filename, defaultLimits)
}

func parseLimited(src []byte, filename string, lim limits) (cfg *Config, err error) {
	if ps := checkLimits(src, filename, lim); ps != nil {
		return nil, ps
	}
	// A reload must never kill the daemon: a panic anywhere in HCL or in
	// validation becomes a rejected config. (The limits above keep the
	// stack, whose overflow cannot be recovered, small.)
	defer func() {
		if r := recover(); r != nil {
			cfg, err = nil, Problems{{Pos: filename, Msg: fmt.Sprintf("sockvisor failed while parsing this file (%v); please report it, and simplify the file meanwhile", r)}}
		}
	}()
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fromDiagnostics(filename, diags)
	}
	var fc fileConfig
	pos, nonString, blocks := positions(f.Body)
	if diags := gohcl.DecodeBody(f.Body, nil, &fc); diags.HasErrors() {
		return nil, nameAttributes(fromDiagnostics(filename, diags), pos)
	}
	v := &validator{file: filename, pos: pos, nonString: nonString, blocks: blocks}
	cfg = v.build(&fc)
	v.literals(f.Body)
	v.nulBytes(&fc)
	if len(v.problems) > 0 {
		return nil, v.problems
	}
	return cfg, nil
}

func fromDiagnostics(filename string, diags hcl.Diagnostics) Problems {
	var ps Problems
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		pos := filename
		if d.Subject != nil {
			pos = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		ps = append(ps, Problem{Pos: pos, Msg: msg})
	}
	return ps
}

// positions maps a key path ("socket_dir", "apache.reload",
// "backend.app.ready.timeout", or "backend.app" for the block itself) to
// "file:line:col", so validation errors can point at the offending line. Where
// a block repeats, the first occurrence wins; blocks lists every occurrence.
// nonString holds the attributes not written as a quoted string, so that
// modes like 0750 (a decimal number to HCL) can be refused.
func positions(body hcl.Body) (pos map[string]string, nonString map[string]bool, blocks map[string][]string) {
	pos, nonString, blocks = map[string]string{}, map[string]bool{}, map[string][]string{}
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return
	}
	var walk func(prefix string, b *hclsyntax.Body)
	walk = func(prefix string, b *hclsyntax.Body) {
		for name, a := range b.Attributes {
			if _, seen := pos[prefix+name]; !seen {
				pos[prefix+name] = rangePos(a.Expr.Range())
			}
			if _, isString := a.Expr.(*hclsyntax.TemplateExpr); !isString {
				nonString[prefix+name] = true
			}
		}
		for _, blk := range b.Blocks {
			key := prefix + blk.Type
			for _, l := range blk.Labels {
				key += "." + l
			}
			blocks[key] = append(blocks[key], rangePos(blk.DefRange()))
			if _, seen := pos[key]; !seen {
				pos[key] = rangePos(blk.DefRange())
				walk(key+".", blk.Body)
			}
		}
	}
	walk("", sb)
	return
}

// nameAttributes prefixes type errors, which HCL reports without the
// attribute's name, with the key found at the same position.
func nameAttributes(ps Problems, pos map[string]string) Problems {
	// HCL points inside the value, so match by line.
	byLine := map[string]string{}
	for k, p := range pos {
		byLine[stripCol(p)] = k
	}
	for i, p := range ps {
		if k, ok := byLine[stripCol(p.Pos)]; ok && strings.HasPrefix(p.Msg, "Unsuitable value") {
			ps[i].Msg = fmt.Sprintf("%s has the wrong type: %s", k, strings.TrimPrefix(p.Msg, "Unsuitable value type: Unsuitable value: "))
		}
	}
	return ps
}

func rangePos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// PeekControlSocket returns control_socket from the file at path even when
// the rest of the file is invalid, so `sockvisor reload` and `status` can still
// reach a daemon whose config the user just broke. It falls back to the default.
func PeekControlSocket(path string) string {
	const def = defaultControlSocket
	src, err := readConfigFile(path, defaultLimits)
	if err != nil || checkLimits(src, path, defaultLimits) != nil {
		return def
	}
	f, _ := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if f == nil {
		return def
	}
	content, _, _ := f.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "control_socket"}}})
	attr, ok := content.Attributes["control_socket"]
	if !ok {
		return def
	}
	var s string
	if diags := gohcl.DecodeExpression(attr.Expr, nil, &s); diags.HasErrors() || s == "" {
		return def
	}
	return s
}
