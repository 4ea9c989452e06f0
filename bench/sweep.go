package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// sweepRow is `sockvisor sweep` over N stale sockets, medians over the runs.
type sweepRow struct {
	Files     int
	Make      time.Duration // making the stale sockets (bind + close)
	Sweep     time.Duration
	Remaining int // stale sockets left after the sweep, worst run
	Runs      int
}

// sweep fills a socket directory with stale sockets and times `sockvisor
// sweep`, then counts what is left.
func (b *bench) sweep(ctx context.Context) error {
	dir := filepath.Join(b.e.work, "sweep")
	sockDir := filepath.Join(dir, "s")
	cfg := filepath.Join(dir, "sv.hcl")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	src := fmt.Sprintf("socket_dir = %q\ncontrol_socket = %q\napache {\n  config_file = %q\n  reload = \"none\"\n}\n",
		sockDir, filepath.Join(dir, "ctl"), filepath.Join(dir, "apache.conf"))
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		return err
	}
	row := sweepRow{Files: b.p.sweepFiles, Runs: b.p.sweepRuns}
	var makes, sweeps []time.Duration
	for r := range b.p.sweepRuns {
		if err := os.MkdirAll(sockDir, 0o750); err != nil {
			return err
		}
		b.progress(fmt.Sprintf("run %d/%d: making %d stale sockets", r+1, b.p.sweepRuns, b.p.sweepFiles))
		t := time.Now()
		if err := makeStale(sockDir, b.p.sweepFiles); err != nil {
			return err
		}
		makes = append(makes, time.Since(t))
		if n, err := countSockets(sockDir); err != nil || n != b.p.sweepFiles {
			return fmt.Errorf("made %d stale sockets, want %d (%v)", n, b.p.sweepFiles, err)
		}
		b.progress(fmt.Sprintf("run %d/%d: sockvisor sweep", r+1, b.p.sweepRuns))
		t = time.Now()
		if _, err := b.e.run(ctx, 5*time.Minute, b.e.bin, "sweep", "--config", cfg); err != nil {
			return err
		}
		sweeps = append(sweeps, time.Since(t))
		left, err := countSockets(sockDir)
		if err != nil {
			return err
		}
		row.Remaining = max(row.Remaining, left)
		b.progress(fmt.Sprintf("run %d/%d: swept %d in %s, %d left", r+1, b.p.sweepRuns, b.p.sweepFiles, sweeps[r].Round(time.Millisecond), left))
		if err := os.RemoveAll(sockDir); err != nil {
			return err
		}
	}
	row.Make, row.Sweep = medianD(makes), medianD(sweeps)
	b.res.Sweep = row
	return nil
}

// makeStale binds n Unix sockets in dir and closes them without listening
// or unlinking: what a crashed server leaves behind.
func makeStale(dir string, n int) error {
	for i := range n {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = syscall.Bind(fd, &syscall.SockaddrUnix{Name: filepath.Join(dir, fmt.Sprintf("stale-%05d.sock", i))})
		syscall.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// countSockets counts the socket files in dir.
func countSockets(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if e.Type()&os.ModeSocket != 0 {
			n++
		}
	}
	return n, nil
}
