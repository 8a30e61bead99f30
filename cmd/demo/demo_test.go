package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// The tests below run the whole demo, which must own 127.0.0.1:4566 (kumo
// delivers S3 events nowhere else): they stay in this package, the only one
// that binds that port, and none of them is parallel.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// demoBinary builds the demo once per test binary, so that the stage
// functions' handlers and the runners are the real program.
func demoBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "cloudpipe-demo-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "demo")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// checkoutRoot is the repository root: the config repository the demo
// deploys by default.
func checkoutRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// lines splits text into its lines.
func lines(b []byte) []string {
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// wantSorted is what hello-sort makes of input (sort, LC_ALL=C: byte order).
func wantSorted(input []byte) []string {
	l := lines(input)
	slices.Sort(l)
	return l
}

// wantChain is what text-chain makes of input: sort, uniq, reverse sort.
func wantChain(input []byte) []string {
	l := slices.Compact(wantSorted(input))
	slices.Reverse(l)
	return l
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("result not downloaded: %v", err)
	}
	return lines(b)
}

// TestDemoOnce runs the built demo as a person would, with --once, and
// checks both example workflows' results.
func TestDemoOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo (AWS emulator, handlers, runners): not in -short")
	}
	bin := demoBinary(t)
	dl := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--once", "--download", dl)
	cmd.Dir = checkoutRoot(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if err != nil {
		t.Fatalf("demo --once: %v", err)
	}

	got := readLines(t, filepath.Join(dl, "hello-sort", "Result-sort-lines-sample.txt"))
	if want := wantSorted(sampleText); !slices.Equal(got, want) {
		t.Errorf("hello-sort result = %q, want %q", got, want)
	}
	got = readLines(t, filepath.Join(dl, "text-chain", "Result-reverse-lines-Result-uniq-lines-Result-sort-lines-sample.txt"))
	if want := wantChain(sampleText); !slices.Equal(got, want) {
		t.Errorf("text-chain result = %q, want %q", got, want)
	}
	for _, want := range []string{
		"status cloudpipe/hello-sort success: upload to s3://cloudpipe-example-hello-in · results in s3://cloudpipe-example-hello-out",
		"text-chain: stage 2 (reverse-lines): result in s3://cloudpipe-example-chain-out/",
		"Nothing runs in a container",
		"all 2 results arrived",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// runSeq tells in-process runs apart: kumo's state lives as long as the
// test process, so each run gets its own state bucket (and so its own
// inventory, which makes the pass register task definitions the local ECS
// of this run knows).
var runSeq atomic.Int64

// TestDemoOddKey runs the demo's main logic in-process with an upload whose
// key has spaces, a plus sign and non-ASCII letters: S3 events carry keys
// URL-encoded, with "+" for a space, and every stage must decode them.
func TestDemoOddKey(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo (AWS emulator, handlers, runners): not in -short")
	}
	bin := demoBinary(t)
	input := []byte("zoë\nalpha beta\n+plus\nalpha beta\nÅngström\n42\n")
	// kumo's state outlives a run in this process, and a result is never
	// overwritten: each run uploads a key of its own.
	seq := runSeq.Add(1)
	name := fmt.Sprintf("my file+%d ünïcødé.txt", seq)
	upload := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(upload, input, 0o644); err != nil {
		t.Fatal(err)
	}
	dl := t.TempDir()
	var stdout, stderr syncBuffer
	o := demoOptions(t, checkoutRoot(t), bin, seq, &stderr)
	o.upload, o.download, o.once = upload, dl, true
	err := run(t.Context(), o, &stdout)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	got := readLines(t, filepath.Join(dl, "hello-sort", "Result-sort-lines-"+name))
	if want := wantSorted(input); !slices.Equal(got, want) {
		t.Errorf("hello-sort result = %q, want %q", got, want)
	}
	got = readLines(t, filepath.Join(dl, "text-chain", "Result-reverse-lines-Result-uniq-lines-Result-sort-lines-"+name))
	if want := wantChain(input); !slices.Equal(got, want) {
		t.Errorf("text-chain result = %q, want %q", got, want)
	}
}

// TestDemoPortTaken checks that a demo that cannot have port 4566 says why
// it needs it.
func TestDemoPortTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("binds port 4566: not in -short")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:4566")
	if err != nil {
		t.Fatalf("port 4566 is not free for this test: %v", err)
	}
	defer ln.Close()
	var stdout bytes.Buffer
	err = run(t.Context(), options{port: defaultPort, once: true, timeout: time.Minute, logLevel: slog.LevelWarn,
		executable: os.Args[0], repo: checkoutRoot(t), kumoURL: testenv.KumoURL(t), stderr: &bytes.Buffer{}}, &stdout)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "kumo delivers S3 event notifications only to localhost:4566") {
		t.Errorf("run with port 4566 taken: err %v, want EADDRINUSE and why the port is needed", err)
	}
}

