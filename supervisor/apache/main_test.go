package apache

import (
	"testing"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestMain fails the run if goroutines or child processes outlive the
// tests: every test server, client and D-Bus connection must be stopped
// and waited for.
func TestMain(m *testing.M) { testutil.Main(m) }
