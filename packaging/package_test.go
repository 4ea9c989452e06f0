// Package packaging holds no Go code of its own: its test builds the .deb and
// .rpm with `make package` and checks what they contain, what lintian says,
// that the man page renders, that the unit verifies and that the SELinux
// module compiles.
//
// Invariant: the test builds into a temporary DIST, so it never touches the
// repository's dist/, and it uses the real `make build` binary.
package packaging

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// requireTools skips when a tool is missing, except in CI (CI set), where
// `make test` has installed them and a missing one is a failure.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		testutil.NeedBinary(t, tool)
	}
}

// run runs a command and returns its stdout; stderr is part of the error.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, errOut, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) (stdout, stderr string, err error) {
	return testutil.HostCommand(dir, env, name, args...)
}

// built is the result of one `make package`, shared by the subtests.
type built struct {
	repo, version, deb, rpm, root string // root: the .deb extracted
}

var (
	buildOnce sync.Once
	build     built
	buildErr  error
)

func packages(t *testing.T) built {
	t.Helper()
	requireTools(t, "make", "git", "gzip", "checkmodule", "semodule_package", "dpkg-deb")
	buildOnce.Do(func() { build, buildErr = makePackage() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return build
}

func makePackage() (built, error) {
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(file))
	dist, err := os.MkdirTemp("", "svpkg")
	if err != nil {
		return built{}, err
	}
	// Removed by TestMain: the result is shared by every test.
	distDirs = append(distDirs, dist)

	env := []string{"PATH=" + os.Getenv("PATH") + ":/usr/local/go/bin"}
	if out, errOut, err := runErr(repo, env, "make", "package", "DIST="+dist); err != nil {
		return built{}, fmt.Errorf("make package: %v\n%s%s", err, out, errOut)
	}
	out, _, err := runErr(repo, nil, filepath.Join(repo, "bin", "sockvisor"), "version")
	if err != nil {
		return built{}, fmt.Errorf("bin/sockvisor version: %v", err)
	}
	f := strings.Fields(out)
	if len(f) != 2 || f[0] != "sockvisor" {
		return built{}, fmt.Errorf("bin/sockvisor version printed %q, want \"sockvisor VERSION\"", out)
	}
	b := built{
		repo:    repo,
		version: f[1],
		deb:     filepath.Join(dist, "sockvisor_"+f[1]+"_amd64.deb"),
		rpm:     filepath.Join(dist, "sockvisor-"+f[1]+".x86_64.rpm"),
		root:    filepath.Join(dist, "root"),
	}
	ents, _ := os.ReadDir(dist)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	for _, p := range []string{b.deb, b.rpm} {
		if _, err := os.Stat(p); err != nil {
			return built{}, fmt.Errorf("make package did not write %s (dist has %v)", filepath.Base(p), names)
		}
	}
	if out, errOut, err := runErr("", nil, "dpkg-deb", "-x", b.deb, b.root); err != nil {
		return built{}, fmt.Errorf("dpkg-deb -x: %v\n%s%s", err, out, errOut)
	}
	return b, nil
}

var distDirs []string

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range distDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// debFiles lists the regular files and symlinks in the .deb, as absolute paths.
func debFiles(t *testing.T, b built) map[string]string {
	t.Helper()
	files := map[string]string{} // path -> mode string
	sc := bufio.NewScanner(strings.NewReader(run(t, "", nil, "dpkg-deb", "-c", b.deb)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		p := strings.TrimPrefix(f[5], ".")
		if strings.HasPrefix(f[0], "d") {
			p = strings.TrimSuffix(p, "/")
		}
		files[p] = f[0]
	}
	return files
}

// The files both packages install, apart from the per-distribution ones.
var commonFiles = []string{
	"/usr/bin/sockvisor",
	"/usr/lib/tmpfiles.d/sockvisor.conf",
	"/etc/sockvisor/sockvisor.hcl",
	"/usr/share/man/man8/sockvisor.8.gz",
	"/usr/share/doc/sockvisor/examples/sockvisor.hcl",
	"/usr/share/doc/sockvisor/examples/gunicorn.hcl",
	"/usr/share/doc/sockvisor/examples/uwsgi.hcl",
	"/usr/share/doc/sockvisor/examples/php-fpm.hcl",
	"/usr/share/doc/sockvisor/examples/apps/hello.py",
}

func TestDebContents(t *testing.T) {
	b := packages(t)
	files := debFiles(t, b)
	want := append([]string{
		"/lib/systemd/system/sockvisor.service",
		"/usr/share/doc/sockvisor/copyright",
		"/usr/share/doc/sockvisor/changelog.gz",
		"/usr/share/lintian/overrides/sockvisor",
		"/etc/apache2/conf-available",
		"/etc/apache2/conf-enabled",
	}, commonFiles...)
	for _, p := range want {
		if _, ok := files[p]; !ok {
			t.Errorf("deb lacks %s", p)
		}
	}
	if m := files["/usr/bin/sockvisor"]; m != "-rwxr-xr-x" {
		t.Errorf("/usr/bin/sockvisor has mode %s, want -rwxr-xr-x", m)
	}
	for p := range files {
		// The apache2 directories are shared with Apache's package;
		// sockvisor must never ship a file in them.
		if strings.HasPrefix(p, "/etc/apache2/") && !strings.HasSuffix(p, "conf-available") && !strings.HasSuffix(p, "conf-enabled") {
			t.Errorf("deb ships %s inside Apache's config", p)
		}
	}

	ctrl := t.TempDir()
	run(t, "", nil, "dpkg-deb", "-e", b.deb, ctrl)
	conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(conffiles)); got != "/etc/sockvisor/sockvisor.hcl" {
		t.Errorf("conffiles = %q, want only /etc/sockvisor/sockvisor.hcl", got)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join(ctrl, s)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("deb lacks maintainer script %s", s)
			continue
		}
		if st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
		run(t, "", nil, "sh", "-n", p)
	}
	scripts := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(ctrl, name))
		return string(b)
	}
	for script, wants := range map[string][]string{
		"postinst": {"systemd-tmpfiles --create /usr/lib/tmpfiles.d/sockvisor.conf", "deb-systemd-helper enable", "try-restart", "[ -d /run/systemd/system ]"},
		"prerm":    {"deb-systemd-invoke stop"},
		"postrm":   {"purge", "rm -rf /etc/sockvisor", "rm -rf /run/sockvisor", "rm -f \"$conf\"", "apache2_invoke disconf sockvisor"},
	} {
		for _, w := range wants {
			if !strings.Contains(scripts(script), w) {
				t.Errorf("%s lacks %q", script, w)
			}
		}
	}

	fields := run(t, "", nil, "dpkg-deb", "-f", b.deb, "Package", "Version", "Architecture", "Recommends")
	for _, w := range []string{"Package: sockvisor", "Version: " + b.version, "Architecture: amd64", "Recommends: apache2"} {
		if !strings.Contains(fields, w+"\n") {
			t.Errorf("control lacks %q:\n%s", w, fields)
		}
	}

	tmpfiles, err := os.ReadFile(filepath.Join(b.root, "usr/lib/tmpfiles.d/sockvisor.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^d /run/sockvisor 2750 root www-data -$`).Match(tmpfiles) {
		t.Errorf("deb tmpfiles.d entry is not 'd /run/sockvisor 2750 root www-data -':\n%s", tmpfiles)
	}
}

