package apacheconf

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sockvisor/sockvisor/internal/procfs"
)

// Instance is one Apache server: its config root, its main config file,
// the command that addresses it and, when it runs, its main pid. Debian's
// setup-instance makes a second one in /etc/apache2-NAME, driven as
// `apache2 -d /etc/apache2-NAME` (apache2ctl-NAME, or apache2ctl with
// APACHE_CONFDIR), with its own envvars, logs and pid file.
type Instance struct {
	// Name is "" for the distribution's default instance and NAME for
	// Debian's /etc/apache2-NAME.
	Name       string `json:"name,omitempty"`
	ServerRoot string `json:"server_root"`
	ConfigFile string `json:"config_file"`
	// Apachectl is the argv prefix that runs -t, -M and DUMP_RUN_CFG
	// against exactly this instance.
	Apachectl []string `json:"apachectl"`
	// PID is the running main process, 0 when not found running.
	PID int `json:"pid,omitempty"`
	// Flavor and Unit are set on the instance Discover chooses. Flavor is
	// "debian" or "rhel": the hint's, else the one its root belongs to,
	// else the installed distribution's; "" when none is known. Unit is
	// the systemd unit that runs it: the hint's, else apache2@NAME.service
	// for a second Debian instance, else the flavor's (apache2.service,
	// httpd.service).
	Flavor string `json:"-"`
	Unit   string `json:"-"`
}

// fsRoot is where discovery looks for files: "/" but in tests, which
// build a fake one. The paths discovery returns are the real system's.
type fsRoot string

const osRoot fsRoot = "/"

func (r fsRoot) exists(p string) bool {
	_, err := os.Stat(filepath.Join(string(r), p))
	return err == nil
}

// debianInstancePrefix is where setup-instance puts a second instance.
const debianInstancePrefix = "/etc/apache2-"

// instanceName is NAME for /etc/apache2-NAME, else "".
func instanceName(root string) string {
	if n, ok := strings.CutPrefix(filepath.Clean(root), debianInstancePrefix); ok && !strings.Contains(n, "/") {
		return n
	}
	return ""
}

// FromCommand returns the instance an apachectl argv addresses, as that
// command would resolve it: apache2ctl-NAME means /etc/apache2-NAME (the
// script reads its own name), apache2ctl honours APACHE_CONFDIR from the
// environment, and the server binary its -d and -f flags (without -d, the
// distribution's root). PID is left 0.
func FromCommand(apachectl []string) Instance {
	return fromCommand(osRoot, apachectl)
}

func fromCommand(fs fsRoot, apachectl []string) Instance {
	in := Instance{Apachectl: apachectl}
	if len(apachectl) == 0 {
		return in
	}
	base := filepath.Base(apachectl[0])
	if name, ok := strings.CutPrefix(base, "apache2ctl-"); ok && name != "" && !HasArg(apachectl, "-d") {
		root := debianInstancePrefix + name
		in.ServerRoot, in.ConfigFile, in.Name = root, mainIn(fs, root, argValue(apachectl, "-f")), name
		return in
	}
	if (base == "apache2ctl" || base == "apachectl") && !HasArg(apachectl, "-d") {
		if dir := os.Getenv("APACHE_CONFDIR"); dir != "" {
			in.ServerRoot, in.ConfigFile, in.Name = dir, mainIn(fs, dir, argValue(apachectl, "-f")), instanceName(dir)
			return in
		}
	}
	main, root := locate(fs, apachectl)
	in.ServerRoot, in.ConfigFile, in.Name = root, main, instanceName(root)
	if root != "" && (main == "" || main == root) {
		in.ConfigFile = mainIn(fs, root, argValue(apachectl, "-f"))
	}
	return in
}