// smallFile returns a file to zip as the stage functions' code: kumo never
// runs it, and the demo's 100 MB would make CreateFunction take minutes
// under the race detector.
func smallFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer is a bytes.Buffer safe for the demo's concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemoImageCannotBePulled runs the demo with every algorithm's image
// under registry.invalid/, which the local ECS cannot pull, as ECS could
// not: the stage's tasks stop before receiving the file, the agent's loop
// starts one again until its bound, then moves the file to the stage's
// dead-letter queue. The demo fails, names the stopped reason, and the
// file is in the dead-letter queue, not lost.
func TestDemoImageCannotBePulled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo (AWS emulator, handlers, runners): not in -short")
	}
	bin := demoBinary(t)
	seq := runSeq.Add(1)
	name := fmt.Sprintf("stranded-%d-%d.txt", seq, time.Now().UnixNano())
	upload := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(upload, sampleText, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	o := demoOptions(t, checkoutRoot(t), bin, seq, &stderr)
	o.workflow, o.upload, o.once = "hello-sort", upload, true
	o.algorithmImage = "registry.invalid/cloudpipe/sort:1"
	o.runStatusEvery = 200 * time.Millisecond
	err := run(t.Context(), o, &stdout)
	out := stdout.String()
	t.Logf("stdout:\n%s\nstderr:\n%s", out, stderr.String())
	if !errors.Is(err, errReported) {
		t.Fatalf("run = %v, want the failure reported", err)
	}
	for _, want := range []string{
		"hello-sort: stage 0 (sort-lines): task ",
		"could not start: CannotPullContainerError",
		"status cloudpipe/run/hello-sort pending: 1 waiting · task stopped: CannotPullContainerError",
		"status cloudpipe/run/hello-sort failure: 1 dead-lettered after 3 failed starts: CannotPullContainerError",
		"s3://cloudpipe-example-hello-in/" + name + " dead-lettered to cp-hello-sort-0-dlq",
		"1 of 1 workflows failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	// The file is in the stage's dead-letter queue, once.
	q := sqs.NewFromConfig(testenv.Kumo(t))
	u, err := q.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String("cp-hello-sort-0-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for range 20 { // other runs in this process left dead letters too
		got, err := q.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: u.QueueUrl, MaxNumberOfMessages: 10,
			MessageAttributeNames: []string{"All"}, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Messages) == 0 {
			break
		}
		for _, m := range got.Messages {
			dl, err := contract.DecodeDeadLetter(aws.ToString(m.Body))
			if err != nil || dl.Key != name {
				continue
			}
			found++
			if r := aws.ToString(m.MessageAttributes[contract.AttrDeadLetterReason].StringValue); r != contract.DeadLetterStranded {
				t.Errorf("dead letter's reason = %q, want %q", r, contract.DeadLetterStranded)
			}
			if _, err := q.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: u.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if found != 1 {
		t.Errorf("%s is %d times in the dead-letter queue, want once", name, found)
	}
}

// iamFigures returns an options.iamReport that logs what IAM authorized in
// one demo run, by role (the agent's, each stage function's and task's),
// and fails the test on any denial: the policies the agent writes must
// allow everything the demo's data path does.
func iamFigures(t *testing.T) func(awsrules.Report) {
	return func(r awsrules.Report) {
		roles := slices.Sorted(maps.Keys(r.Principals))
		if len(roles) == 0 {
			t.Error("IAM authorized nothing: the demo's requests did not reach the rules signed as roles")
		}
		for _, role := range roles {
			p := r.Principals[role]
			t.Logf("IAM %s: %d authorized, %d denied; statements that allowed nothing: %v", role, p.Authorized, len(p.Denied), r.Unused[role])
			for _, d := range p.Denied {
				t.Errorf("IAM denied %s: %s", role, d)
			}
		}
	}
}

// TestDemoStageFunctionFails runs the demo with the stage function's role
// no longer allowed to send to its work queue (its Queue statement removed
// behind the agent's back), so the function fails the upload's S3 event on
// every attempt, as it would when SQS refuses it. Lambda retries the event
// twice, then sends its invocation record to the stage's dead-letter queue:
// the upload is there, once, named by its key, and the demo says so.
func TestDemoStageFunctionFails(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo (AWS emulator, handlers, runners): not in -short")
	}
	bin := demoBinary(t)
	seq := runSeq.Add(1)
	name := fmt.Sprintf("refused %d-%d.txt", seq, time.Now().UnixNano())
	upload := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(upload, sampleText, 0o644); err != nil {
		t.Fatal(err)
	}
	fn := provision.ResourceName("hello-sort", 0)
	var report awsrules.Report
	var stdout, stderr syncBuffer
	o := demoOptions(t, checkoutRoot(t), bin, seq, &stderr)
	o.workflow, o.upload, o.once = "hello-sort", upload, true
	o.iamReport = func(r awsrules.Report) { report = r }
	o.beforeUpload = func(ctx context.Context, cfg aws.Config) error { return dropStatement(ctx, cfg, fn+"-lambda", "Queue") }
	err := run(t.Context(), o, &stdout)
	out := stdout.String()
	t.Logf("stdout:\n%s\nstderr:\n%s", out, stderr.String())
	if !errors.Is(err, errReported) {
		t.Fatalf("run = %v, want the failure reported", err)
	}
	if want := "s3://cloudpipe-example-hello-in/" + name + " dead-lettered to " + fn + "-dlq by Lambda: the stage function failed it 3 times: "; !strings.Contains(out, want) {
		t.Errorf("output lacks %q", want)
	}

	// Three attempts, each refused the work queue; the record went to the
	// dead-letter queue as the function's role.
	workQueue := "arn:aws:sqs:us-east-1:" + testenv.Account + ":" + fn
	lambdaRole := report.Principals[fn+"-lambda"]
	t.Logf("IAM %s-lambda: %d authorized, %d denied", fn, lambdaRole.Authorized, len(lambdaRole.Denied))
	refused := 0
	for _, d := range lambdaRole.Denied {
		if strings.HasPrefix(d, "sqs:SendMessage on "+workQueue+" ") {
			refused++
		} else {
			t.Errorf("the function's role was denied %s", d)
		}
	}
	if refused != 3 {
		t.Errorf("the function's queue sends refused %d times, want 3 (one per attempt): %q", refused, lambdaRole.Denied)
	}
	for role, p := range report.Principals {
		if role != fn+"-lambda" && len(p.Denied) > 0 {
			t.Errorf("IAM denied %s: %q", role, p.Denied)
		}
	}

	// The upload is in the dead-letter queue once, as Lambda's record, and
	// nowhere else: the work queue never had it.
	q := sqs.NewFromConfig(testenv.Kumo(t))
	found := 0
	for _, queue := range []string{fn + "-dlq", fn} {
		u, err := q.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
		if err != nil {
			t.Fatal(err)
		}
		for range 20 { // other runs in this process left messages too
			got, err := q.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: u.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Messages) == 0 {
				break
			}
			for _, m := range got.Messages {
				dl, err := contract.DecodeDeadLetter(aws.ToString(m.Body))
				if err != nil || dl.Key != name {
					continue
				}
				if queue == fn {
					t.Errorf("%s is in the work queue: %s", name, aws.ToString(m.Body))
				} else {
					found++
					if inv := dl.Invocation; inv.Condition != "RetriesExhausted" || inv.Attempts != 3 || !strings.Contains(inv.Error, "AccessDenied") {
						t.Errorf("dead letter %+v, want Lambda's record: RetriesExhausted after 3 attempts, the queue's AccessDenied", inv)
					}
				}
				if _, err := q.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: u.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if found != 1 {
		t.Errorf("%s is %d times in the dead-letter queue, want once", name, found)
	}
}

// dropStatement removes the statement sid from the inline policy the agent
// wrote on role, as someone editing it by hand would.
func dropStatement(ctx context.Context, cfg aws.Config, role, sid string) error {
	c := iam.NewFromConfig(cfg)
	out, err := c.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String("cloudpipe")})
	if err != nil {
		return err
	}
	doc := aws.ToString(out.PolicyDocument)
	if u, err := url.QueryUnescape(doc); err == nil {
		doc = u
	}
	var pol struct {
		Version   string
		Statement []map[string]any
	}
	if err := json.Unmarshal([]byte(doc), &pol); err != nil {
		return err
	}
	n := len(pol.Statement)
	pol.Statement = slices.DeleteFunc(pol.Statement, func(s map[string]any) bool { return s["Sid"] == sid })
	if len(pol.Statement) != n-1 {
		return fmt.Errorf("policy of %s has no statement %s: %s", role, sid, doc)
	}
	b, err := json.Marshal(pol)
	if err != nil {
		return err
	}
	_, err = c.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String("cloudpipe"), PolicyDocument: aws.String(string(b))})
	return err
}

// demoOptions are what every test of a whole demo runs with: repo as the
// config repository, the agent binary bin, a state bucket of the test's
// own (seq), the test binary's kumo, IAM enforced with its figures logged,
// a small file as the stage functions' code, and a 2-minute timeout; the
// test sets what it is about on top.
func demoOptions(t *testing.T, repo, bin string, seq int64, stderr io.Writer) options {
	t.Helper()
	return options{
		port:        defaultPort,
		repo:        repo,
		timeout:     2 * time.Minute,
		logLevel:    slog.LevelWarn,
		executable:  bin,
		stateBucket: fmt.Sprintf("cloudpipe-state-demo-test-%d", seq),
		kumoURL:     testenv.KumoURL(t),
		iam:         true,
		iamReport:   iamFigures(t),
		codeFile:    smallFile(t),
		stderr:      stderr,
	}
}
