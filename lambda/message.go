package lambda

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// MaxMessageBytes is the largest message body (with its attributes) SQS
// accepts by default, 256 KiB. A record that does not fit cannot be queued
// and goes to the dead-letter queue instead.
const MaxMessageBytes = 256 * 1024

// Reasons a record went to the dead-letter queue, sent as the message
// attribute AttrReason.
const (
	ReasonBadRecord     = "bad-record"        // the record names no object that can be processed
	ReasonTooLarge      = "message-too-large" // the message would exceed MaxMessageBytes
	ReasonQueueRejected = "queue-rejected"    // SQS refused the message for good (sender fault)
)

// Message attributes of a dead-letter message the function sends itself (a
// message SQS moved there after maxReceiveCount failed runs has none); the
// agent sets the same ones on the files it dead-letters.
const (
	AttrReason   = contract.AttrDeadLetterReason // one of the Reason constants
	AttrError    = contract.AttrDeadLetterError  // what went wrong, for the operator
	AttrWorkflow = contract.AttrDeadLetterFlow   // the stage's workflow
	AttrStage    = contract.AttrDeadLetterStage  // the stage index
)

// job is one record on its way through the handler: its message and the
// token that identifies the S3 event for idempotency.
type job struct {
	msg   contract.Message
	body  string
	token string // sha256 hex of the event's identity, see recordToken
}

// skipReason says why a record is not work ("" when it is).
func skipReason(r events.S3EventRecord) string {
	if r.EventName != "" && !strings.HasPrefix(r.EventName, "ObjectCreated:") && !strings.HasPrefix(r.EventName, "s3:ObjectCreated:") {
		return "not an object creation"
	}
	return ""
}

// newJob turns a record into a job. Every created object is work, results of
// the previous stage included (stage i+1 is triggered by stage i's results);
// only "folder" placeholders (keys ending in "/") are skipped, reported by
// skip == true. A record that cannot become a message gives an error.
func newJob(r events.S3EventRecord) (j job, skip bool, err error) {
	key := r.S3.Object.URLDecodedKey
	if key == "" && r.S3.Object.Key != "" {
		// URLDecodedKey is filled in only when the record was decoded from
		// JSON; decode here for records built in code.
		if key, err = url.QueryUnescape(r.S3.Object.Key); err != nil {
			return job{}, false, fmt.Errorf("decode key: %w", err)
		}
	}
	msg := contract.Message{
		Bucket:    r.S3.Bucket.Name,
		Key:       key,
		Size:      r.S3.Object.Size,
		ETag:      r.S3.Object.ETag,
		VersionID: r.S3.Object.VersionID,
		Sequencer: r.S3.Object.Sequencer,
		EventTime: r.EventTime.UTC(),
	}
	switch {
	case msg.Bucket == "":
		return job{msg: msg}, false, errors.New("record names no bucket")
	case msg.Key == "":
		return job{msg: msg}, false, errors.New("record names no key")
	case !utf8.ValidString(msg.Key):
		// JSON would replace the invalid bytes, and the runner would then
		// look for another key; S3 keys are UTF-8, so this is a bad event.
		return job{msg: msg}, false, errors.New("key is not valid UTF-8")
	case strings.HasSuffix(msg.Key, "/"):
		return job{}, true, nil
	}
	body, err := msg.Encode()
	if err != nil {
		return job{msg: msg}, false, err
	}
	j = job{msg: msg, body: body, token: recordToken(msg)}
	if len(j.body) > MaxMessageBytes {
		return j, false, errTooLarge
	}
	return j, false, nil
}

var errTooLarge = fmt.Errorf("message exceeds %d bytes", MaxMessageBytes)

// recordToken identifies one S3 event: S3 and Lambda both deliver at least
// once, and a duplicate must map to the same RunTask clientToken. S3's
// sequencer orders the events of one key; emulators leave it (and the
// version) empty, so eTag and event time are part of the identity too. The
// result is 64 hex characters, the most ECS accepts.
func recordToken(m contract.Message) string {
	h := sha256.New()
	for _, f := range []string{m.Bucket, m.Key, m.VersionID, m.Sequencer, m.ETag, m.EventTime.Format(time.RFC3339Nano)} {
		h.Write([]byte(f))
		h.Write([]byte{0}) // separator: ("ab","c") and ("a","bc") differ
	}
	return hex.EncodeToString(h.Sum(nil))
}

// batchToken is the clientToken of a RunTask call that starts tasks for
// jobs: derived from their record tokens and the count, so the same event
// handled twice sends the same token.
func batchToken(jobs []job) string {
	if len(jobs) == 1 {
		return jobs[0].token
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00", len(jobs))
	for _, j := range jobs {
		h.Write([]byte(j.token))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// deadLetterBody is the body of a dead-letter message for j: its queue
// message, or for a record too large to queue, the same fields with the key
// cut (and "truncated": true) so that the record can still be identified.
func deadLetterBody(j job) string {
	if j.body != "" && len(j.body)+attrBudget <= MaxMessageBytes {
		return j.body
	}
	m := j.msg
	var truncated bool
	// S3's own limits: keys of 1024 bytes; the other fields are far shorter
	// in real events, but a bad event may carry anything.
	for _, f := range []*string{&m.Bucket, &m.Key, &m.ETag, &m.VersionID, &m.Sequencer} {
		if cut := cutUTF8(*f, 1024); len(cut) < len(*f) {
			*f, truncated = cut, true
		}
	}
	// Fails only for an event time past year 9999, which an S3 event
	// cannot carry (its times are RFC 3339, four-digit years).
	body, _ := contract.DeadLetter{Message: m, Truncated: truncated}.Encode()
	return body
}

// attrBudget bounds the attributes of a dead-letter message (the error text
// is cut to fit), so that body and attributes stay under MaxMessageBytes.
const attrBudget = 4096

// cutUTF8 returns s cut to at most n bytes, at a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
