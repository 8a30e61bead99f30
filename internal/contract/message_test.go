package contract_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

func TestMessageRoundTrip(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, m := range []contract.Message{
		{Bucket: "in", Key: "in/a b+c 日本.txt", Size: 42, ETag: "abc", VersionID: "v1", Sequencer: "0055", EventTime: at},
		{Bucket: "in", Key: "a.txt"}, // optional fields empty
		{Bucket: "in", Key: `"quoted" \ <html> & %2B`, Size: 1 << 40, EventTime: at},
	} {
		body, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", m, err)
		}
		got, err := contract.DecodeMessage(body)
		if err != nil || got != m {
			t.Errorf("DecodeMessage(%s) = %+v, %v, want %+v", body, got, err, m)
		}
		dead, err := contract.DecodeDeadLetter(body)
		if err != nil || dead.Message != m || dead.Truncated {
			t.Errorf("DecodeDeadLetter(%s) = %+v, %v, want the message, not truncated", body, dead, err)
		}
	}
}

func TestMessageRejects(t *testing.T) {
	for _, bad := range []string{"", "{", `{"bucket":"b"}`, `{"key":"k"}`, `[]`, `{"bucket":"b","key":"k","size":"big"}`} {
		if m, err := contract.DecodeMessage(bad); err == nil || !strings.HasPrefix(err.Error(), "parse message: ") {
			t.Errorf("DecodeMessage(%q) = %+v, %v, want a parse message error", bad, m, err)
		}
	}
	if _, err := (contract.Message{Bucket: "b", Key: "k", EventTime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}).Encode(); err == nil {
		t.Error("Encode of an event time past year 9999 gave no error")
	}
}

func TestDeadLetterRoundTrip(t *testing.T) {
	for _, d := range []contract.DeadLetter{
		{Message: contract.Message{Bucket: "in", Key: strings.Repeat("k", 1024)}, Truncated: true},
		{Message: contract.Message{Bucket: "in"}}, // a bad record: no key
		{},
	} {
		body, err := d.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", d, err)
		}
		got, err := contract.DecodeDeadLetter(body)
		if err != nil || got != d {
			t.Errorf("DecodeDeadLetter(%s) = %+v, %v, want %+v", body, got, err, d)
		}
	}
	for _, bad := range []string{"", "{", `[]`, `{"truncated":"yes"}`} {
		if d, err := contract.DecodeDeadLetter(bad); err == nil {
			t.Errorf("DecodeDeadLetter(%q) = %+v, want an error", bad, d)
		}
	}
}

// TestDeadLetterFromInvocationRecord: Lambda's record of an S3 event the
// stage function failed reads as a dead letter of the event's object, its
// key decoded as the function decodes it, with what became of the
// invocation; anything else is not taken for one.
func TestDeadLetterFromInvocationRecord(t *testing.T) {
	const event = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-01-02T03:04:05.000Z",` +
		`"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"lab-in"},"object":{"key":"in/a+b%C3%A9.txt","size":3,"eTag":"e1","sequencer":"0A"}}}]}`
	record := func(condition, payload, response string) string {
		return `{"version":"1.0","timestamp":"2026-01-02T03:07:05.568Z","requestContext":{"requestId":"e4b46cbf",` +
			`"functionArn":"arn:aws:lambda:us-east-1:123456789012:function:cp-wf-0:$LATEST","condition":"` + condition + `","approximateInvokeCount":3},` +
			`"requestPayload":` + payload + `,"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"}` + response + `}`
	}
	object := contract.Message{Bucket: "lab-in", Key: "in/a bé.txt", Size: 3, ETag: "e1", Sequencer: "0A",
		EventTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	tests := []struct {
		name, body string
		want       contract.DeadLetter
	}{
		{"retries exhausted", record("RetriesExhausted", event, `,"responsePayload":{"errorMessage":"queue 1 of 1 messages: AccessDenied","errorType":"wrapError"}`),
			contract.DeadLetter{Message: object, Invocation: contract.FailedInvocation{RequestID: "e4b46cbf", Condition: "RetriesExhausted", Attempts: 3,
				Error: "queue 1 of 1 messages: AccessDenied"}}},
		{"too old, no response", record("EventAgeExceeded", event, ""),
			contract.DeadLetter{Message: object, Invocation: contract.FailedInvocation{RequestID: "e4b46cbf", Condition: "EventAgeExceeded", Attempts: 3}}},
		{"not an S3 event", record("RetriesExhausted", `{"ORDER_IDS":["9e07af03"]}`, ""),
			contract.DeadLetter{Invocation: contract.FailedInvocation{RequestID: "e4b46cbf", Condition: "RetriesExhausted", Attempts: 3}}},
		{"a queue message", `{"bucket":"lab-in","key":"in/a bé.txt","size":3,"etag":"e1","sequencer":"0A","event_time":"2026-01-02T03:04:05Z"}`,
			contract.DeadLetter{Message: object}},
		{"a message that has a requestContext of its own", `{"bucket":"b","key":"k","requestContext":{}}`,
			contract.DeadLetter{Message: contract.Message{Bucket: "b", Key: "k"}}},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			got, err := contract.DecodeDeadLetter(tt.body)
			if err != nil || got != tt.want {
				t.Errorf("DecodeDeadLetter(%s)\n= %+v, %v\nwant %+v", tt.body, got, err, tt.want)
			}
		})
	}
}
