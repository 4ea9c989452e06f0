package apache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestReloadNoneTouchesNothing: apache.reload = "none" writes no file,
// makes no link and runs no apachectl, for any config.
func TestReloadNoneTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "apachectl-ran")
	ctl := filepath.Join(dir, "apachectl")
	if err := os.WriteFile(ctl, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "etc", "conf-available", "sockvisor.conf")
	cfg := loadHCL(t, dir, fmt.Sprintf(`
apache {
  reload      = "none"
  config_file = %q
  apachectl   = [%q]
}
site "a.example" {}
site "b.example" {
  render = "include"
}
backend "a" {
  command = ["/bin/true"]
  user    = "root"
  site    = "a.example"
}
backend "b" {
  command = ["/bin/true"]
  user    = "root"
  site    = "b.example"
}
`, conf, ctl))
	m, err := New(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := 0; i < 2; i++ {
		changed, err := m.Apply(context.Background(), cfg)
		if changed || err != nil {
			t.Fatalf("Apply = %v, %v; want false, nil", changed, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "etc")); !os.IsNotExist(err) {
		t.Errorf("reload = none created %s: %v", filepath.Join(dir, "etc"), err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Error("reload = none ran apachectl")
	}
}
