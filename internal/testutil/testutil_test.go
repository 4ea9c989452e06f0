package testutil

import "testing"

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"8.2", "8.4", true}, {"8.9", "8.10", true}, {"8.10", "8.9", false},
		{"8.2", "8.2", false}, {"7.4", "8.2", true}, {"8", "8.1", true},
	} {
		if got := versionLess(c.a, c.b); got != c.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestFindPHPFPM(t *testing.T) {
	bin, version := PHPFPM(t)
	if want := "/usr/sbin/php-fpm" + version; bin != want || version == "" {
		t.Fatalf("PHPFPM = %q, %q; want %q with a version", bin, version, want)
	}
}
