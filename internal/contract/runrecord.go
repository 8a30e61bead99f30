package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Outcomes of a run, as written in a RunRecord and in its key.
const (
	OutcomeOK     = "ok"
	OutcomeFailed = "failed"
)

// RunRecord is what the runner writes to the state bucket after each
// delivery of a message, at RunRecordKey; the agent and the demo read it. A
// message that fails and is retried leaves one failed record per failed
// delivery and, if it finally succeeds, an ok one.
type RunRecord struct {
	Workflow  string `json:"workflow"`
	Stage     int    `json:"stage"`
	Algorithm string `json:"algorithm"`
	Input     string `json:"input"`            // s3://bucket/key
	Result    string `json:"result,omitempty"` // s3://bucket/key, on success
	Outcome   string `json:"outcome"`          // OutcomeOK or OutcomeFailed
	// Duplicate says the result already existed (the message was delivered
	// twice): this run wrote nothing and counts as done.
	Duplicate bool `json:"duplicate,omitempty"`
	// Error says what failed, safe to show users: the step and a short cause
	// ("run: exit status 3"), never environment values or credentials.
	Error       string    `json:"error,omitempty"`
	Attempt     int       `json:"attempt"` // the message's receive count
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Bytes       int64     `json:"bytes"`        // input bytes downloaded
	ResultBytes int64     `json:"result_bytes"` // result bytes uploaded
	MessageID   string    `json:"message_id"`
	// OutlivedVisibilityLimit says the run went on after its message could
	// no longer be kept invisible: SQS extends a message's visibility to at
	// most 12 h from its receive, and the runner stops asking a few seconds
	// before. The message may then have been delivered to another runner
	// meanwhile; the conditional upload of the result (If-None-Match) keeps
	// one result. Left out when false, so older records read the same.
	OutlivedVisibilityLimit bool `json:"outlived_visibility_limit,omitempty"`
}

// Encode returns r as the body of its object.
func (r RunRecord) Encode() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode run record: %w", err)
	}
	return b, nil
}

// DecodeRunRecord reads the body of a run record's object.
func DecodeRunRecord(body []byte) (RunRecord, error) {
	var r RunRecord
	if err := json.Unmarshal(body, &r); err != nil {
		return RunRecord{}, fmt.Errorf("decode run record: %w", err)
	}
	return r, nil
}

// RunsPrefix is the part of the state bucket that holds run records.
const RunsPrefix = "runs/"

// WorkflowRunsPrefix is where the run records of one workflow's stages go:
// the runner's task role may write only there.
func WorkflowRunsPrefix(workflow string) string {
	return RunsPrefix + workflow + "/"
}

// StageRunsPrefix is where the run records of one stage go; listing it gives
// the stage's records in the order they finished.
func StageRunsPrefix(workflow string, stage int) string {
	return WorkflowRunsPrefix(workflow) + strconv.Itoa(stage) + "/"
}

// runTimeLayout is fixed-width (unlike RFC3339Nano, which drops trailing
// zeros), so record keys sort by time as strings.
const runTimeLayout = "20060102T150405.000000000Z"

// RunRecordKey is where the record of one delivery goes in the state bucket:
//
//	runs/<workflow>/<stage>/<finished, UTC, 20060102T150405.000000000Z>-<ok|failed>-<hash>.json
//
// hash is 12 hex digits of the SHA-256 of the input bucket, key and the
// delivery's receipt handle, so two deliveries finishing in the same
// nanosecond still differ. Keys sort by finishing time within a stage, and
// the agent counts outcomes from a listing of the keys alone
// (ParseRunRecordKey).
func RunRecordKey(workflow string, stage int, finished time.Time, outcome, bucket, key, receipt string) string {
	sum := sha256.Sum256([]byte(bucket + "/" + key + "\x00" + receipt))
	return StageRunsPrefix(workflow, stage) +
		finished.UTC().Format(runTimeLayout) + "-" + outcome + "-" + hex.EncodeToString(sum[:6]) + ".json"
}

// RunRecordKeyInfo is what a run record's key says without reading the
// record.
type RunRecordKeyInfo struct {
	Workflow string
	Stage    int
	Finished time.Time
	Outcome  string // OutcomeOK or OutcomeFailed
}

// ParseRunRecordKey reads a key written by RunRecordKey; ok is false for any
// other key.
func ParseRunRecordKey(key string) (info RunRecordKeyInfo, ok bool) {
	rest, found := strings.CutPrefix(key, RunsPrefix)
	if !found {
		return info, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" {
		return info, false
	}
	// Only the form RunRecordKey writes: "+1" or "01" would be another
	// prefix than StageRunsPrefix lists.
	stage, err := strconv.Atoi(parts[1])
	if err != nil || stage < 0 || strconv.Itoa(stage) != parts[1] {
		return info, false
	}
	name, found := strings.CutSuffix(parts[2], ".json")
	if !found || len(name) < len(runTimeLayout)+1 || name[len(runTimeLayout)] != '-' {
		return info, false
	}
	// time.Parse also takes a comma for the decimal point: insist on the
	// layout, which keeps keys sorting by time.
	stamp := name[:len(runTimeLayout)]
	finished, err := time.Parse(runTimeLayout, stamp)
	if err != nil || finished.Format(runTimeLayout) != stamp {
		return info, false
	}
	outcome, hash, found := strings.Cut(name[len(runTimeLayout)+1:], "-")
	if !found || (outcome != OutcomeOK && outcome != OutcomeFailed) || !isHash(hash) {
		return info, false
	}
	return RunRecordKeyInfo{Workflow: parts[0], Stage: stage, Finished: finished, Outcome: outcome}, true
}

// isHash reports whether s is the hash RunRecordKey writes: 12 lowercase hex
// digits.
func isHash(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
