package runner_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/lambda"
	"github.com/cloudpipe/cloudpipe/runner"
)

func TestRecordKey(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 80, time.FixedZone("x", 3600))
	key := runner.RecordKey("wf", 2, at, runner.OutcomeOK, "in", "a/b.txt", "receipt-1")
	const want = "runs/wf/2/20260304T040607.000000080Z-ok-"
	if len(key) != len(want)+12+len(".json") || key[:len(want)] != want {
		t.Fatalf("RecordKey = %q, want %q + 12 hex digits + .json", key, want)
	}
	info, ok := runner.ParseRecordKey(key)
	if !ok || info.Workflow != "wf" || info.Stage != 2 || !info.Finished.Equal(at) || info.Outcome != runner.OutcomeOK {
		t.Errorf("ParseRecordKey(%q) = %+v, %v", key, info, ok)
	}
	if other := runner.RecordKey("wf", 2, at, runner.OutcomeOK, "in", "a/b.txt", "receipt-2"); other == key {
		t.Error("two deliveries finishing at the same time got the same key")
	}

	// Keys sort by finishing time, whatever the nanoseconds.
	var keys []string
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, d := range []time.Duration{0, time.Nanosecond, 100 * time.Millisecond, time.Second, 10 * time.Hour} {
		keys = append(keys, runner.RecordKey("wf", 0, base.Add(d), runner.OutcomeFailed, "b", "k", d.String()))
	}
	if !slices.IsSorted(keys) {
		t.Errorf("record keys do not sort by time: %q", keys)
	}

	for _, bad := range []string{"", "runs/wf/0/x.json", "runs/wf/a/20260304T040607.000000080Z-ok-0123456789ab.json",
		"runs/wf/0/20260304T040607.000000080Z-maybe-0123456789ab.json", "runs/wf/0/20260304T040607.000000080Z-ok-01.json",
		"other/wf/0/20260304T040607.000000080Z-ok-0123456789ab.json", "runs/wf/0/20260304T040607.000000080Z-ok-0123456789ab"} {
		if info, ok := runner.ParseRecordKey(bad); ok {
			t.Errorf("ParseRecordKey(%q) = %+v, want not ok", bad, info)
		}
	}
}

func TestResultKey(t *testing.T) {
	tests := []struct {
		key    string
		zipped bool
		want   string
	}{
		{"in/a b.txt", false, "in/Result-sort-a b.txt"},
		{"a.txt", false, "Result-sort-a.txt"},
		{"x/y/z.csv", true, "x/y/Result-sort-z.csv.zip"},
		{"in/Result-uniq-a.txt", false, "in/Result-sort-Result-uniq-a.txt"},
	}
	for _, tt := range tests {
		if got := runner.ResultKey(tt.key, "sort", tt.zipped); got != tt.want {
			t.Errorf("ResultKey(%q, %v) = %q, want %q", tt.key, tt.zipped, got, tt.want)
		}
	}
}

// TestMessageContract checks that what the stage function queues is what
// the runner reads.
func TestMessageContract(t *testing.T) {
	sent := lambda.Message{Bucket: "in", Key: "in/a b+c 日本.txt", Size: 42, ETag: "abc", VersionID: "v1",
		Sequencer: "0055", EventTime: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	body, err := json.Marshal(sent)
	if err != nil {
		t.Fatal(err)
	}
	got, err := runner.ParseMessage(string(body))
	if err != nil {
		t.Fatal(err)
	}
	if got != runner.Message(sent) {
		t.Errorf("runner read %+v from %s", got, body)
	}
	for _, bad := range []string{"", "{", `{"bucket":"b"}`, `{"key":"k"}`, `[]`} {
		if m, err := runner.ParseMessage(bad); err == nil {
			t.Errorf("ParseMessage(%q) = %+v, want an error", bad, m)
		}
	}
}
