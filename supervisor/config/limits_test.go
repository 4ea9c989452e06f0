package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nestKind builds `x = PRE OPEN*n INNER CLOSE*n POST` for one kind of
// nesting HCL recurses on; the scanner counts depth(n) levels for it.
type nestKind struct {
	name                          string
	pre, open, inner, close, post string
	cost, extra                   int
}

var nestKinds = []nestKind{
	{name: "brackets", open: "[", inner: "1", close: "]", cost: 1},
	{name: "brackets around a string", open: "[", inner: `"x"`, close: "]", cost: 1, extra: 1},
	{name: "parentheses", open: "(", inner: "1", close: ")", cost: 1},
	{name: "objects", open: "{a=", inner: "1", close: "}", cost: 1},
	{name: "interpolations", open: `"${`, inner: "1", close: `}"`, cost: 2},
	{name: "unary operators", open: "!", inner: "true", cost: 1},
	{name: "negation", open: "- ", inner: "1", cost: 1},
	{name: "conditionals", open: "true ? 1 : ", inner: "1", cost: 1},
	{name: "binary operators", open: "1 + ", inner: "1", cost: 1},
	{name: "index chains", inner: "[1]", close: "[a]", cost: 1, extra: 1},
	{name: "template ifs", pre: `"`, open: "%{if true}", close: "%{endif}", post: `"`, cost: 1, extra: 2},
	{name: "heredoc interpolations", pre: "<<EOF\n", open: "${[", inner: "1", close: "]}", post: "\nEOF", cost: 2, extra: 1},
}

func (k nestKind) build(n int) string {
	return "x = " + k.pre + strings.Repeat(k.open, n) + k.inner + strings.Repeat(k.close, n) + k.post + "\n"
}

func (k nestKind) depth(n int) int { return k.cost*n + k.extra }

// Issue [K] item 2: 100,000 "[" made check overflow its stack at 1.1 GB.
// Every kind of nesting HCL recurses on is refused before parsing, at
// file:line:col, cheaply.
func TestNestingLimit(t *testing.T) {
	for _, k := range nestKinds {
		t.Run(k.name, func(t *testing.T) {
			src := k.build(100_000)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := Parse([]byte(src), "deep.hcl")
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "nest more than 100 levels") {
				t.Fatalf("Parse = %v; want the nesting limit", err)
			}
			if !regexp.MustCompile(`^deep\.hcl:[12]:\d+: `).MatchString(err.Error()) || strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("error %q: want one line at deep.hcl:LINE:COL", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 || took > 2*time.Second {
				t.Errorf("refusing took %s and %d bytes; want a cheap pre-scan", took, alloc)
			}
		})
	}
}

// Nesting that real configs use passes, and brackets in strings, comments
// and heredocs are not counted.
func TestNestingNotCounted(t *testing.T) {
	deep := strings.Repeat("[", 10_000)
	for _, src := range []string{
		"# " + deep + "\n",
		"// " + deep + "\n",
		"/* " + deep + " */\n",
		"x = \"" + deep + "\"\n",
		"x = \"\\${" + deep + "\"\n",
		"x = \"$${" + deep + "\"\n",
		"x = <<EOF\n" + deep + "\n  EOF\n",
		"x = <<-EOT\n  ${\"a\"}" + deep + "\nEOT\n",
		"x = [" + strings.Repeat("[1, 2], ", 1000) + "]\n",
		"x = {\n" + strings.Repeat("  a = 1 + 2 + 3\n", 1000) + "}\n",
		"x = [" + strings.Repeat("!true, ", 1000) + "]\n",
		"x = 1e-5 - 2\n",
		"x = foo-bar-baz\n",
		NestedOK(MaxNesting),
	} {
		if off, bad := nestingExceeds([]byte(src), MaxNesting); bad {
			t.Errorf("%.60q...: nesting limit reported at offset %d", src, off)
		}
	}
	// Just over the limit is refused, at the bracket that crosses it.
	src := "x = 1\ny = " + strings.Repeat("[", MaxNesting+1) + strings.Repeat("]", MaxNesting+1) + "\n"
	_, err := Parse([]byte(src), "t.hcl")
	if err == nil || !strings.HasPrefix(err.Error(), "t.hcl:2:105: ") {
		t.Errorf("Parse = %v; want the error at t.hcl:2:105", err)
	}
}

// NestedOK is a value nested exactly n deep.
func NestedOK(n int) string {
	return "x = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n"
}

func TestSizeLimit(t *testing.T) {
	src := "# " + strings.Repeat("x", MaxFileSize) + "\n"
	_, err := Parse([]byte(src), "big.hcl")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "longer than 4 MiB") || !strings.HasPrefix(err.Error(), "big.hcl:1:") {
		t.Fatalf("Parse = %v; want the size limit at big.hcl:1:COL", err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "big.hcl")
	if err := os.WriteFile(p, []byte(strings.Repeat("\n", MaxFileSize+10)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(p)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), p+":4194305:1: ") {
		t.Fatalf("Load = %v; want the size limit at the first line past 4 MiB", err)
	}
}

// --config on a FIFO hung forever, on /dev/zero it grew to 2.5 GB: only
// regular files are read, and the FIFO never blocks the open.
func TestLoadRefusesSpecialFiles(t *testing.T) {
	dir, err := os.MkdirTemp("", "sv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fifo := filepath.Join(dir, "fifo.hcl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{fifo: "named pipe (FIFO)", "/dev/zero": "character device", dir: "directory"} {
		done := make(chan error, 1)
		go func() { _, err := Load(path); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), kind) || !strings.Contains(err.Error(), path) {
				t.Errorf("Load(%s) = %v; want ErrNotRegular naming %s", path, err, kind)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Load(%s) blocked", path)
		}
		if got := PeekControlSocket(path); got != defaultControlSocket {
			t.Errorf("PeekControlSocket(%s) = %q", path, got)
		}
	}
}

// A flat list of 2,000,000 numbers fits in 4 MiB but took check to 1.5 GB;
// the token limit refuses it cheaply, while a config with 500 backends is
// far below it.
func TestTokenLimit(t *testing.T) {
	src := "x = [" + strings.Repeat("1,", 2_000_000) + "]\n"
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Parse([]byte(src), "flat.hcl")
	runtime.ReadMemStats(&after)
	if err == nil || !strings.HasPrefix(err.Error(), "flat.hcl:1:") || !strings.Contains(err.Error(), "more than 200000 tokens") {
		t.Fatalf("Parse = %v; want the token limit", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("refusing allocated %d bytes", alloc)
	}
	var b strings.Builder
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&b, "backend \"b%d\" {\n  preset = \"gunicorn\"\n  command = [\"/usr/bin/gunicorn\", \"-w\", \"2\", \"app:app\"]\n  mount = \"/b%d/\"\n  user = \"www-data\"\n  environment = { A = \"1\", B = \"2\" }\n  ready {\n    path = \"/health\"\n    timeout = \"10s\"\n  }\n}\n", i, i)
	}
	if off, what := scanLimits([]byte(b.String()), limits{nesting: MaxNesting, tokens: MaxTokens / 4}); what != withinLimits {
		t.Errorf("a 500-backend config hits a limit at offset %d (%d)", off, what)
	}
}
