package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Message is one work-queue message: the object a run processes. The stage
// function writes it (lambda.Message); unknown fields are ignored, so either
// side can add one first.
type Message struct {
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"` // decoded, as S3 stores it
	Size      int64     `json:"size"`
	ETag      string    `json:"etag,omitempty"`
	VersionID string    `json:"version_id,omitempty"`
	Sequencer string    `json:"sequencer,omitempty"`
	EventTime time.Time `json:"event_time"`
}

// ParseMessage decodes a message body. It fails on malformed JSON and on a
// message without bucket or key.
func ParseMessage(body string) (Message, error) {
	var m Message
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		return Message{}, fmt.Errorf("parse message: %w", err)
	}
	if m.Bucket == "" || m.Key == "" {
		return Message{}, errors.New("parse message: no bucket or key")
	}
	return m, nil
}

// Outcomes of a run, as written in a Record and in its key.
const (
	OutcomeOK     = "ok"
	OutcomeFailed = "failed"
)

// Record is what the runner writes to the state bucket after each delivery
// of a message, at RecordKey. A message that fails and is retried leaves one
// failed record per failed delivery and, if it finally succeeds, an ok one.
type Record struct {
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
}

// recordTimeLayout is fixed-width (unlike RFC3339Nano, which drops trailing
// zeros), so record keys sort by time as strings.
const recordTimeLayout = "20060102T150405.000000000Z"

// RecordKey is where the record of one delivery goes in the state bucket:
//
//	runs/<workflow>/<stage>/<finished, UTC, 20060102T150405.000000000Z>-<ok|failed>-<hash>.json
//
// hash is 12 hex digits of the SHA-256 of the input bucket, key and the
// delivery's receipt handle, so two deliveries finishing in the same
// nanosecond still differ. Keys sort by finishing time within a stage, and
// the agent counts outcomes from a ListObjectsV2 of the keys alone
// (ParseRecordKey).
func RecordKey(workflow string, stage int, finished time.Time, outcome, bucket, key, receipt string) string {
	sum := sha256.Sum256([]byte(bucket + "/" + key + "\x00" + receipt))
	return "runs/" + workflow + "/" + strconv.Itoa(stage) + "/" +
		finished.UTC().Format(recordTimeLayout) + "-" + outcome + "-" + hex.EncodeToString(sum[:6]) + ".json"
}

// RecordKeyInfo is what a record key says without reading the record.
type RecordKeyInfo struct {
	Workflow string
	Stage    int
	Finished time.Time
	Outcome  string // OutcomeOK or OutcomeFailed
}

// ParseRecordKey reads a key written by RecordKey; ok is false for any
// other key.
func ParseRecordKey(key string) (info RecordKeyInfo, ok bool) {
	rest, found := strings.CutPrefix(key, "runs/")
	if !found {
		return info, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" {
		return info, false
	}
	stage, err := strconv.Atoi(parts[1])
	if err != nil || stage < 0 {
		return info, false
	}
	name, found := strings.CutSuffix(parts[2], ".json")
	if !found || len(name) < len(recordTimeLayout)+1 {
		return info, false
	}
	finished, err := time.Parse(recordTimeLayout, name[:len(recordTimeLayout)])
	if err != nil {
		return info, false
	}
	outcome, hash, found := strings.Cut(name[len(recordTimeLayout)+1:], "-")
	if !found || (outcome != OutcomeOK && outcome != OutcomeFailed) || len(hash) != 12 {
		return info, false
	}
	return RecordKeyInfo{Workflow: parts[0], Stage: stage, Finished: finished, Outcome: outcome}, true
}

// writeRecord stores rec in the state bucket under its RecordKey.
func (w *worker) writeRecord(ctx context.Context, rec Record, bucket, key, receipt string) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode run record: %w", err)
	}
	rk := RecordKey(rec.Workflow, rec.Stage, rec.Finished, rec.Outcome, bucket, key, receipt)
	_, err = w.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(w.c.StateBucket),
		Key:         aws.String(rk),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("put run record s3://%s/%s: %w", w.c.StateBucket, rk, err)
	}
	return nil
}