func TestLintian(t *testing.T) {
	requireTools(t, "lintian")
	b := packages(t)
	// Errors fail; warnings and below are reported (and would need an
	// override with a reason, shipped in the package, to be silenced).
	out, errOut, err := runErr("", nil, "lintian", "--pedantic", "--display-info", "--show-overrides", "--fail-on", "none", b.deb)
	if err != nil {
		t.Fatalf("lintian: %v\n%s", err, errOut)
	}
	// Overrides shipped in packaging/debian/lintian-overrides, each with
	// its reason there. A new one needs a reason and an entry here.
	overridden := map[string]bool{"statically-linked-binary": true}
	counts := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || len(f[0]) != 2 || f[0][1] != ':' {
			continue
		}
		counts[f[0][:1]]++
		switch f[0] {
		case "E:":
			t.Errorf("lintian: %s", line)
		case "O:":
			if !overridden[f[2]] {
				t.Errorf("lintian override %s is not in the test's list of justified overrides", f[2])
			}
		}
	}
	fmt.Fprintf(os.Stderr, "lintian %s: %d errors, %d warnings, %d info, %d pedantic, %d overridden\n%s",
		filepath.Base(b.deb), counts["E"], counts["W"], counts["I"], counts["P"], counts["O"], out)
}

func TestRPM(t *testing.T) {
	requireTools(t, "rpm", "rpm2cpio", "cpio")
	b := packages(t)
	q := func(args ...string) string {
		return run(t, "", nil, "rpm", append(append([]string{"-qp"}, args...), b.rpm)...)
	}
	if got, want := q("--qf", "%{NAME} %{VERSION} %{ARCH} %{LICENSE}"), "sockvisor "+b.version+" x86_64 Apache-2.0"; got != want {
		t.Errorf("rpm header = %q, want %q", got, want)
	}

	// Every file with its flags: c config, n noreplace, g ghost, l license.
	flags := map[string]string{}
	for _, line := range strings.Split(q("--qf", "[%{FILENAMES}\t%{FILEFLAGS:fflags}\n]"), "\n") {
		if p, f, ok := strings.Cut(line, "\t"); ok {
			flags[p] = f
		}
	}
	want := append([]string{
		"/usr/lib/systemd/system/sockvisor.service",
		"/usr/share/selinux/packages/sockvisor.pp",
		"/usr/share/licenses/sockvisor/LICENSE",
		"/etc/httpd/conf.d/sockvisor.conf",
	}, commonFiles...)
	for _, p := range want {
		if _, ok := flags[p]; !ok {
			t.Errorf("rpm lacks %s", p)
		}
	}
	for p, f := range map[string]string{
		"/etc/sockvisor/sockvisor.hcl":          "cn",
		"/etc/httpd/conf.d/sockvisor.conf":      "g",
		"/usr/share/licenses/sockvisor/LICENSE": "l",
	} {
		if flags[p] != f {
			t.Errorf("rpm file flags of %s = %q, want %q", p, flags[p], f)
		}
	}
	if _, ok := flags["/lib/systemd/system/sockvisor.service"]; ok {
		t.Errorf("rpm ships the unit at Debian's path; files: %v", keys(flags))
	}

	scripts := q("--scripts")
	for _, w := range []string{
		"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet",
		"systemd-tmpfiles --create /usr/lib/tmpfiles.d/sockvisor.conf",
		"semanage fcontext -a -t httpd_var_run_t",
		"restorecon -R /run/sockvisor",
		"semodule -X 200 -i",
		"selinuxenabled",
		"systemctl --no-reload preset sockvisor.service",
		"systemctl try-restart sockvisor.service",
		"systemctl --no-reload disable --now sockvisor.service",
		"semodule -X 200 -r sockvisor",
	} {
		if !strings.Contains(scripts, w) {
			t.Errorf("rpm scriptlets lack %q", w)
		}
	}
	if reqs := q("--requires"); !strings.Contains(reqs, "httpd-filesystem") {
		t.Errorf("rpm requires %q, want httpd-filesystem among them", reqs)
	}
	if recs := q("--recommends"); !strings.Contains(recs, "httpd") {
		t.Errorf("rpm recommends %q, want httpd", recs)
	}

	// The RHEL tmpfiles.d entry uses Apache's group there.
	cpio := run(t, "", nil, "sh", "-c", `rpm2cpio "$1" | cpio -i --quiet --to-stdout /usr/lib/tmpfiles.d/sockvisor.conf`, "sh", b.rpm)
	if !regexp.MustCompile(`(?m)^d /run/sockvisor 2750 root apache -$`).MatchString(cpio) {
		t.Errorf("rpm tmpfiles.d entry is not 'd /run/sockvisor 2750 root apache -':\n%s", cpio)
	}
}

