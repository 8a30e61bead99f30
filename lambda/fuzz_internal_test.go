package lambda

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// FuzzS3Event feeds hostile S3 event JSON to the handler's decoding and
// message building: no panic; every record becomes a message carrying the
// decoded key, a folder marker, or an error; the clientToken is the same for
// the same record and at most 64 characters, as ECS requires.
func FuzzS3Event(f *testing.F) {
	f.Add([]byte(`{"Records":[{"eventTime":"2026-11-25T10:00:00Z","s3":{"bucket":{"name":"in"},"object":{"key":"a+b%2Bc.txt","size":3,"eTag":"e"}}}]}`))
	f.Add([]byte(`{"Records":[{"s3":{"bucket":{"name":"in"},"object":{"key":"%24%28reboot%29.txt"}}}]}`))
	f.Add([]byte(`{"Records":[{"s3":{"bucket":{"name":""},"object":{"key":"dir/"}}}]}`))
	f.Add([]byte(`{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"%ZZ"}}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev events.S3Event
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		for _, r := range ev.Records {
			j, skip, err := newJob(r)
			if err != nil || skip {
				continue
			}
			if j.msg.Bucket == "" || j.msg.Key == "" || strings.HasSuffix(j.msg.Key, "/") {
				t.Fatalf("message for a record without bucket or key, or a folder: %+v", j.msg)
			}
			if r.S3.Object.URLDecodedKey == "" {
				if want, err := url.QueryUnescape(r.S3.Object.Key); err == nil && want != j.msg.Key {
					t.Fatalf("key %q decoded to %q, want %q", r.S3.Object.Key, j.msg.Key, want)
				}
			}
			back, err := contract.DecodeMessage(j.body)
			if err != nil || back.Key != j.msg.Key || back.Bucket != j.msg.Bucket {
				t.Fatalf("message body %q does not round-trip: %v", j.body, err)
			}
			again, _, _ := newJob(r)
			if again.token != j.token || len(j.token) == 0 || len(j.token) > 64 {
				t.Fatalf("clientToken %q (again %q): must be stable and 1-64 characters", j.token, again.token)
			}
		}
	})
}
