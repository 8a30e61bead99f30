package runner_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/runner"
)

// stage is one stage's buckets and queues in kumo, local directories for
// the algorithm, and a runner Config for them.
type stage struct {
	t        testing.TB
	aws      aws.Config
	s3       *s3.Client
	sqs      *sqs.Client
	name     string
	in, out  string // input and output buckets
	state    string // state bucket
	queueURL string
	dlqURL   string
	root     string // local directory holding in/, out/, tmp/ and bin/
	cfg      runner.Config
	logs     *syncBuffer
}

type stageOptions struct {
	maxReceiveCount int           // 0: no redrive
	visibility      time.Duration // the queue's; 0: 30s
	kumoURL         string        // the emulator to use; "": the test binary's
}

func newStage(tb testing.TB, o stageOptions) *stage {
	tb.Helper()
	ctx := tb.Context()
	cfg := testenv.Kumo(tb)
	if o.kumoURL != "" {
		cfg = testenv.KumoConfig(o.kumoURL)
	}
	name := testenv.UniqueName(tb)
	s := &stage{
		t: tb, aws: cfg, name: name,
		s3:  s3.NewFromConfig(cfg, testenv.S3PathStyle),
		sqs: sqs.NewFromConfig(cfg),
		in:  name + "-in", out: name + "-out", state: name + "-state",
		root: tb.TempDir(),
		logs: new(syncBuffer),
	}
	for _, b := range []string{s.in, s.out, s.state} {
		if _, err := s.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			tb.Fatal(err)
		}
	}
	dlq, err := s.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		tb.Fatal(err)
	}
	s.dlqURL = aws.ToString(dlq.QueueUrl)
	attrs := map[string]string{}
	if o.visibility > 0 {
		attrs["VisibilityTimeout"] = strconv.Itoa(int(o.visibility / time.Second))
	}
	if o.maxReceiveCount > 0 {
		a, err := s.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
		})
		if err != nil {
			tb.Fatal(err)
		}
		policy, _ := json.Marshal(map[string]string{
			"deadLetterTargetArn": a.Attributes["QueueArn"], "maxReceiveCount": strconv.Itoa(o.maxReceiveCount),
		})
		attrs["RedrivePolicy"] = string(policy)
	}
	q, err := s.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		tb.Fatal(err)
	}
	s.queueURL = aws.ToString(q.QueueUrl)
	for _, d := range []string{"in", "out", "tmp", "bin"} {
		if err := os.Mkdir(filepath.Join(s.root, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	s.cfg = runner.Config{RunnerEnv: contract.RunnerEnv{
		QueueURL:     s.queueURL,
		InputBucket:  s.in,
		OutputBucket: s.out,
		RunCommand:   "cp $input $output",
		InputPath:    filepath.Join(s.root, "in") + "/",
		OutputPath:   filepath.Join(s.root, "out") + "/",
		Algorithm:    "copy",
		StateBucket:  s.state,
		Workflow:     name,
		Stage:        1,
		WaitTime:     time.Second,
		IdleTimeout:  time.Second,
		RetryDelay:   time.Millisecond, // below a second: retry at once
		TempDir:      filepath.Join(s.root, "tmp"),
	}, S3UsePathStyle: true}
	return s
}

// logger returns a logger for a runner that keeps its records for the test.
func (s *stage) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// run runs the runner until the queue is idle and fails the test if it
// returns an error; on failure of the test its logs are shown.
func (s *stage) run() {
	s.t.Helper()
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("runner logs:\n%s", s.logs.String())
		}
	})
	if err := runner.Run(s.t.Context(), s.aws, s.cfg, s.logger()); err != nil {
		s.t.Fatalf("Run: %v", err)
	}
}

// put uploads an input object.
func (s *stage) put(key, content string) {
	s.t.Helper()
	_, err := s.s3.PutObject(s.t.Context(), &s3.PutObjectInput{Bucket: &s.in, Key: &key, Body: strings.NewReader(content)})
	if err != nil {
		s.t.Fatal(err)
	}
}

// send queues the message the stage function would send for key.
func (s *stage) send(key string) {
	s.t.Helper()
	body, err := contract.Message{Bucket: s.in, Key: key, Size: 1, ETag: "e", EventTime: time.Now().UTC()}.Encode()
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.sqs.SendMessage(s.t.Context(), &sqs.SendMessageInput{QueueUrl: &s.queueURL, MessageBody: aws.String(body)}); err != nil {
		s.t.Fatal(err)
	}
}

// get reads an object; ok is false when it does not exist.
func (s *stage) get(bucket, key string) (content string, ok bool) {
	s.t.Helper()
	out, err := s.s3.GetObject(s.t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return "", false
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b), true
}

// objects lists the keys of a bucket.
func (s *stage) objects(bucket string) []string {
	s.t.Helper()
	out, err := s.s3.ListObjectsV2(s.t.Context(), &s3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		s.t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	slices.Sort(keys)
	return keys
}

// records reads the run records of the stage, oldest first, checking that
// each key says what its record says.
func (s *stage) records() []contract.RunRecord {
	s.t.Helper()
	var recs []contract.RunRecord
	for _, key := range s.objects(s.state) {
		info, ok := contract.ParseRunRecordKey(key)
		if !ok {
			s.t.Errorf("state bucket key %q is not a record key", key)
			continue
		}
		body, _ := s.get(s.state, key)
		r, err := contract.DecodeRunRecord([]byte(body))
		if err != nil {
			s.t.Fatalf("record %s: %v", key, err)
		}
		if info.Outcome != r.Outcome || info.Workflow != r.Workflow || info.Stage != r.Stage || !info.Finished.Equal(r.Finished) {
			s.t.Errorf("record key %q says %+v, the record %+v", key, info, r)
		}
		recs = append(recs, r)
	}
	return recs
}

// inFlight returns the queue's visible and in-flight message counts.
func (s *stage) inFlight(url string) (visible, invisible int) {
	s.t.Helper()
	out, err := s.sqs.GetQueueAttributes(s.t.Context(), &sqs.GetQueueAttributesInput{
		QueueUrl: &url,
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		s.t.Fatal(err)
	}
	visible, _ = strconv.Atoi(out.Attributes["ApproximateNumberOfMessages"])
	invisible, _ = strconv.Atoi(out.Attributes["ApproximateNumberOfMessagesNotVisible"])
	return visible, invisible
}

// script writes an executable shell script into bin/ and returns its path.
func (s *stage) script(name, body string) string {
	s.t.Helper()
	p := filepath.Join(s.root, "bin", name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nset -e\n"+body+"\n"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// leftovers lists the files under root other than the test's scripts:
// after a run, in/, out/ and tmp/ must be empty again.
func (s *stage) leftovers() []string {
	s.t.Helper()
	var out []string
	err := filepath.WalkDir(s.root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		switch {
		case rel == "." || rel == "in" || rel == "out" || rel == "tmp" || rel == "bin":
		case strings.HasPrefix(rel, "bin/"):
		default:
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for the runner's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