// locate returns the main config file and ServerRoot an apachectl argv
// addresses: its -f and -d flags, else the distribution's default.
func locate(fs fsRoot, apachectl []string) (mainFile, serverRoot string) {
	for i := 0; i < len(apachectl); i++ {
		a := apachectl[i]
		var val string
		switch {
		case (a == "-f" || a == "-d") && i+1 < len(apachectl):
			val = apachectl[i+1]
			i++
		case strings.HasPrefix(a, "-f") || strings.HasPrefix(a, "-d"):
			val = a[2:]
		default:
			continue
		}
		if a[1] == 'f' {
			mainFile = val
		} else {
			serverRoot = val
		}
	}
	if serverRoot == "" {
		serverRoot = distroRoot(fs)
		if serverRoot == "" && mainFile != "" && filepath.IsAbs(mainFile) {
			serverRoot = filepath.Dir(mainFile)
		}
	}
	if mainFile == "" {
		mainFile = defaultMain(fs, serverRoot)
	}
	if !filepath.IsAbs(mainFile) && serverRoot != "" {
		mainFile = filepath.Join(serverRoot, mainFile)
	}
	return mainFile, serverRoot
}

// Distribution defaults: Debian's layout first, then RHEL's.
var distros = []struct{ root, main, flavor string }{
	{"/etc/apache2", "apache2.conf", "debian"},
	{"/etc/httpd", "conf/httpd.conf", "rhel"},
}

// distroRoot is the root of the installed distribution's Apache, "" when
// neither is installed.
func distroRoot(fs fsRoot) string {
	for _, d := range distros {
		if fs.exists(filepath.Join(d.root, d.main)) {
			return d.root
		}
	}
	return ""
}

func defaultMain(fs fsRoot, root string) string {
	for _, d := range distros {
		if d.root == root {
			return filepath.Join(root, d.main)
		}
	}
	for _, d := range distros {
		if p := filepath.Join(root, d.main); fs.exists(p) {
			return p
		}
	}
	return ""
}

// mainIn is the main config file of root: file (relative to root) when
// given, else the distribution's name for it.
func mainIn(fs fsRoot, root, file string) string {
	switch {
	case file != "" && filepath.IsAbs(file):
		return file
	case file != "":
		return filepath.Join(root, file)
	}
	if m := defaultMain(fs, root); m != "" {
		return m
	}
	return filepath.Join(root, "apache2.conf")
}

// HasArg reports whether a command line (argv[0] aside) passes flag, as
// "-f FILE" or "-fFILE".
func HasArg(argv []string, flag string) bool {
	if len(argv) == 0 {
		return false
	}
	for _, a := range argv[1:] {
		if strings.HasPrefix(a, flag) {
			return true
		}
	}
	return false
}

// argValue returns the value of -X (as "-X v" or "-Xv"), or "".
func argValue(argv []string, flag string) string {
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == flag && i+1 < len(argv):
			return argv[i+1]
		case strings.HasPrefix(a, flag) && len(a) > len(flag):
			return a[len(flag):]
		}
	}
	return ""
}

// serverBinaries are the names of Apache's server binary.
var serverBinaries = map[string]bool{"apache2": true, "httpd": true}

// Running lists the Apache servers running now: every apache2 or httpd
// process whose parent is not one (the main process), with the config
// root and file its command line and environment select. Reading another
// process's environment needs root; without it APACHE_CONFDIR is unseen
// and the -d flag alone decides.
func Running() []Instance {
	return running(procfs.Proc, osRoot)
}

