package runner_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/runner"
)

func TestRunSingleFile(t *testing.T) {
	s := newStage(t, stageOptions{})
	s.cfg.RunCommand = "sort -o $output $input"
	s.cfg.Algorithm = "sort-lines"
	s.put("data/in.txt", "b\nc\na\n")
	s.send("data/in.txt")
	s.put("empty.txt", "")
	s.send("empty.txt")
	before := time.Now().UTC()
	s.run()

	if got, ok := s.get(s.out, "data/Result-sort-lines-in.txt"); !ok || got != "a\nb\nc\n" {
		t.Errorf("result = %q (exists %v), want the sorted lines", got, ok)
	}
	if got, ok := s.get(s.out, "Result-sort-lines-empty.txt"); !ok || got != "" {
		t.Errorf("result of the empty file = %q (exists %v), want an empty object", got, ok)
	}
	if v, inv := s.inFlight(s.queueURL); v+inv != 0 {
		t.Errorf("queue holds %d visible, %d in-flight messages, want none (deleted)", v, inv)
	}
	recs := s.records()
	if len(recs) != 2 {
		t.Fatalf("%d run records, want 2", len(recs))
	}
	var r contract.RunRecord
	for _, rec := range recs {
		if rec.Input == "s3://"+s.in+"/data/in.txt" {
			r = rec
		}
	}
	want := contract.RunRecord{
		Workflow: s.name, Stage: 1, Algorithm: "sort-lines",
		Input: "s3://" + s.in + "/data/in.txt", Result: "s3://" + s.out + "/data/Result-sort-lines-in.txt",
		Outcome: contract.OutcomeOK, Attempt: 1, Bytes: 6, ResultBytes: 6,
	}
	got := r
	got.Started, got.Finished, got.MessageID = time.Time{}, time.Time{}, ""
	if got != want {
		t.Errorf("record = %+v\nwant     %+v", got, want)
	}
	if r.Started.Before(before) || r.Finished.Before(r.Started) || r.MessageID == "" {
		t.Errorf("record times %v..%v, message id %q", r.Started, r.Finished, r.MessageID)
	}
	if l := s.leftovers(); len(l) != 0 {
		t.Errorf("files left behind: %q", l)
	}
	// The runner acted as the stage's task role, and IAM allowed it.
	rep := testenv.AWSRules(t).Report()
	role := s.taskRole[strings.LastIndexByte(s.taskRole, '/')+1:]
	if r := rep.Principals[role]; r.Authorized == 0 || len(r.Denied) > 0 {
		t.Errorf("the task role's authorizations: %+v, want some and no denial", r)
	}
	authorized, denied := 0, 0
	for _, r := range rep.Principals {
		authorized += r.Authorized
		denied += len(r.Denied)
	}
	t.Logf("AWS rules so far in this package: %d principals, %d authorized, %d denied; this role %+v, unused statements %v",
		len(rep.Principals), authorized, denied, rep.Principals[role], rep.Unused[role])
}

// TestRunHostileKeys feeds keys that a shell or a careless path join would
// misread. Each must arrive as one argument naming a file inside the input
// directory, and nothing may be written elsewhere.
func TestRunHostileKeys(t *testing.T) {
	s := newStage(t, stageOptions{})
	// The script writes the path it was given, then the content it read.
	rec := s.script("record.sh", `printf '%s\n' "$1" > "$2"; cat "$1" >> "$2"; test $# -eq 2`)
	s.cfg.RunCommand = "sh " + rec + " $input $output"
	tests := []struct{ key, name string }{
		{"in/a b.txt", "a b.txt"},
		{"in/a+b.txt", "a+b.txt"},
		{"in/日本語 ファイル.txt", "日本語 ファイル.txt"},
		{"in/$(reboot).txt", "$(reboot).txt"},
		{"in/`id`;rm -rf *", "`id`;rm -rf *"},
		{"x/; rm -rf / #", " #"},
		{`in/"quoted' name".csv`, `"quoted' name".csv`},
		// Keys with ".." segments ("../../etc/passwd") cannot be stored in
		// kumo, whose router cleans paths: TestLocalName covers them.
		{`..\..\etc\passwd`, `..\..\etc\passwd`},
		{"in/...", "..."},
		{"in/-rf", "-rf"},
		{"in/--output=x", "--output=x"},
		{"in/tab\there\x01.txt", "tab_here_.txt"},
		{"in/$output", "$output"},
	}
	for _, tt := range tests {
		s.put(tt.key, "content of "+tt.key)
		s.send(tt.key)
	}
	s.run()

	for _, tt := range tests {
		key := runner.ResultKey(tt.key, "copy", false)
		got, ok := s.get(s.out, key)
		want := filepath.Join(s.root, "in", tt.name) + "\ncontent of " + tt.key
		if !ok || got != want {
			t.Errorf("key %q: result %q = %q (exists %v), want %q", tt.key, key, got, ok, want)
		}
	}
	for _, r := range s.records() {
		if r.Outcome != contract.OutcomeOK {
			t.Errorf("run of %s: %s (%s)", r.Input, r.Outcome, r.Error)
		}
	}
	if l := s.leftovers(); len(l) != 0 {
		t.Errorf("files left behind: %q", l)
	}
}

