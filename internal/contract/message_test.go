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
