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