// TestRunUnusableKeys: keys that name no file fail their run, and are never
// turned into a path outside the input directory.
func TestRunUnusableKeys(t *testing.T) {
	s := newStage(t, stageOptions{maxReceiveCount: 1})
	for _, key := range []string{"folder/", "a/..", ".."} {
		s.send(key)
	}
	s.run()
	recs := s.records()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for _, r := range recs {
		if r.Outcome != contract.OutcomeFailed || !strings.HasPrefix(r.Error, "message: ") {
			t.Errorf("run of %s: %s %q, want a failed message step", r.Input, r.Outcome, r.Error)
		}
	}
	if l := s.leftovers(); len(l) != 0 {
		t.Errorf("files left behind: %q", l)
	}
}

func TestRunOtherBucketRefused(t *testing.T) {
	s := newStage(t, stageOptions{maxReceiveCount: 1})
	_, err := s.sqs.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: &s.queueURL,
		MessageBody: aws.String(`{"bucket":"someone-elses","key":"secret.txt"}`)})
	if err != nil {
		t.Fatal(err)
	}
	s.run()
	recs := s.records()
	if len(recs) != 1 || recs[0].Outcome != contract.OutcomeFailed || !strings.Contains(recs[0].Error, "another bucket") {
		t.Errorf("records %+v, want one failure naming the bucket mismatch", recs)
	}
}

func TestRunDuplicateMessage(t *testing.T) {
	s := newStage(t, stageOptions{})
	s.put("a.txt", "new")
	s.send("a.txt")
	s.send("a.txt")
	// b.txt's result exists already: its run must not overwrite it.
	s.put("b.txt", "new")
	s.send("b.txt")
	if _, err := s.s3.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &s.out, Key: aws.String("Result-copy-b.txt"),
		Body: strings.NewReader("earlier")}); err != nil {
		t.Fatal(err)
	}
	s.run()

	if got, _ := s.get(s.out, "Result-copy-a.txt"); got != "new" {
		t.Errorf("a's result = %q, want %q", got, "new")
	}
	if got, _ := s.get(s.out, "Result-copy-b.txt"); got != "earlier" {
		t.Errorf("b's result = %q, want the earlier one kept", got)
	}
	var dup, fresh int
	for _, r := range s.records() {
		switch {
		case r.Outcome != contract.OutcomeOK:
			t.Errorf("run of %s failed: %s", r.Input, r.Error)
		case r.Duplicate:
			dup++
		default:
			fresh++
		}
	}
	if dup != 2 || fresh != 1 {
		t.Errorf("%d duplicate and %d fresh runs, want 2 and 1", dup, fresh)
	}
	if v, inv := s.inFlight(s.queueURL); v+inv != 0 {
		t.Errorf("queue holds %d messages, want none: duplicates are deleted too", v+inv)
	}
}

