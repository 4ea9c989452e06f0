package apache

import (
	"testing"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestMain fails the run if goroutines or child processes outlive the
// tests: every Manager loop, test server and client must be stopped and
// waited for.
func TestMain(m *testing.M) { testutil.Main(m) }
