package config

import (
	"strings"
	"testing"
	"time"
)

func TestStartDefaultsEager(t *testing.T) {
	b := mustParse(t, "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n}\n").Backends[0]
	if b.Start != StartEager || b.OnDemand() || b.IdleTimeout != 0 {
		t.Fatalf("start %q idle_timeout %s, want eager and 0", b.Start, b.IdleTimeout)
	}
}

func TestStartOnDemand(t *testing.T) {
	b := mustParse(t, "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  start = \"on-demand\"\n}\n").Backends[0]
	if !b.OnDemand() || b.IdleTimeout != DefaultIdleTimeout {
		t.Fatalf("start %q idle_timeout %s, want on-demand and %s", b.Start, b.IdleTimeout, DefaultIdleTimeout)
	}
	b = mustParse(t, "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  start = \"on-demand\"\n  idle_timeout = \"0s\"\n}\n").Backends[0]
	if b.IdleTimeout != 0 {
		t.Fatalf("idle_timeout %s, want 0 (never stop)", b.IdleTimeout)
	}
	b = mustParse(t, "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  start = \"on-demand\"\n  idle_timeout = \"5s\"\n}\n").Backends[0]
	if b.IdleTimeout != 5*time.Second {
		t.Fatalf("idle_timeout %s, want 5s", b.IdleTimeout)
	}
}

func TestStartProblems(t *testing.T) {
	wantProblem(t, "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  start = \"lazy\"\n}\n", "4", `start "lazy" is not allowed`, "on-demand")
	wantProblem(t, "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  idle_timeout = \"5m\"\n}\n", "4", "idle_timeout only applies to start = \"on-demand\"")
	wantProblem(t, "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  start = \"on-demand\"\n  idle_timeout = \"soon\"\n}\n", "5", "not a duration")
	wantProblem(t, "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  start = \"on-demand\"\n  idle_timeout = \"-1s\"\n}\n", "5", "greater than zero")
}

func TestOnDemandNotes(t *testing.T) {
	src := "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  start = \"on-demand\"\n  ready {\n    timeout = \"90s\"\n  }\n}\n"
	notes := OnDemandNotes(mustParse(t, src))
	if len(notes) != 1 || !strings.Contains(notes[0], "proxy.timeout 1m0s") || !strings.HasPrefix(notes[0], "test.hcl:1") {
		t.Fatalf("notes = %q, want one warning at test.hcl:1 naming proxy.timeout", notes)
	}
	if n := OnDemandNotes(mustParse(t, strings.Replace(src, "on-demand", "eager", 1))); len(n) != 0 {
		t.Fatalf("eager backend got notes %q", n)
	}
}
