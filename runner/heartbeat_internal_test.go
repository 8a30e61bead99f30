package runner

import (
	"testing"
	"time"
)

func TestHeartbeatExtension(t *testing.T) {
	received := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	// The last moment a heartbeat may ask for anything: SQS's 12 h less
	// the margin.
	limit := received.Add(12*time.Hour - visibilityMargin)
	tests := []struct {
		name       string
		visibility time.Duration
		now        time.Time
		want       time.Duration
	}{
		{"fresh receive: the full timeout", 20 * time.Minute, received, 20 * time.Minute},
		{"first heartbeat", 20 * time.Minute, received.Add(20 * time.Minute / 3), 20 * time.Minute},
		{"the full timeout still fits exactly", 20 * time.Minute, limit.Add(-20 * time.Minute), 20 * time.Minute},
		{"a second less fits", 20 * time.Minute, limit.Add(-20*time.Minute + time.Second), 20*time.Minute - time.Second},
		{"near the limit: what is left", 20 * time.Minute, limit.Add(-90 * time.Second), 90 * time.Second},
		{"whole seconds, rounded down", 20 * time.Minute, limit.Add(-2500 * time.Millisecond), 2 * time.Second},
		{"a timeout of 12 h is capped from the start", 12 * time.Hour, received, 12*time.Hour - visibilityMargin},
		{"the timeout's fraction of a second is dropped", 1500 * time.Millisecond, received, time.Second},
		{"one second left", 20 * time.Minute, limit.Add(-time.Second), time.Second},
		{"less than a second left: nothing", 20 * time.Minute, limit.Add(-999 * time.Millisecond), 0},
		{"at the limit: nothing", 20 * time.Minute, limit, 0},
		{"within the margin: nothing", 20 * time.Minute, received.Add(12*time.Hour - time.Second), 0},
		{"past 12 h: nothing", 20 * time.Minute, received.Add(13 * time.Hour), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := heartbeatExtension(tt.visibility, received, tt.now)
			if got != tt.want {
				t.Errorf("heartbeatExtension(%v, received, received+%v) = %v, want %v", tt.visibility, tt.now.Sub(received), got, tt.want)
			}
			// Whatever it asks for ends within the limit, by the margin.
			if end := tt.now.Add(got); got > 0 && end.After(limit) {
				t.Errorf("the extension ends at received+%v, past received+%v", end.Sub(received), limit.Sub(received))
			}
		})
	}
}

func TestVisibilityLeft(t *testing.T) {
	received := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		after time.Duration // since the receive
		want  time.Duration
	}{
		{0, 12*time.Hour - visibilityMargin},
		{time.Hour, 11*time.Hour - visibilityMargin},
		{12*time.Hour - visibilityMargin - 1500*time.Millisecond, time.Second},
		{12*time.Hour - visibilityMargin - 500*time.Millisecond, 0},
		{12 * time.Hour, 0},
		{48 * time.Hour, 0},
	}
	for _, tt := range tests {
		if got := visibilityLeft(received, received.Add(tt.after)); got != tt.want {
			t.Errorf("visibilityLeft(received, received+%v) = %v, want %v", tt.after, got, tt.want)
		}
	}
}
