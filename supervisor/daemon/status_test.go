package daemon

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sockvisor/sockvisor/supervisor/apache"
)

func TestApplyRecordNamesTheFailedStep(t *testing.T) {
	cases := []struct {
		err  error
		step string
	}{
		{fmt.Errorf("%w: proxy_uwsgi", apache.ErrModuleMissing), "modules"},
		{fmt.Errorf("%w: AH00526: Syntax error", apache.ErrConfigTest), "configtest"},
		{errors.New("listing Apache's loaded modules: AH00526: Syntax error on line 2"), "configtest"},
		{fmt.Errorf("%w: job failed", apache.ErrReload), "reload"},
		{fmt.Errorf("%w: pid 7 gone", apache.ErrApacheDied), "apache-died"},
		{fmt.Errorf("%w: /etc/apache2/conf-available/sockvisor.conf", apache.ErrNotOurs), "files"},
		{fmt.Errorf("%w: no flavor", apache.ErrNoApache), "integration"},
		{errors.New("disk full"), "other"},
	}
	var r applyRecord
	if r.get() != nil {
		t.Fatal("a fresh record is not empty")
	}
	for _, c := range cases {
		r.record("/x.conf", false, c.err)
		a := r.get()
		if a.OK || a.Step != c.step || a.Error != c.err.Error() || a.ConfigFile != "/x.conf" || a.At.IsZero() {
			t.Errorf("record(%v) = %+v, want step %s", c.err, a, c.step)
		}
	}
	if n := r.note(); n != "; Apache config not applied (other failed)" {
		t.Errorf("STATUS= note %q", n)
	}
	r.record("/x.conf", true, nil)
	if n := r.note(); n != "" {
		t.Errorf("STATUS= note after a success %q", n)
	}
	if a := r.get(); !a.OK || a.Step != "" || a.Error != "" || !a.Changed {
		t.Errorf("success recorded as %+v", a)
	}
}
