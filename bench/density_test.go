package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBootTimes pins the log line bootTimes reads (hclog's text format).
func TestBootTimes(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sv.log")
	line := "2026-12-01T10:35:01.234Z [INFO]  sockvisor.backend.svden-007: ready: instance=0 pid=4242 after=912ms\n" +
		"2026-12-01T10:35:02.234Z [INFO]  sockvisor.backend.svden-008: ready: instance=0 pid=4243 after=1.2s\n"
	if err := os.WriteFile(log, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	got := bootTimes(log)
	if len(got) != 2 || got[0] != 912*time.Millisecond || got[1] != 1200*time.Millisecond {
		t.Fatalf("bootTimes = %v, want [912ms 1.2s]", got)
	}
}
