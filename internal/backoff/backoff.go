// Package backoff holds the waiting that several of cloudpipe's packages do
// between retries: a context-aware sleep and capped exponential delays with
// jitter.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits d or until ctx ends, whichever comes first, and returns
// ctx.Err() in the second case. Retry loops use it instead of time.Sleep so
// that a shutdown is never held up by a backoff.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Jitter returns a duration drawn uniformly from [d/2, d]: retries of many
// clients that failed together spread out instead of returning together.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Exponential returns the wait before retry number attempt (1 for the first
// retry): base doubled per earlier attempt, at most ceiling, then jittered
// (half of it random, see Jitter). So a retry never comes sooner than half
// its nominal wait, and never later than ceiling. An attempt below 1 counts
// as 1.
func Exponential(attempt int, base, ceiling time.Duration) time.Duration {
	return Jitter(Capped(attempt, base, ceiling))
}

// Capped is the nominal, unjittered wait of Exponential: base doubled per
// attempt after the first, at most ceiling. Doubling stops at ceiling, so a
// large attempt neither loops long nor overflows.
func Capped(attempt int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		if d > ceiling/2 {
			return ceiling
		}
		d *= 2
	}
	return min(d, ceiling)
}
