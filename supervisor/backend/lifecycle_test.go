package backend

import (
	"strings"
	"testing"
)

// Phases only move forward: stopSent relies on it, since every phase from
// stopping on means the stop signal went out.
func TestPhaseMoves(t *testing.T) {
	for from, tos := range phaseMoves {
		for _, to := range tos {
			if to <= from {
				t.Errorf("phase move %s -> %s goes backwards", from, to)
			}
		}
	}
	for ph := phaseStarting; ph <= phaseGone; ph++ {
		if strings.HasPrefix(ph.String(), "phase(") {
			t.Errorf("phase %d has no name", int(ph))
		}
		if _, ok := phaseMoves[ph]; !ok && ph != phaseGone {
			t.Errorf("phase %s has no way out; only gone is final", ph)
		}
	}
}
