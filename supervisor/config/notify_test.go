package config

import "testing"

// TestNotifyKey: notify defaults to true, notify = false keeps a
// NOTIFY_SOCKET from environment, and setting one while sockvisor would
// override it is an error at its line.
func TestNotifyKey(t *testing.T) {
	c := mustParse(t, `backend "app" {
  command = ["/bin/true"]
  user    = "root"
}`)
	if !c.Backends[0].Notify {
		t.Error("notify defaults to false; want true")
	}
	c = mustParse(t, `backend "app" {
  command     = ["/bin/true"]
  user        = "root"
  notify      = false
  environment = { NOTIFY_SOCKET = "" }
}`)
	if b := c.Backends[0]; b.Notify || b.Environment["NOTIFY_SOCKET"] != "" {
		t.Errorf("notify = false: Notify %t, environment %v; want false and NOTIFY_SOCKET kept", b.Notify, b.Environment)
	}
	wantProblem(t, `backend "app" {
  command     = ["/bin/true"]
  user        = "root"
  environment = { NOTIFY_SOCKET = "/run/x" }
}`, "4", "NOTIFY_SOCKET", "notify = false")
}
