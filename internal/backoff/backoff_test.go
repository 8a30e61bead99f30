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
