package backend

import (
	"math/rand/v2"
	"time"
)

// Clock is the time source of every policy delay: backoff, readiness
// deadline and probe interval, stop timeout, healthy-run length. Tests
// inject one they advance by hand, so no backoff is waited out; polls of
// the process table and of a self-bound socket use real time.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Backoff policy.
const (
	// CrashLoopAfter consecutive failed runs mark an instance failed; it
	// then retries every restart.max_delay.
	CrashLoopAfter = 5
	// HealthyRun is how long a ready process must live for the next crash
	// to start the backoff from restart.min_delay again.
	HealthyRun = 10 * time.Second
)

// backoffDelay returns the wait before restart number failures (1 for the
// first crash): min·2^(failures-1) capped at max, with "equal jitter"
// (between half and all of it, never below min) so backends crashing
// together do not restart in lockstep; from CrashLoopAfter on, max itself.
// With r in [0,1) the sequence never decreases.
func backoffDelay(min, max time.Duration, failures int, r float64) time.Duration {
	if failures >= CrashLoopAfter {
		return max
	}
	base := min
	for i := 1; i < failures && base < max; i++ {
		base *= 2
	}
	if base >= max {
		return max // no jitter at the cap keeps the sequence monotonic
	}
	d := base/2 + time.Duration(r*float64(base/2))
	if d < min {
		d = min
	}
	return d
}

func jitter() float64 { return rand.Float64() }
