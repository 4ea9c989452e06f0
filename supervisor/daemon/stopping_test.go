package daemon

import (
	"context"
	"errors"
	"testing"
)

// Requests while sockvisor stops match errStopping, whose text names the
// package, and the client prints the same sentences as before.
func TestStoppingSentences(t *testing.T) {
	d := &Daemon{}
	d.closing.Store(true)
	const sentence = "sockvisor is stopping; try again once it has restarted"
	for what, err := range map[string]error{
		"Reload":           d.Reload(context.Background()),
		"Restart":          d.Restart(context.Background(), "app"),
		"reload abandoned": stoppingErr("reload abandoned"),
	} {
		want := sentence
		if what == "reload abandoned" {
			want = what + ": " + sentence
		}
		if !errors.Is(err, errStopping) || err.Error() != want {
			t.Errorf("%s while stopping = %v (errStopping: %v), want %q", what, err, errors.Is(err, errStopping), want)
		}
	}
	if errStopping.Error() != "daemon: stopping" {
		t.Errorf("errStopping says %q", errStopping)
	}
}
