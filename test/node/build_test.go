package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// builds is what the scenarios install: two builds of the .deb from the
// current tree, the second with a higher version (for the upgrade), and the
// load generator.
type builds struct {
	versions [2]string
	debs     [2]string
	loadgen  string
}

// repoRoot is the module root (two levels above this file).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// goTool finds the go command: PATH, else the toolchain that built the test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// hostRun runs a host command and returns its stdout; stderr is in the error.
func hostRun(dir string, env []string, name string, args ...string) (string, error) {
	out, errOut, err := testutil.HostCommand(dir, env, name, args...)
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out, nil
}

// baseVersion is the version `make package` would use (see the Makefile).
func baseVersion(root string) string {
	if v, err := hostRun(root, nil, "git", "describe", "--tags", "--exact-match"); err == nil {
		return strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(v), "v"), "-", "~")
	}
	count, err1 := hostRun(root, nil, "git", "rev-list", "--count", "HEAD")
	hash, err2 := hostRun(root, nil, "git", "rev-parse", "--short", "HEAD")
	if err1 != nil || err2 != nil {
		return "0.1.0~git0.local"
	}
	return "0.1.0~git" + strings.TrimSpace(count) + "." + strings.TrimSpace(hash)
}

// bootWhileBuilding boots the node while the packages and the load
// generator build on the host under dir; it returns once both are done.
func bootWhileBuilding(t *testing.T, dir string) (*Node, builds) {
	t.Helper()
	type built struct {
		b   builds
		err error
	}
	bch := make(chan built, 1)
	go func() {
		b, err := buildAll(dir)
		bch <- built{b, err}
	}()
	n := Boot(t)
	bt := <-bch
	if bt.err != nil {
		t.Fatalf("building the packages: %v", bt.err)
	}
	return n, bt.b
}

// buildAll builds both packages and the load generator under dir.
//
// Each package is built by packaging/package.sh (what `make package` runs)
// in a staging copy of the files nfpm.yaml packages, with its own
// bin/sockvisor: the repository's bin/ and dist/ are never written, so this
// cannot race `make package` or the packaging tests running meanwhile.
func buildAll(dir string) (builds, error) {
	root := repoRoot()
	gobin := goTool()
	env := []string{
		"PATH=" + filepath.Dir(gobin) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"CGO_ENABLED=0", "GOFLAGS=-buildvcs=false",
	}
	base := baseVersion(root)
	// dpkg orders "X+1" after "X" (and so does rpm).
	b := builds{versions: [2]string{base, base + "+1"}}
	epoch, err := hostRun(root, nil, "git", "log", "-1", "--format=%ct")
	if err != nil {
		epoch = fmt.Sprint(time.Now().Unix())
	}
	env = append(env, "SOURCE_DATE_EPOCH="+strings.TrimSpace(epoch))

	// nfpm at the version `make package` pins, built once instead of four
	// `go run`s.
	nfpm, err := installNfpm(root, dir, gobin, env)
	if err != nil {
		return b, err
	}
	env = append(env, "NFPM="+nfpm)

	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, v := range b.versions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.debs[i], errs[i] = buildDeb(root, filepath.Join(dir, fmt.Sprintf("stage%d", i)), v, gobin, env)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.loadgen = filepath.Join(dir, "loadgen")
		_, errs[2] = hostRun(root, env, gobin, "build", "-o", b.loadgen, "./test/node/loadgen")
	}()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

var nfpmPkg = regexp.MustCompile(`github\.com/goreleaser/nfpm/v2/cmd/nfpm@v[0-9][0-9A-Za-z.+-]*`)

// installNfpm builds the nfpm the Makefile names into dir/nfpm-bin.
func installNfpm(root, dir, gobin string, env []string) (string, error) {
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		return "", err
	}
	pkg := nfpmPkg.FindString(string(mk))
	if pkg == "" {
		return "", fmt.Errorf("no github.com/goreleaser/nfpm/v2/cmd/nfpm@VERSION in the Makefile")
	}
	bin := filepath.Join(dir, "nfpm-bin")
	if _, err := hostRun(root, append(env, "GOBIN="+bin), gobin, "install", pkg); err != nil {
		return "", err
	}
	return filepath.Join(bin, "nfpm"), nil
}

// nfpmSrc matches the "src:" entries of nfpm.yaml.
var nfpmSrc = regexp.MustCompile(`(?m)^\s*(?:-\s*)?src:\s*(\S+)`)

func buildDeb(root, stage, version, gobin string, env []string) (string, error) {
	if err := os.MkdirAll(filepath.Join(stage, "bin"), 0o755); err != nil {
		return "", err
	}
	y, err := os.ReadFile(filepath.Join(root, "packaging", "nfpm.yaml"))
	if err != nil {
		return "", err
	}
	tops := map[string]bool{"packaging": true}
	for _, m := range nfpmSrc.FindAllStringSubmatch(string(y), -1) {
		top := strings.Split(m[1], "/")[0]
		if top != "" && top != "bin" && !strings.HasPrefix(top, "$") {
			tops[top] = true
		}
	}
	for top := range tops {
		if _, err := hostRun("", nil, "cp", "-a", filepath.Join(root, top), filepath.Join(stage, top)); err != nil {
			return "", err
		}
	}
	ldflags := "-s -w -X github.com/sockvisor/sockvisor/supervisor/cli.Version=" + version
	if _, err := hostRun(root, env, gobin, "build", "-trimpath", "-ldflags", ldflags,
		"-o", filepath.Join(stage, "bin", "sockvisor"), "./cmd/sockvisor"); err != nil {
		return "", err
	}
	dist := filepath.Join(stage, "dist")
	if _, err := hostRun(stage, append(env, "VERSION="+version, "DIST="+dist, "BIN=bin/sockvisor"),
		filepath.Join(stage, "packaging", "package.sh")); err != nil {
		return "", err
	}
	deb := filepath.Join(dist, "sockvisor_"+version+"_amd64.deb")
	if _, err := os.Stat(deb); err != nil {
		return "", fmt.Errorf("package.sh did not write %s: %w", deb, err)
	}
	return deb, nil
}
