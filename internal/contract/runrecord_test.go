package contract_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

func TestRunRecordKey(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 80, time.FixedZone("x", 3600))
	key := contract.RunRecordKey("wf", 2, at, contract.OutcomeOK, "in", "a/b.txt", "receipt-1")
	const want = "runs/wf/2/20260304T040607.000000080Z-ok-"
	if len(key) != len(want)+12+len(".json") || key[:len(want)] != want {
		t.Fatalf("RunRecordKey = %q, want %q + 12 hex digits + .json", key, want)
	}
	if other := contract.RunRecordKey("wf", 2, at, contract.OutcomeOK, "in", "a/b.txt", "receipt-2"); other == key {
		t.Error("two deliveries finishing at the same time got the same key")
	}

	// Keys sort by finishing time, whatever the nanoseconds.
	var keys []string
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, d := range []time.Duration{0, time.Nanosecond, 100 * time.Millisecond, time.Second, 10 * time.Hour} {
		keys = append(keys, contract.RunRecordKey("wf", 0, base.Add(d), contract.OutcomeFailed, "b", "k", d.String()))
	}
	if !slices.IsSorted(keys) {
		t.Errorf("record keys do not sort by time: %q", keys)
	}
}

// TestRunRecordKeyRoundTrip checks that a key parses back to what built it
// and lies under the prefixes the agent lists and the task role may write.
func TestRunRecordKeyRoundTrip(t *testing.T) {
	tests := []struct {
		workflow string
		stage    int
		finished time.Time
		outcome  string
	}{
		{"wf", 0, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), contract.OutcomeOK},
		{"sort-and-count", 12, time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC), contract.OutcomeFailed},
		{"w", 1, time.Date(1999, 6, 7, 8, 9, 10, 11, time.FixedZone("y", -7*3600)), contract.OutcomeOK},
	}
	for _, tt := range tests {
		key := contract.RunRecordKey(tt.workflow, tt.stage, tt.finished, tt.outcome, "in", "a.txt", "r")
		info, ok := contract.ParseRunRecordKey(key)
		if !ok || info.Workflow != tt.workflow || info.Stage != tt.stage || !info.Finished.Equal(tt.finished) || info.Outcome != tt.outcome {
			t.Errorf("ParseRunRecordKey(%q) = %+v, %v, want %+v", key, info, ok, tt)
		}
		for _, prefix := range []string{contract.RunsPrefix, contract.WorkflowRunsPrefix(tt.workflow), contract.StageRunsPrefix(tt.workflow, tt.stage)} {
			if !strings.HasPrefix(key, prefix) {
				t.Errorf("key %q is not under %q", key, prefix)
			}
		}
		// Stage 1's prefix must not list stage 12's records.
		if other := contract.StageRunsPrefix(tt.workflow, tt.stage/10); tt.stage >= 10 && strings.HasPrefix(key, other) {
			t.Errorf("key %q is under stage %d's prefix %q too", key, tt.stage/10, other)
		}
	}
}

func TestParseRunRecordKeyRejects(t *testing.T) {
	for _, bad := range []string{"", "runs/wf/0/x.json", "runs/wf/a/20260304T040607.000000080Z-ok-0123456789ab.json",
		"runs/wf/0/20260304T040607.000000080Z-maybe-0123456789ab.json", "runs/wf/0/20260304T040607.000000080Z-ok-01.json",
		"other/wf/0/20260304T040607.000000080Z-ok-0123456789ab.json", "runs/wf/0/20260304T040607.000000080Z-ok-0123456789ab",
		"runs//0/20260304T040607.000000080Z-ok-0123456789ab.json", "runs/wf/-1/20260304T040607.000000080Z-ok-0123456789ab.json",
		"runs/wf/0/x/20260304T040607.000000080Z-ok-0123456789ab.json", "runs/wf/+0/20260304T040607.000000080Z-ok-0123456789ab.json",
		"runs/wf/00/20260304T040607.000000080Z-ok-0123456789ab.json", "runs/wf/0/20260304T040607.000000080Zxok-0123456789ab.json",
		"runs/wf/0/20260304T040607.000000080Z-ok-0123456789AB.json", "runs/wf/0/20260304T040607.000000080Z-ok-01234567-9ab.json"} {
		if info, ok := contract.ParseRunRecordKey(bad); ok {
			t.Errorf("ParseRunRecordKey(%q) = %+v, want not ok", bad, info)
		}
	}
}

func TestRunRecordRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	for _, r := range []contract.RunRecord{
		{Workflow: "wf", Stage: 1, Algorithm: "sort", Input: "s3://in/a.txt", Result: "s3://out/Result-sort-a.txt",
			Outcome: contract.OutcomeOK, Duplicate: true, Attempt: 2, Started: at, Finished: at.Add(time.Second),
			Bytes: 10, ResultBytes: 9, MessageID: "m-1"},
		{Workflow: "wf", Stage: 2, Algorithm: "slow", Input: "s3://in/c.txt", Outcome: contract.OutcomeOK, Attempt: 1,
			Started: at, Finished: at.Add(13 * time.Hour), OutlivedVisibilityLimit: true},
		{Workflow: "wf", Algorithm: "sort", Input: "s3://in/b.txt", Outcome: contract.OutcomeFailed, Error: "run: exit status 3", Attempt: 1},
	} {
		body, err := r.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", r, err)
		}
		got, err := contract.DecodeRunRecord(body)
		if err != nil || got != r {
			t.Errorf("DecodeRunRecord(%s) = %+v, %v, want %+v", body, got, err, r)
		}
	}
	// A record written before OutlivedVisibilityLimit existed reads as not
	// outlived, and a record that did not outlive it is written as before.
	old := `{"workflow":"wf","stage":1,"algorithm":"a","input":"s3://in/a","outcome":"ok","attempt":1,` +
		`"started":"2026-03-04T05:06:07Z","finished":"2026-03-04T05:06:08Z","bytes":1,"result_bytes":1,"message_id":"m"}`
	r, err := contract.DecodeRunRecord([]byte(old))
	if err != nil || r.OutlivedVisibilityLimit {
		t.Errorf("DecodeRunRecord(%s) = %+v, %v, want not outlived", old, r, err)
	}
	if body, err := r.Encode(); err != nil || string(body) != old {
		t.Errorf("Encode(%+v) = %s, %v, want %s", r, body, err, old)
	}
	for _, bad := range []string{"", "{", `{"stage":"one"}`, `{"started":"yesterday"}`} {
		if r, err := contract.DecodeRunRecord([]byte(bad)); err == nil {
			t.Errorf("DecodeRunRecord(%q) = %+v, want an error", bad, r)
		}
	}
}