func keys(m map[string]string) []string {
	var k []string
	for p := range m {
		k = append(k, p)
	}
	sort.Strings(k)
	return k
}

// TestManPage renders the packaged man page with warnings on and checks that
// it documents every command `sockvisor --help` lists.
func TestManPage(t *testing.T) {
	requireTools(t, "groff")
	b := packages(t)
	page := filepath.Join(b.root, "usr/share/man/man8/sockvisor.8.gz")
	out, errOut, err := runErr("", nil, "sh", "-c", `gzip -dc "$1" | groff -man -Tutf8 -ww -z`, "sh", page)
	if err != nil || errOut != "" || out != "" {
		t.Errorf("groff -man -ww: %v\n%s%s", err, out, errOut)
	}
	text := run(t, "", []string{"MANWIDTH=200"}, "sh", "-c", `gzip -dc "$1" | groff -man -Tutf8 -P-cbou`, "sh", page)
	text = strings.ReplaceAll(text, "‐", "-") // groff's hyphen

	help, helpErr, _ := runErr("", nil, filepath.Join(b.repo, "bin", "sockvisor"), "--help")
	commands := helpCommands(help + helpErr)
	if len(commands) == 0 {
		t.Fatalf("no commands found in sockvisor --help:\n%s%s", help, helpErr)
	}
	for _, c := range commands {
		if !strings.Contains(text, "sockvisor "+c) {
			t.Errorf("man page does not document %q", "sockvisor "+c)
		}
	}
	if !strings.Contains(text, b.version) {
		t.Errorf("man page does not name version %s", b.version)
	}
}

