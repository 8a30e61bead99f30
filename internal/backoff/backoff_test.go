package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/backoff"
)

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := backoff.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if err := backoff.Sleep(t.Context(), time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v, want nil", err)
	}
}

func TestJitterRange(t *testing.T) {
	for _, d := range []time.Duration{0, 1, time.Millisecond, time.Second} {
		for range 100 {
			got := backoff.Jitter(d)
			if got < d/2 || got > d {
				t.Fatalf("Jitter(%v) = %v, outside [%v, %v]", d, got, d/2, d)
			}
		}
	}
}

func TestCapped(t *testing.T) {
	const huge = time.Duration(1<<63 - 1)
	for _, c := range []struct {
		attempt       int
		base, ceiling time.Duration
		want          time.Duration
	}{
		{attempt: 0, base: time.Second, ceiling: time.Minute, want: time.Second},
		{attempt: 1, base: time.Second, ceiling: time.Minute, want: time.Second},
		{attempt: 2, base: time.Second, ceiling: time.Minute, want: 2 * time.Second},
		{attempt: 4, base: 500 * time.Millisecond, ceiling: time.Minute, want: 4 * time.Second},
		{attempt: 6, base: time.Second, ceiling: 30 * time.Second, want: 30 * time.Second},
		{attempt: 1000, base: time.Second, ceiling: 30 * time.Second, want: 30 * time.Second},
		{attempt: 3, base: time.Minute, ceiling: time.Second, want: time.Second},
		{attempt: 200, base: time.Second, ceiling: huge, want: huge},
		{attempt: 5, base: 0, ceiling: time.Second, want: 0},
	} {
		if got := backoff.Capped(c.attempt, c.base, c.ceiling); got != c.want {
			t.Errorf("Capped(%d, %v, %v) = %v, want %v", c.attempt, c.base, c.ceiling, got, c.want)
		}
	}
}

func TestExponentialBounds(t *testing.T) {
	for _, c := range []struct {
		attempt       int
		base, ceiling time.Duration
		lo, hi        time.Duration
	}{
		{attempt: 1, base: 100 * time.Millisecond, ceiling: time.Second, lo: 50 * time.Millisecond, hi: 100 * time.Millisecond},
		{attempt: 3, base: 100 * time.Millisecond, ceiling: time.Second, lo: 200 * time.Millisecond, hi: 400 * time.Millisecond},
		{attempt: 5, base: 100 * time.Millisecond, ceiling: time.Second, lo: 500 * time.Millisecond, hi: time.Second},
		{attempt: 64, base: time.Second, ceiling: 30 * time.Second, lo: 15 * time.Second, hi: 30 * time.Second},
		{attempt: 1, base: 0, ceiling: time.Second, lo: 0, hi: 0},
	} {
		for range 100 {
			got := backoff.Exponential(c.attempt, c.base, c.ceiling)
			if got < c.lo || got > c.hi {
				t.Fatalf("Exponential(%d, %v, %v) = %v, outside [%v, %v]", c.attempt, c.base, c.ceiling, got, c.lo, c.hi)
			}
		}
	}
}
