package sync_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

func statusFixture() []pipesync.WorkflowStatus {
	retry := time.Date(2026, 12, 6, 9, 1, 30, 0, time.UTC)
	return []pipesync.WorkflowStatus{
		{Workflow: "broken", State: "failed", Commit: "0123456789abcdef", Region: "us-east-1", InputBucket: "b-in", OutputBucket: "b-out",
			Error: "create bucket b-in:\nBucketAlreadyExists", NextRetry: &retry, Stages: []pipesync.StageStatus{}},
		{Workflow: "two", State: "ready", Commit: "fedcba9876543210", Region: "us-east-1", InputBucket: "t-in", OutputBucket: "t-out",
			Done: 4, Failed: 3, Waiting: 2, InFlight: 1, DeadLetters: 1, LastRunError: "run: exit status 3",
			Stages: []pipesync.StageStatus{
				{Stage: 0, Algorithm: "sort-lines", InputBucket: "t-in", OutputBucket: "cp-two-0-ab", Done: 6, Failed: 3, Waiting: 2, InFlight: 1, DeadLetters: 1},
				{Stage: 1, Algorithm: "count", InputBucket: "cp-two-0-ab", OutputBucket: "t-out", Done: 4},
			}},
	}
}

// TestStatusTable: one aligned line per workflow, the next retry relative
// to now, errors on one line, and an indented line per stage for a
// workflow of several.
func TestStatusTable(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	if err := pipesync.WriteStatusTable(&buf, statusFixture(), now); err != nil {
		t.Fatal(err)
	}
	want := `WORKFLOW   STATE       COMMIT   INPUT        OUTPUT       DONE  FAILED  WAITING  DEAD  NEXT RETRY  LAST ERROR
broken     failed      0123456  b-in         b-out        0     0       0        0     in 1m30s    create bucket b-in: BucketAlreadyExists
two        ready       fedcba9  t-in         t-out        4     3       2+1      1     -           run: exit status 3
  stage 0  sort-lines           t-in         cp-two-0-ab  6     3       2+1      1                 -
  stage 1  count                cp-two-0-ab  t-out        4     0       0        0                 -
`
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// TestStatusJSON: the field names scripts rely on (docs/cli.md), times in
// RFC 3339, empty optional fields left out.
func TestStatusJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := pipesync.WriteStatusJSON(&buf, statusFixture()); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || len(got) != 2 {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	for _, k := range []string{"workflow", "state", "commit", "region", "input_bucket", "output_bucket", "done", "failed",
		"waiting", "in_flight", "dead_letters", "error", "next_retry", "updated_at", "stages"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("no field %q in %v", k, got[0])
		}
	}
	if got[0]["next_retry"] != "2026-12-06T09:01:30Z" {
		t.Errorf("next_retry = %v", got[0]["next_retry"])
	}
	if _, ok := got[1]["next_retry"]; ok {
		t.Errorf("a workflow with no retry due has next_retry: %v", got[1])
	}
	stages, _ := got[1]["stages"].([]any)
	if len(stages) != 2 || !strings.Contains(buf.String(), `"algorithm": "count"`) {
		t.Errorf("stages = %v", got[1]["stages"])
	}
	buf.Reset()
	if err := pipesync.WriteStatusJSON(&buf, nil); err != nil || strings.TrimSpace(buf.String()) != "[]" {
		t.Errorf("no workflows: %q, %v; want []", buf.String(), err)
	}
}
