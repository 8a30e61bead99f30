package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Message is the body of the work-queue message for one created object,
// JSON-encoded: the stage function sends it, the runner processes the object
// it names. Unknown fields are ignored when decoding, so a new field can be
// written before every reader knows it.
type Message struct {
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"` // decoded, as S3 stores it: "in/a b.txt", never "in/a+b.txt"
	Size      int64     `json:"size"`
	ETag      string    `json:"etag,omitempty"`
	VersionID string    `json:"version_id,omitempty"`
	Sequencer string    `json:"sequencer,omitempty"`
	EventTime time.Time `json:"event_time"`
}

// Encode returns m as a message body. It fails only for an EventTime JSON
// cannot hold (a year outside 0-9999).
func (m Message) Encode() (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode message: %w", err)
	}
	return string(b), nil
}

// DecodeMessage reads a message body. It fails on malformed JSON and on a
// message without bucket or key, which names nothing to process.
func DecodeMessage(body string) (Message, error) {
	var m Message
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		return Message{}, fmt.Errorf("parse message: %w", err)
	}
	if m.Bucket == "" || m.Key == "" {
		return Message{}, errors.New("parse message: no bucket or key")
	}
	return m, nil
}

// DeadLetter is the body of a dead-letter message the stage function sends
// itself for a record it could not queue or start a task for: the record's
// Message, which may lack a bucket or key when the record was bad. A
// message SQS moved to the dead-letter queue after failed runs is a plain
// Message.
type DeadLetter struct {
	Message
	// Truncated says fields were cut to keep the body under SQS's size
	// limit; the rest still identifies the record.
	Truncated bool `json:"truncated,omitempty"`
}

// Encode returns d as a message body; it fails as Message.Encode does.
func (d DeadLetter) Encode() (string, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("encode dead letter: %w", err)
	}
	return string(b), nil
}

// DecodeDeadLetter reads the body of any message in a dead-letter queue. It
// fails only on malformed JSON: a dead letter may name no object.
func DecodeDeadLetter(body string) (DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		return DeadLetter{}, fmt.Errorf("parse dead letter: %w", err)
	}
	return d, nil
}

// Message attributes of a dead-letter message that cloudpipe sends itself
// (a message SQS moved to the dead-letter queue after maxReceiveCount
// failed runs has none): why, what went wrong, and which stage it was for.
const (
	AttrDeadLetterReason = "cloudpipe.reason"   // one of the DeadLetterReason constants
	AttrDeadLetterError  = "cloudpipe.error"    // what went wrong, for the operator
	AttrDeadLetterFlow   = "cloudpipe.workflow" // the stage's workflow
	AttrDeadLetterStage  = "cloudpipe.stage"    // the stage index, a Number attribute
)

// DeadLetterStranded is the reason of a message the agent moved from a
// stage's work queue to its dead-letter queue because the stage's tasks
// kept stopping before they received it (an image that cannot be pulled, a
// secret the task may not read, ...). The stage function's own reasons are
// package lambda's Reason constants.
const DeadLetterStranded = "task-stopped-before-receiving"