func TestRunFailingCommandReachesDeadLetterQueue(t *testing.T) {
	s := newStage(t, stageOptions{maxReceiveCount: 2})
	s.cfg.RunCommand = "sh $input $output"
	s.put("fail.sh", "echo about to fail >&2\nexit 3\n")
	s.send("fail.sh")
	s.run()

	if _, ok := s.get(s.out, "Result-copy-fail.sh"); ok {
		t.Error("a failed run uploaded a result")
	}
	recs := s.records()
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2 (maxReceiveCount)", len(recs))
	}
	for i, r := range recs {
		if r.Outcome != contract.OutcomeFailed || r.Error != "run: exit status 3" || r.Attempt != i+1 {
			t.Errorf("record %d: outcome %s, error %q, attempt %d; want failed, run: exit status 3, %d", i, r.Outcome, r.Error, r.Attempt, i+1)
		}
	}
	out, err := s.sqs.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: &s.dlqURL, WaitTimeSeconds: 1})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("dead-letter queue: %d messages, %v; want the failed message", len(out.Messages), err)
	}
	if m, err := contract.DecodeMessage(aws.ToString(out.Messages[0].Body)); err != nil || m.Key != "fail.sh" {
		t.Errorf("dead letter %q: %v", aws.ToString(out.Messages[0].Body), err)
	}
	if !strings.Contains(s.logs.String(), "about to fail") {
		t.Error("the command's stderr is not in the log")
	}
	if l := s.leftovers(); len(l) != 0 {
		t.Errorf("files left behind: %q", l)
	}
}

// TestRunStaysForItsRetries: a failed message is released for a retry that
// comes later than the idle timeout. The runner must still be there to
// receive it, and to let SQS move it to the dead-letter queue after the
// last attempt, since no other task may be running.
func TestRunStaysForItsRetries(t *testing.T) {
	s := newStage(t, stageOptions{maxReceiveCount: 2})
	s.cfg.RunCommand = "sh $input $output"
	s.cfg.RetryDelay = time.Second // SQS counts whole seconds: 1 s, then 2 s
	s.cfg.IdleTimeout = 500 * time.Millisecond
	s.put("fail.sh", "exit 3\n")
	s.send("fail.sh")
	start := time.Now()
	s.run()
	took := time.Since(start)

	recs := s.records()
	if len(recs) != 2 {
		t.Fatalf("%d records after %v, want 2: the runner left before its retry came back", len(recs), took)
	}
	out, err := s.sqs.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: &s.dlqURL, WaitTimeSeconds: 1})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("dead-letter queue: %d messages, %v; want the failed message", len(out.Messages), err)
	}
	t.Logf("two attempts and the move to the dead-letter queue took %v", took)
}

// TestRunMissingObjectFails: the run of an input that is gone fails, and
// its record says so. As the task role, that takes s3:ListBucket on the
// input bucket: without it S3 answers 403 AccessDenied for a missing key.
func TestRunMissingObjectFails(t *testing.T) {
	s := newStage(t, stageOptions{maxReceiveCount: 1})
	s.send("never-uploaded.txt")
	s.run()
	recs := s.records()
	if len(recs) != 1 || recs[0].Error != "download: NoSuchKey (HTTP 404)" {
		t.Errorf("records %+v, want one failed download with NoSuchKey", recs)
	}
}

func TestRunDirectoryOutputIsZipped(t *testing.T) {
	s := newStage(t, stageOptions{})
	mk := s.script("mkdir.sh", `mkdir "$2" "$2/sub"; cp "$1" "$2/copy.txt"; echo hi > "$2/sub/x"`)
	s.cfg.RunCommand = "sh " + mk + " $input $output"
	s.put("in/d.txt", "data")
	s.send("in/d.txt")
	s.run()
	checkZip(t, s, "in/Result-copy-d.txt.zip", map[string]string{"copy.txt": "data", "sub/": "", "sub/x": "hi\n"})
	if l := s.leftovers(); len(l) != 0 {
		t.Errorf("files left behind: %q", l)
	}
}

