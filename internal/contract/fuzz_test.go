package contract_test

import (
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// FuzzParseRunRecordKey checks that a key ParseRunRecordKey accepts is one
// RunRecordKey could have written for what it says (up to the hash): the
// agent counts runs from keys alone, so a key must not say more or other
// than its record.
func FuzzParseRunRecordKey(f *testing.F) {
	f.Add(contract.RunRecordKey("wf", 2, time.Date(2026, 3, 4, 5, 6, 7, 80, time.UTC), contract.OutcomeOK, "in", "a", "r"))
	f.Add("runs/wf/0/20260304T040607.000000080Z-failed-0123456789ab.json")
	f.Add("runs/wf/+1/20260304T040607.000000080Z-ok-0123456789ab.json")
	f.Add("runs/0/0/00000101T000000,000000000Z-ok-000000000000.json")
	f.Fuzz(func(t *testing.T, key string) {
		info, ok := contract.ParseRunRecordKey(key)
		if !ok {
			return
		}
		const hashAndSuffix = len("0123456789ab.json")
		want := contract.RunRecordKey(info.Workflow, info.Stage, info.Finished, info.Outcome, "", "", "")
		if len(key) != len(want) || key[:len(key)-hashAndSuffix] != want[:len(want)-hashAndSuffix] {
			t.Fatalf("ParseRunRecordKey(%q) = %+v, but RunRecordKey writes %q for that", key, info, want)
		}
	})
}

// FuzzDecodeMessage checks that a body DecodeMessage accepts names an
// object and encodes back to the same message.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(`{"bucket":"in","key":"in/a b.txt","size":3,"etag":"e","event_time":"2026-01-02T03:04:05.000000006Z"}`)
	f.Add(`{"bucket":"in","key":"k","event_time":"0000-01-01T00:00:00+01:00"}`)
	f.Add(`{"bucket":"in","key":"\u00e9\ud800","unknown":[1]}`)
	f.Fuzz(func(t *testing.T, body string) {
		m, err := contract.DecodeMessage(body)
		if err != nil {
			return
		}
		if m.Bucket == "" || m.Key == "" {
			t.Fatalf("DecodeMessage(%q) = %+v: no bucket or key", body, m)
		}
		again, err := m.Encode()
		if err != nil {
			return // an event time JSON cannot hold, which Encode reports
		}
		back, err := contract.DecodeMessage(again)
		if err != nil || !back.EventTime.Equal(m.EventTime) {
			t.Fatalf("%+v encoded as %q decodes as %+v, %v", m, again, back, err)
		}
		back.EventTime = m.EventTime
		if back != m {
			t.Fatalf("%+v encoded as %q decodes as %+v", m, again, back)
		}
	})
}
