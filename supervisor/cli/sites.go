package cli

import (
	"fmt"
	"net"
	"strings"
	"text/tabwriter"

	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// printSites writes check's table of sites and returns its notes.
func printSites(e *env, cfg *config.Config) []string {
	if len(cfg.Sites) == 0 {
		return nil
	}
	includeDir := "/etc/apache2/sockvisor-sites"
	if l, err := apache.DetectLayout(cfg); err == nil && l.IncludeDir != "" {
		includeDir = l.IncludeDir
	}
	fmt.Fprintln(e.stdout)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tALIASES\tHTTP\tHTTPS\tREDIRECT\tRENDER\tBACKENDS")
	var notes []string
	for _, s := range cfg.Sites {
		var bes []string
		for _, b := range cfg.Backends {
			if b.Site == s.Name {
				bes = append(bes, b.Name+"@"+b.Mount)
			}
		}
		https := "-"
		if s.TLS != nil {
			https = strings.Join(s.TLS.Listen, ",")
		}
		render := s.Render
		if s.Render == "include" {
			render = "include " + includeDir + "/" + s.Name + ".conf"
			notes = append(notes, fmt.Sprintf("note: site %q is rendered for inclusion: put \"Include %s/%s.conf\" inside your own <VirtualHost> for %s", s.Name, includeDir, s.Name, s.Name))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%s\n", s.Name, orDash(strings.Join(s.Aliases, ",")), orDash(strings.Join(s.Listen, ",")), https, s.RedirectHTTP, render, orDash(strings.Join(bes, " ")))
		if len(bes) == 0 && s.Render == "vhost" {
			notes = append(notes, fmt.Sprintf("note: site %q has no backend (set site = %q in one); its virtual host serves Apache's main DocumentRoot", s.Name, s.Name))
		}
		addrs := append([]string(nil), s.Listen...)
		if s.TLS != nil {
			addrs = append(addrs, s.TLS.Listen...)
		}
		for _, a := range addrs {
			if _, port, _ := net.SplitHostPort(a); port != "80" && port != "443" {
				notes = append(notes, fmt.Sprintf("note: site %q listens on %s: Apache needs \"Listen %s\" (e.g. in ports.conf); sockvisor writes no Listen lines, since Apache refuses a second Listen for one address (\"Cannot define multiple Listeners on the same IP:port\")", s.Name, a, strings.TrimPrefix(a, "*:")))
			}
		}
	}
	tw.Flush()
	return notes
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