// helpCommands returns the command names listed under "Commands:".
func helpCommands(help string) []string {
	var cmds []string
	in := false
	for _, line := range strings.Split(help, "\n") {
		switch {
		case strings.TrimSpace(line) == "Commands:":
			in = true
		case in && strings.TrimSpace(line) == "":
			if len(cmds) > 0 {
				return cmds
			}
		case in && strings.HasPrefix(line, "  "):
			cmds = append(cmds, strings.Fields(line)[0])
		}
	}
	return cmds
}

// TestUnitVerifies runs systemd-analyze verify on the packaged unit (which
// needs no running systemd), pointing ExecStart= at the packaged binary and
// the man page lookup at the packaged page.
func TestUnitVerifies(t *testing.T) {
	requireTools(t, "systemd-analyze")
	b := packages(t)
	unit, err := os.ReadFile(filepath.Join(b.root, "lib/systemd/system/sockvisor.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Type=notify", "ExecReload=/usr/bin/sockvisor reload", "FileDescriptorStoreMax=512", "KillMode=process", "WatchdogSec="} {
		if !bytes.Contains(unit, []byte("\n"+w)) {
			t.Errorf("unit lacks %s", w)
		}
	}
	if regexp.MustCompile(`(?m)^RuntimeDirectory=`).Match(unit) {
		t.Errorf("unit sets RuntimeDirectory=: systemd would delete the sockets on stop")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "sockvisor.service")
	patched := bytes.ReplaceAll(unit, []byte("/usr/bin/sockvisor"), []byte(filepath.Join(b.root, "usr/bin/sockvisor")))
	if err := os.WriteFile(p, patched, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runErr(dir, []string{"MANPATH=" + filepath.Join(b.root, "usr/share/man")}, "systemd-analyze", "verify", p)
	if err != nil || strings.TrimSpace(out+errOut) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s%s", err, out, errOut)
	}
}

// TestSELinuxModule compiles the policy module from source, standalone, as
// package.sh does for the rpm.
func TestSELinuxModule(t *testing.T) {
	requireTools(t, "checkmodule", "semodule_package")
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "selinux")
	dir := t.TempDir()
	mod := filepath.Join(dir, "sockvisor.mod")
	pp := filepath.Join(dir, "sockvisor.pp")
	run(t, dir, nil, "checkmodule", "-M", "-m", "-c", "19", "-o", mod, filepath.Join(src, "sockvisor.te"))
	run(t, dir, nil, "semodule_package", "-o", pp, "-m", mod, "-f", filepath.Join(src, "sockvisor.fc"))
	if st, err := os.Stat(pp); err != nil || st.Size() == 0 {
		t.Fatalf("semodule_package wrote no module: %v", err)
	}
}
