package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
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

// DeadLetter is the body of a message in a stage's dead-letter queue. Three
// senders put messages there: the stage function, for a record it could not
// queue or start a task for (the record's Message, which may lack a bucket
// or key when the record was bad); SQS, for a file whose runs failed (a
// plain Message); and Lambda, for an S3 event the stage function failed on
// every attempt (an invocation record, see FailedInvocation), which
// DecodeDeadLetter reads as the Message of the event's object.
type DeadLetter struct {
	Message
	// Truncated says fields were cut to keep the body under SQS's size
	// limit; the rest still identifies the record.
	Truncated bool `json:"truncated,omitempty"`
	// Invocation is set (its Condition not "") when the body is Lambda's
	// invocation record of an event the stage function failed; it is never
	// written by Encode.
	Invocation FailedInvocation `json:"-"`
}

// FailedInvocation is what Lambda's invocation record says of an event
// the stage function failed: Lambda sends it to the function's on-failure
// destination, the stage's dead-letter queue, once the event failed every
// attempt or grew too old. The record's format:
// https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
type FailedInvocation struct {
	RequestID string
	// Condition is "RetriesExhausted" or "EventAgeExceeded".
	Condition string
	// Attempts is the record's approximateInvokeCount.
	Attempts int
	// Error is the function's last error message ("" when none came back).
	Error string
}

// invocationRecord is the part of Lambda's invocation record of an S3
// event that DecodeDeadLetter reads.
type invocationRecord struct {
	RequestContext *struct {
		RequestID              string `json:"requestId"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	RequestPayload struct {
		Records []struct {
			EventTime string `json:"eventTime"`
			S3        struct {
				Bucket struct {
					Name string `json:"name"`
				} `json:"bucket"`
				Object struct {
					Key       string `json:"key"`
					Size      int64  `json:"size"`
					ETag      string `json:"eTag"`
					VersionID string `json:"versionId"`
					Sequencer string `json:"sequencer"`
				} `json:"object"`
			} `json:"s3"`
		} `json:"Records"`
	} `json:"requestPayload"`
	ResponsePayload json.RawMessage `json:"responsePayload"`
}

// deadLetter is the record as a dead letter: its event's object (S3 sends
// one object a notification) with the key decoded as the stage function
// decodes it, and what became of the invocation.
func (r invocationRecord) deadLetter() DeadLetter {
	rc := r.RequestContext
	d := DeadLetter{Invocation: FailedInvocation{RequestID: rc.RequestID, Condition: rc.Condition, Attempts: rc.ApproximateInvokeCount}}
	var resp struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(r.ResponsePayload, &resp) == nil {
		d.Invocation.Error = resp.ErrorMessage
	}
	if len(r.RequestPayload.Records) == 0 {
		return d
	}
	rec := r.RequestPayload.Records[0]
	o := rec.S3.Object
	key, err := url.QueryUnescape(o.Key) // keys arrive URL-encoded, a space as "+"
	if err != nil {
		key = o.Key
	}
	at, _ := time.Parse(time.RFC3339Nano, rec.EventTime) // zero when S3 sent none
	d.Message = Message{Bucket: rec.S3.Bucket.Name, Key: key, Size: o.Size, ETag: o.ETag,
		VersionID: o.VersionID, Sequencer: o.Sequencer, EventTime: at.UTC()}
	return d
}

// Encode returns d as a message body; it fails as Message.Encode does.
func (d DeadLetter) Encode() (string, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("encode dead letter: %w", err)
	}
	return string(b), nil
}

// DecodeDeadLetter reads the body of any message in a dead-letter queue,
// Lambda's invocation records included. It fails only on malformed JSON: a
// dead letter may name no object.
func DecodeDeadLetter(body string) (DeadLetter, error) {
	var rec invocationRecord
	if json.Unmarshal([]byte(body), &rec) == nil && rec.RequestContext != nil && rec.RequestContext.Condition != "" {
		return rec.deadLetter(), nil
	}
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