func running(proc procfs.Dir, fs fsRoot) []Instance {
	type p struct {
		pid, ppid int
		exe       string
	}
	procs := map[int]p{}
	for _, pid := range proc.List() {
		st, err := proc.Stat(pid)
		if err != nil || !serverBinaries[st.Comm] {
			continue
		}
		procs[pid] = p{pid: pid, ppid: st.PPID, exe: proc.Exe(pid)}
	}
	var out []Instance
	for _, pr := range procs {
		if _, child := procs[pr.ppid]; child {
			continue // a worker or the forked parent's child
		}
		argv := proc.Cmdline(pr.pid)
		if len(argv) == 0 {
			continue
		}
		bin := pr.exe
		if bin == "" {
			bin = argv[0]
		}
		root := argValue(argv, "-d")
		if root == "" {
			root = proc.Getenv(pr.pid, "APACHE_CONFDIR")
		}
		if root == "" {
			root = distroRoot(fs)
		}
		ctl := []string{bin, "-d", root}
		file := argValue(argv, "-f")
		if file != "" {
			ctl = append(ctl, "-f", file)
		}
		for i := 1; i < len(argv); i++ {
			if argv[i] == "-D" && i+1 < len(argv) {
				ctl = append(ctl, "-D", argv[i+1])
				i++
			} else if strings.HasPrefix(argv[i], "-D") && len(argv[i]) > 2 {
				ctl = append(ctl, argv[i])
			}
		}
		out = append(out, Instance{Name: instanceName(root), ServerRoot: filepath.Clean(root),
			ConfigFile: mainIn(fs, root, file), Apachectl: ctl, PID: pr.pid})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// Same reports whether two instances are one server: the same config
// root and main file.
func (in Instance) Same(o Instance) bool {
	return filepath.Clean(in.ServerRoot) == filepath.Clean(o.ServerRoot) &&
		filepath.Clean(in.ConfigFile) == filepath.Clean(o.ConfigFile)
}

// Owns reports whether path lies inside the instance's config root.
func (in Instance) Owns(path string) bool {
	root := filepath.Clean(in.ServerRoot)
	return root != "" && root != "/" && strings.HasPrefix(filepath.Clean(path), root+"/")
}

// Hint is what a sockvisor config says about its Apache: the flavor, the
// command, the file sockvisor renders and the systemd unit; any may be
// empty. Running lists the servers running now (Running()), for a caller
// that diagnoses whichever one serves; nil chooses by the hint and the
// installed files alone, as the daemon does, so that what happens to run
// when it starts does not move where it writes.
type Hint struct {
	Flavor     string // "debian" or "rhel"; "" or "auto" to work it out
	Apachectl  []string
	ConfigFile string
	Unit       string
	Running    []Instance
}

// Discover is the one answer to "which Apache", for the daemon, check and
// the doctor: it picks the instance and lists the other running ones.
// An explicit command wins; then the instance whose unit is named
// (apache2@NAME.service) or whose root holds the rendered config file
// (/etc/apache2-NAME, /etc/apache2, /etc/httpd); then, among h.Running,
// the installed instance (the default one first); then the root of the
// flavor (auto: Debian's if installed, else RHEL's), else a running server,
// else apache2ctl or apachectl from PATH. An empty Apachectl means no Apache
// was found. A chosen instance that runs carries its pid, and the chosen
// one its Flavor and Unit.
func Discover(h Hint) (chosen Instance, others []Instance) {
	return discover(h, osRoot)
}

func discover(h Hint, fs fsRoot) (Instance, []Instance) {
	in, others := pickInstance(h, fs)
	in.Flavor = flavor(h.Flavor, in.ServerRoot, fs)
	switch {
	case h.Unit != "":
		in.Unit = h.Unit
	case in.Name != "":
		in.Unit = "apache2@" + in.Name + ".service"
	case in.Flavor == "debian":
		in.Unit = "apache2.service"
	case in.Flavor == "rhel":
		in.Unit = "httpd.service"
	}
	return in, others
}

func pickInstance(h Hint, fs fsRoot) (Instance, []Instance) {
	run := h.Running
	pick := func(want Instance) (Instance, []Instance) {
		var rest []Instance
		for _, r := range run {
			switch {
			case want.PID != 0 && r.PID == want.PID:
				continue
			case want.PID == 0 && want.ServerRoot != "" && r.Same(want):
				want.PID = r.PID
				if len(h.Apachectl) == 0 {
					want.Apachectl = r.Apachectl // the same flags it runs with
				}
				continue
			}
			rest = append(rest, r)
		}
		return want, rest
	}
	if len(h.Apachectl) > 0 {
		return pick(fromCommand(fs, h.Apachectl))
	}
	if root := unitRoot(h.Unit); root != "" {
		return pick(rootInstance(fs, root))
	}
	if h.ConfigFile != "" {
		for _, r := range run {
			if r.Owns(h.ConfigFile) {
				return pick(r)
			}
		}
		for dir := filepath.Dir(h.ConfigFile); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
			if instanceName(dir) != "" || isDistroRoot(dir) {
				return pick(rootInstance(fs, dir))
			}
		}
	}
	// Installed instances (the distribution's root, /etc/apache2-NAME) are
	// the ones that serve; a server started by hand from another directory
	// (a test's, say) is chosen only when nothing is installed.
	var installed []Instance
	for _, r := range run {
		if r.Installed() {
			installed = append(installed, r)
		}
	}
	for _, r := range installed {
		if r.Name == "" {
			return pick(r)
		}
	}
	switch root := flavorRoot(h.Flavor, fs); {
	case len(installed) > 0:
		return pick(installed[0])
	case root != "":
		return pick(rootInstance(fs, root))
	case len(run) > 0:
		return pick(run[0])
	}
	// No known root: whatever apachectl PATH has, as it resolves itself.
	for _, c := range []string{"apache2ctl", "apachectl"} {
		if p, err := exec.LookPath(c); err == nil {
			return pick(fromCommand(fs, []string{p}))
		}
	}
	return Instance{}, nil
}

// Installed reports whether the instance is one a package installed: the
// distribution's root or Debian's /etc/apache2-NAME, not a server run by
// hand from a directory of its own.
func (in Instance) Installed() bool {
	return isDistroRoot(in.ServerRoot) || instanceName(in.ServerRoot) != ""
}

func isDistroRoot(root string) bool { return rootFlavor(root) != "" }

// flavorRoot is the root of an explicit flavor, else the installed
// distribution's.
func flavorRoot(flavor string, fs fsRoot) string {
	for _, d := range distros {
		if d.flavor == flavor {
			return d.root
		}
	}
	return distroRoot(fs)
}

// flavor is an explicit flavor (any value but auto, which the caller
// judges), else the one an installed root belongs to, else the installed
// distribution's; "" when nothing is known.
func flavor(explicit, root string, fs fsRoot) string {
	if explicit != "" && explicit != "auto" {
		return explicit
	}
	if instanceName(root) != "" {
		return "debian"
	}
	if f := rootFlavor(root); f != "" {
		return f
	}
	return rootFlavor(distroRoot(fs))
}

// rootFlavor is the flavor whose distribution root is root, else "".
func rootFlavor(root string) string {
	for _, d := range distros {
		if root != "" && filepath.Clean(root) == d.root {
			return d.flavor
		}
	}
	return ""
}

// unitRoot maps Debian's apache2@NAME.service to /etc/apache2-NAME.
func unitRoot(unit string) string {
	if name, ok := strings.CutPrefix(strings.TrimSuffix(unit, ".service"), "apache2@"); ok && name != "" {
		return debianInstancePrefix + name
	}
	return ""
}

// rootInstance addresses an installed, maybe stopped, config root: the
// default one through apache2ctl (or apachectl), another through the server
// binary with -d, which reads that root's own envvars (CommandEnv).
func rootInstance(fs fsRoot, root string) Instance {
	if root == "" {
		return Instance{}
	}
	in := Instance{Name: instanceName(root), ServerRoot: root, ConfigFile: mainIn(fs, root, "")}
	switch {
	case root == "/etc/apache2":
		in.Apachectl = []string{"/usr/sbin/apache2ctl"}
	case root == "/etc/httpd":
		in.Apachectl = []string{"/usr/sbin/httpd"}
	case fs.exists(filepath.Join(root, "envvars")) || fs.exists("/usr/sbin/apache2"):
		in.Apachectl = []string{"/usr/sbin/apache2", "-d", root}
	default:
		in.Apachectl = []string{"/usr/sbin/httpd", "-d", root}
	}
	return in
}