// TestRunOutputDirectoryWithoutPlaceholder: without $output, what the
// command leaves in output_file_path is the result, zipped; files that were
// there before stay out of it and stay in place.
func TestRunOutputDirectoryWithoutPlaceholder(t *testing.T) {
	s := newStage(t, stageOptions{})
	out := filepath.Join(s.root, "out")
	if err := os.WriteFile(filepath.Join(out, "old.txt"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	gen := s.script("gen.sh", `cp "$1" "$2/a.txt"; echo b > "$2/b.txt"`)
	s.cfg.RunCommand = "sh " + gen + " $input " + out
	s.put("x.txt", "x")
	s.send("x.txt")
	s.run()
	checkZip(t, s, "Result-copy-x.txt.zip", map[string]string{"a.txt": "x", "b.txt": "b\n"})
	if l := s.leftovers(); !slices.Equal(l, []string{"out/old.txt"}) {
		t.Errorf("files in the work directories: %q, want only out/old.txt, which was there before", l)
	}
}

func TestRunOutputFileWithoutPlaceholder(t *testing.T) {
	s := newStage(t, stageOptions{})
	s.cfg.OutputPath = filepath.Join(s.root, "out", "result.csv")
	s.cfg.RunCommand = "cp $input " + s.cfg.OutputPath
	s.put("p/x.csv", "1,2\n")
	s.send("p/x.csv")
	s.run()
	if got, ok := s.get(s.out, "p/Result-copy-x.csv"); !ok || got != "1,2\n" {
		t.Errorf("result = %q (exists %v)", got, ok)
	}
	if l := s.leftovers(); len(l) != 0 {
		t.Errorf("files left behind: %q", l)
	}
}

func TestRunNoOutputFails(t *testing.T) {
	s := newStage(t, stageOptions{maxReceiveCount: 1})
	s.cfg.RunCommand = "true $input $output"
	s.put("x.txt", "x")
	s.send("x.txt")
	s.run()
	recs := s.records()
	if len(recs) != 1 || recs[0].Outcome != contract.OutcomeFailed || !strings.HasPrefix(recs[0].Error, "output: ") {
		t.Errorf("records %+v, want one failed output step", recs)
	}
}

// TestRunHeartbeat runs a command for longer than the visibility timeout:
// the runner's heartbeats must keep the message from everyone else.
func TestRunHeartbeat(t *testing.T) {
	s := newStage(t, stageOptions{visibility: 2 * time.Second, shortPoll: true})
	slow := s.script("slow.sh", `sleep 3; cp "$1" "$2"`)
	s.cfg.RunCommand = "sh " + slow + " $input $output"
	s.cfg.Visibility = 2 * time.Second
	s.put("slow.txt", "s")
	s.send("slow.txt")

	var stolen atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(500 * time.Millisecond) // let the runner take it first
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
			// Short polls: kumo's long poll does not wake when an in-flight
			// message becomes visible again.
			out, err := s.sqs.ReceiveMessage(context.WithoutCancel(t.Context()), &sqs.ReceiveMessageInput{QueueUrl: &s.queueURL, WaitTimeSeconds: 0})
			if err == nil && len(out.Messages) > 0 {
				stolen.Add(1)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	s.run()
	<-done
	if n := stolen.Load(); n != 0 {
		t.Errorf("another receiver got the message %d times during the run", n)
	}
	recs := s.records()
	if len(recs) != 1 || recs[0].Outcome != contract.OutcomeOK {
		t.Errorf("records %+v, want one ok run", recs)
	}
	if !strings.Contains(s.logs.String(), "visibility extended") {
		t.Error("no heartbeat in the log")
	}
}

// TestRunCancelReleasesMessage stops the runner mid-run, as SIGTERM does:
// Run returns at once and the message is visible again for another task.
func TestRunCancelReleasesMessage(t *testing.T) {
	s := newStage(t, stageOptions{})
	long := s.script("long.sh", "sleep 60")
	s.cfg.RunCommand = "sh " + long + " $input $output"
	s.put("long.txt", "l")
	s.send("long.txt")
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(time.Second, cancel)
	start := time.Now()
	err := runner.Run(ctx, s.aws, s.cfg, s.logger())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v after cancellation", d)
	}
	out, err := s.sqs.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: &s.queueURL, WaitTimeSeconds: 0})
	if err != nil || len(out.Messages) != 1 {
		t.Errorf("after cancellation the message is not available again: %d messages, %v", len(out.Messages), err)
	}
	recs := s.records()
	if len(recs) != 1 || recs[0].Error != "run: interrupted" {
		t.Errorf("records %+v, want one interrupted run", recs)
	}
	if l := s.leftovers(); len(l) != 0 {
		t.Errorf("files left behind: %q", l)
	}
}

