package osuser

import "testing"

func TestNames(t *testing.T) {
	// root is uid and gid 0 everywhere; 4000000000 is nobody's.
	for _, c := range []struct {
		got, want string
	}{
		{UserName(0), "root"}, {GroupName(0), "root"},
		{User(0), "0 (root)"}, {Group(0), "0 (root)"},
		{UserName(4000000000), "4000000000"}, {GroupName(4000000000), "4000000000"},
		{User(4000000000), "4000000000"}, {Group(4000000000), "4000000000"},
	} {
		if c.got != c.want {
			t.Errorf("got %q; want %q", c.got, c.want)
		}
	}
}