func TestRunIdleExit(t *testing.T) {
	s := newStage(t, stageOptions{})
	s.cfg.IdleTimeout = 1500 * time.Millisecond
	start := time.Now()
	s.run()
	if d := time.Since(start); d < s.cfg.IdleTimeout || d > s.cfg.IdleTimeout+3*time.Second {
		t.Errorf("Run returned after %v, want about the idle timeout %v", d, s.cfg.IdleTimeout)
	}
}

func TestRunWithoutStateBucket(t *testing.T) {
	s := newStage(t, stageOptions{})
	s.cfg.StateBucket = ""
	s.put("x.txt", "x")
	s.send("x.txt")
	s.run()
	if _, ok := s.get(s.out, "Result-copy-x.txt"); !ok {
		t.Error("no result")
	}
	if n := len(s.objectsUnder(s.state, contract.RunsPrefix)); n != 0 {
		t.Errorf("%d run records in the state bucket, want 0", n)
	}
}

func TestRunInvalidConfig(t *testing.T) {
	s := newStage(t, stageOptions{})
	s.cfg.QueueURL, s.cfg.RunCommand = "", ""
	err := runner.Run(t.Context(), s.aws, s.cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "CLOUDPIPE_QUEUE_URL") || !strings.Contains(err.Error(), "CLOUDPIPE_RUN_COMMAND") {
		t.Errorf("Run = %v, want both missing settings named", err)
	}
}

// checkZip reads the zip at key from the output bucket and compares its
// entries with want (name -> content; directories end in "/").
func checkZip(t *testing.T, s *stage, key string, want map[string]string) {
	t.Helper()
	data, ok := s.get(s.out, key)
	if !ok {
		t.Fatalf("no result %s; output bucket holds %q", key, s.objects(s.out))
	}
	zr, err := zip.NewReader(bytes.NewReader([]byte(data)), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(rc)
		rc.Close()
		got[f.Name] = b.String()
	}
	var names []string
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	for n, w := range want {
		if got[n] != w {
			t.Errorf("zip entry %q = %q, want %q (entries %q)", n, got[n], w, names)
		}
	}
	if len(got) != len(want) {
		t.Errorf("zip entries %q, want %d", names, len(want))
	}
}

// TestRunOldRuntimeVariables: the algorithm's process gets the variables
// the original cloud_pipe runtime set, with their old meanings, unless the
// container's environment (a workflow's variables) already has them.
func TestRunOldRuntimeVariables(t *testing.T) {
	show := `printf '%s|%s|%s|%s|%s|%s\n' "$NAME" "$output_s3_name" "$sqs" "$AWS_DEFAULT_REGION" "$AWS_DEFAULT_OUTPUT" "$LOG_LVL" > "$2"`
	for _, tc := range []struct {
		name string
		env  map[string]string // the container's, as a workflow's variables set it
		want func(s *stage) string
	}{
		{"the old values", map[string]string{"NAME": "", "output_s3_name": "", "sqs": "", "AWS_DEFAULT_REGION": "", "AWS_DEFAULT_OUTPUT": "", "LOG_LVL": ""},
			func(s *stage) string {
				return "copy|" + s.out + "|" + s.queueURL + "|" + testenv.Region + "|json|WARNING\n"
			}},
		{"the workflow's own win", map[string]string{"NAME": "mine", "output_s3_name": "", "sqs": "", "AWS_DEFAULT_REGION": "", "AWS_DEFAULT_OUTPUT": "text", "LOG_LVL": "DEBUG"},
			func(s *stage) string {
				return "mine|" + s.out + "|" + s.queueURL + "|" + testenv.Region + "|text|DEBUG\n"
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			s := newStage(t, stageOptions{})
			s.cfg.RunCommand = "sh " + s.script("show.sh", show) + " $input $output"
			s.put("in.txt", "x")
			s.send("in.txt")
			s.run()
			if got, want := func() string { v, _ := s.get(s.out, "Result-copy-in.txt"); return v }(), tc.want(s); got != want {
				t.Errorf("the algorithm saw %q, want %q", got, want)
			}
		})
	}
}
