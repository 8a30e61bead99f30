package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/sync/errgroup"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/lambda"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/runner"
)

var (
	loadFiles = flag.Int("load.files", 1000,
		"files TestLoad uploads to one pipeline of the demo, in bursts of 1000")
	loadTimeout = flag.Duration("load.timeout", 0,
		"how long TestLoad waits for every file's result or dead letter; 0 means 2m plus 60ms per file")
)

// Settings of the load test's pipeline.
const (
	// loadFailEvery makes every loadFailEvery-th file one the algorithm
	// refuses, so that its message goes to the dead-letter queue after
	// maxReceiveCount failed runs.
	loadFailEvery = 10
	// loadMaxTasks is TestLoad's max_tasks, the cap the test checks
	// (the default cap, written out so the test does not depend on it).
	loadMaxTasks = 10
	// loadBurst is the most files uploaded at once. kumo hands S3 events to
	// a stage function through a queue of 1024 per function and drops what
	// does not fit (the emulator's limit), and the stage function takes far
	// fewer events a second than a loopback S3 accepts uploads. So a longer
	// run (-load.files) sends bursts of loadBurst, each once the stage
	// function has taken the one before.
	loadBurst = 1000
	// loadPollEvery is how often the test looks for outcomes: each look
	// lists the output bucket, so not so often that the watching slows
	// the emulator it watches.
	loadPollEvery = 500 * time.Millisecond
	// loadReportEvery is how often progress is logged while waiting.
	loadReportEvery = 5 * time.Second
	// loadUploaders is how many uploads are in flight at once: a client
	// that pushes a batch as fast as a loopback S3 takes it.
	loadUploaders = 32
	// loadPrefix holds the test's keys, apart from the demo's sample.
	loadPrefix = "batch/"
	// loadAlgorithm names the algorithm, and so the results.
	loadAlgorithm = "load-sort"
)

// loadScript is the load test's algorithm: it sorts the lines of its input
// ($1) into its output ($2), and fails for an input whose first line is
// "fail". It is a real program run as the algorithm's run_command, through
// /bin/sh named as the command itself: the runner uses no shell.
const loadScript = `#!/bin/sh
read -r first < "$1"
if [ "$first" = fail ]; then
	echo "input asks to fail" >&2
	exit 3
fi
LC_ALL=C exec sort -o "$2" "$1"
`

// TestLoad uploads a burst of files (-load.files, 1000 by default) at once
// to one pipeline of the running demo, every tenth of which the algorithm
// refuses, and checks that each file ends with exactly one result or
// exactly one dead letter, and nothing else: no file lost, none processed
// into two outcomes, the refused ones (and only those) dead-lettered by
// SQS after maxReceiveCount runs, never more than max_tasks tasks running.
// It prints the figures of docs/reliability.md ("Load").
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo with a burst of uploads: not in -short")
	}
	runLoad(t, *loadFiles, loadMaxTasks)
}

// TestMaxTasksTwo uploads 20 files at once to a stage with max_tasks 2:
// the stage function counts its tasks (ecs:ListTasks, which its role may
// call on "*" within the cluster, as on Fargate) and never has more than
// two running, under IAM for every principal.
func TestMaxTasksTwo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo with a burst of uploads: not in -short")
	}
	runLoad(t, 20, 2)
}

// runLoad uploads n files at once to a pipeline with max_tasks maxTasks of
// the running demo and checks every file's outcome and the task cap.
func runLoad(t *testing.T, n, maxTasks int) {
	if n < 1 {
		t.Fatalf("-load.files=%d: want at least 1", n)
	}
	deadline := *loadTimeout
	if deadline <= 0 {
		deadline = 2*time.Minute + time.Duration(n)*60*time.Millisecond
	}
	bin := demoBinary(t)
	began := time.Now()
	seq := runSeq.Add(1)
	wf := fmt.Sprintf("load-%d", seq)
	inBucket, outBucket := fmt.Sprintf("cloudpipe-load-%d-in", seq), fmt.Sprintf("cloudpipe-load-%d-out", seq)
	stateBucket := fmt.Sprintf("cloudpipe-state-demo-test-%d", seq)
	repo := loadRepo(t, wf, inBucket, outBucket, maxTasks)

	// The demo runs as it does for a person: up until stopped, with the
	// test as the user who uploads a batch to it.
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	var runErr error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		o := demoOptions(t, repo, bin, seq, &stderr)
		o.timeout = time.Minute // for the demo's own sample
		runErr = run(ctx, o, &stdout)
	}()
	defer func() {
		cancel()
		<-stopped
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			t.Errorf("demo: %v", runErr)
		}
		if t.Failed() {
			t.Logf("demo stdout (end):\n%s\ndemo stderr (end):\n%s", tail(stdout.String(), 60), tail(stderr.String(), 60))
		}
	}()
	if err := waitDemoUp(ctx, &stdout, stopped, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	setup := time.Since(began)
	// The demo's sample went through the new pipeline first: the path
	// works before the burst.
	if want := wf + ": done in"; !strings.Contains(stdout.String(), want) {
		t.Fatalf("the demo's sample did not come through %s (no %q in its output)", wf, want)
	}

	cfg := testenv.KumoConfig("http://127.0.0.1:4566") // the demo's endpoint, as a user's CLI would use it
	c := loadClients{
		s3:  s3.NewFromConfig(cfg, testenv.S3PathStyle),
		sqs: sqs.NewFromConfig(cfg),
		ecs: ecs.NewFromConfig(cfg),
	}
	queueURL, dlqURL, maxReceive := c.queues(t, provision.ResourceName(wf, 0))

	keys := make([]string, n)
	failing := map[string]bool{}
	for i := range keys {
		keys[i] = fmt.Sprintf("%sf%05d.txt", loadPrefix, i)
		if loadFails(i) {
			failing[keys[i]] = true
		}
	}
	// A result names its input by key (runner.ResultKey); a dead letter
	// carries the work message.
	byResult := map[string]string{}
	for _, key := range keys {
		byResult[runner.ResultKey(key, loadAlgorithm, false)] = key
	}
	o := &loadOutcomes{results: map[string]bool{}, dead: map[string][]string{}, reasons: map[string]int{}, seen: map[string]bool{}}
	wctx, wcancel := context.WithTimeout(ctx, deadline)
	defer wcancel()

	// watch polls until done says so, logging the progress now and then.
	start := time.Now()
	lastReport := start
	watch := func(uploaded int, done func(loadProgress) bool) (loadProgress, error) {
		for {
			p, err := c.progress(wctx, o, queueURL, outBucket, dlqURL, byResult)
			if err != nil || done(p) {
				return p, err
			}
			if time.Since(lastReport) >= loadReportEvery {
				t.Logf("load: %v: %d uploaded, %s", time.Since(start).Round(time.Second), uploaded, p)
				lastReport = time.Now()
			}
			select {
			case <-wctx.Done():
				return p, wctx.Err()
			case <-time.After(loadPollEvery):
			}
		}
	}

	// The burst: every upload in flight as soon as an uploader is free. A
	// longer run sends bursts of loadBurst, each once the stage function
	// has taken the one before (see loadBurst).
	var uploadTime time.Duration
	for from := 0; from < n; from += loadBurst {
		if from > 0 {
			p, err := watch(from, func(p loadProgress) bool { return p.taken >= from })
			if err != nil {
				t.Fatalf("after %v, the stage function has taken %d of the %d files uploaded: %v", time.Since(start).Round(time.Second), p.taken, from, err)
			}
		}
		burst := time.Now()
		g, gctx := errgroup.WithContext(wctx)
		g.SetLimit(loadUploaders)
		for i := from; i < min(from+loadBurst, n); i++ {
			g.Go(func() error {
				_, err := c.s3.PutObject(gctx, &s3.PutObjectInput{
					Bucket: aws.String(inBucket), Key: aws.String(keys[i]), Body: bytes.NewReader(loadInput(i)),
				})
				if err != nil {
					return fmt.Errorf("upload %s: %w", s3URI(inBucket, keys[i]), err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		uploadTime += time.Since(burst)
	}

	// Wait for an outcome per file.
	if p, err := watch(n, func(p loadProgress) bool { return p.settled >= n }); err != nil {
		t.Fatalf("after %v, %d of %d files have an outcome (%d results, %d dead letters; first without one: %s): %v",
			time.Since(start).Round(time.Second), p.settled, n, len(o.results), len(o.dead), firstMissing(keys, o), err)
	}
	wall := time.Since(start)

	// Then let the pipeline come to rest, and look again: anything still
	// running could yet add a second outcome.
	if err := c.waitIdle(wctx, provision.ResourceName(wf, 0)); err != nil {
		t.Fatalf("pipeline not idle after every file had its outcome: %v", err)
	}
	rest := time.Since(start) - wall
	audit := time.Now()
	if err := c.poll(wctx, o, outBucket, dlqURL, byResult); err != nil {
		t.Fatal(err)
	}
	tasks, err := c.tasks(wctx, provision.ResourceName(wf, 0))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := c.runs(wctx, stateBucket, wf, inBucket)
	if err != nil {
		t.Fatal(err)
	}

	// Each file exactly one outcome, of the kind its content asks for. A
	// broken pipeline breaks it for hundreds of files: the first few say
	// how.
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	duplicates := 0
	for _, key := range keys {
		got := len(o.dead[key])
		if o.results[key] {
			got++
		}
		switch {
		case got == 0:
			problem("%s: no result and no dead letter", key)
		case got > 1:
			duplicates += got - 1
			problem("%s: %d outcomes (result %v, dead letters %q), want 1", key, got, o.results[key], o.dead[key])
		case failing[key] && o.results[key]:
			problem("%s: has a result, but the algorithm refuses it", key)
		case !failing[key] && !o.results[key]:
			problem("%s: dead-lettered, but the algorithm accepts it", key)
		}
		// SQS dead-letters a message after maxReceiveCount failed runs.
		r := runs.byKey[key]
		switch {
		case failing[key] && (r.failed != maxReceive || r.ok != 0):
			problem("%s: %d failed and %d ok runs, want %d failed (maxReceiveCount)", key, r.failed, r.ok, maxReceive)
		case !failing[key] && (r.ok < 1 || r.failed != 0):
			problem("%s: %d ok and %d failed runs, want 1 ok", key, r.ok, r.failed)
		}
	}
	for _, u := range o.unexpected {
		problem("unexpected outcome: %s", u)
	}
	// The stage function dead-lettered nothing itself: its own dead letters
	// carry a reason (a record it could not queue, or start a task for),
	// SQS's redrive none.
	for reason, count := range o.reasons {
		if reason != "" {
			problem("%d dead letters from the stage function itself, reason %q: the burst lost work on the way in", count, reason)
		}
	}
	if len(problems) > 0 {
		const shown = 20
		t.Errorf("%d problems, the first %d:\n%s", len(problems), min(shown, len(problems)), strings.Join(problems[:min(shown, len(problems))], "\n"))
	}
	if peak := tasks.peak; peak > maxTasks {
		t.Errorf("%d tasks ran at once, max_tasks is %d", peak, maxTasks)
	}
	c.checkResults(t, outBucket, keys, failing)
	auditTime := time.Since(audit)

	t.Logf("load: %d files, %d results, %d dead letters (%d expected), %d duplicates", n, len(o.results), len(o.dead), len(failing), duplicates)
	t.Logf("load: uploaded in %v (%d at a time); every outcome in %v: %.1f files/s", uploadTime.Round(time.Millisecond), loadUploaders,
		wall.Round(time.Millisecond), float64(n)/wall.Seconds())
	t.Logf("load: %d tasks started (the first by the demo's sample, if its runner was still up), at most %d running (max_tasks %d), %d exited non-zero", tasks.started, tasks.peak, maxTasks, tasks.failed)
	t.Logf("load: runs: %d ok, %d failed (maxReceiveCount %d), %d found their result already there (duplicate deliveries)",
		runs.ok, runs.failed, maxReceive, runs.duplicate)
	t.Logf("load: demo up (deployed, sample through) in %v; at rest %v after the last outcome; audit in %v",
		setup.Round(time.Millisecond), rest.Round(time.Millisecond), auditTime.Round(time.Millisecond))
}

// loadFails says whether file i is one the algorithm refuses.
func loadFails(i int) bool { return i%loadFailEvery == loadFailEvery-1 }

// loadInput is the content of file i: unsorted lines of its own, or for a
// file the algorithm refuses, a first line that asks it to.
func loadInput(i int) []byte {
	if loadFails(i) {
		return fmt.Appendf(nil, "fail\nfile %d\n", i)
	}
	return fmt.Appendf(nil, "file %d\nzulu %d\nalpha\nmike %d\nBravo\n", i, 99999-i, i*7)
}

// loadRepo writes a config repository with one single_run workflow, wf,
// from in to out through the load test's algorithm.
func loadRepo(t *testing.T, wf, in, out string, maxTasks int) string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "load-sort.sh")
	if strings.ContainsAny(script, " \t\n") {
		// run_command is split at white space, with no quoting.
		t.Fatalf("temporary directory %q holds white space: the algorithm's command cannot name a script in it", script)
	}
	if err := os.WriteFile(script, []byte(loadScript), 0o755); err != nil {
		t.Fatal(err)
	}
	algorithm := map[string]any{
		"container_name":   "docker.io/library/alpine:3.20",
		"input_file_path":  "/tmp/in/",
		"output_file_path": "/tmp/out/",
		"executable_path":  "/bin/sh",
		"run_command":      "/bin/sh " + script + " $input $output",
		"name":             loadAlgorithm,
		"memory":           map[string]int{"minimal": 128, "suggested": 256},
		"CPU":              0.25,
	}
	workflow := map[string]any{
		"input_s3_name":  in,
		"output_s3_name": out,
		"region":         region,
		"max_tasks":      maxTasks,
		"process": map[string]any{
			"type":       "single_run",
			"algorithms": []map[string]any{{"name": loadAlgorithm}},
		},
	}
	dir := t.TempDir()
	writeJSONFiles(t, dir, map[string]any{
		filepath.Join("algorithms", loadAlgorithm+".json"): algorithm,
		filepath.Join("workflows", wf+".json"):             workflow,
	})
	return dir
}

// waitDemoUp waits until the demo says it is up: its workflows deployed,
// its sample through them. It fails if the demo stops first.
func waitDemoUp(ctx context.Context, stdout *syncBuffer, stopped <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !strings.Contains(stdout.String(), "The demo is up") {
		select {
		case <-stopped:
			return errors.New("the demo stopped before it was up")
		case <-ctx.Done():
			return fmt.Errorf("the demo is not up after %v", timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// loadClients talk to the demo's endpoint, where the local ECS answers the
// task calls and kumo the rest.
type loadClients struct {
	s3  *s3.Client
	sqs *sqs.Client
	ecs *ecs.Client
}

// queues returns the URLs of the stage's work queue and of the dead-letter
// queue it redrives to, and after how many receives it does.
func (c loadClients) queues(t *testing.T, queue string) (queueURL, dlqURL string, maxReceive int) {
	t.Helper()
	ctx := t.Context()
	url, err := c.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
	if err != nil {
		t.Fatalf("get queue url %s: %v", queue, err)
	}
	attrs, err := c.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: url.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		t.Fatalf("get queue attributes %s: %v", queue, err)
	}
	var policy struct {
		DeadLetterTargetArn string      `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.Number `json:"maxReceiveCount"`
	}
	raw := attrs.Attributes[string(sqstypes.QueueAttributeNameRedrivePolicy)]
	if err := json.Unmarshal([]byte(raw), &policy); err != nil {
		t.Fatalf("queue %s redrive policy %q: %v", queue, raw, err)
	}
	count, err := policy.MaxReceiveCount.Int64()
	if err != nil || count < 1 {
		t.Fatalf("queue %s redrive policy %q: no maxReceiveCount", queue, raw)
	}
	dlq := policy.DeadLetterTargetArn[strings.LastIndexByte(policy.DeadLetterTargetArn, ':')+1:]
	dlqOut, err := c.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(dlq)})
	if err != nil {
		t.Fatalf("get queue url %s (dead-letter queue of %s): %v", dlq, queue, err)
	}
	return aws.ToString(url.QueueUrl), aws.ToString(dlqOut.QueueUrl), int(count)
}

// loadProgress is where the files are.
type loadProgress struct {
	queued, inFlight int // work messages waiting, and being worked on
	settled          int // files with an outcome
	taken            int // files the stage function has queued a message for
}

func (p loadProgress) String() string {
	return fmt.Sprintf("%d taken by the stage function, %d queued, %d in flight, %d settled", p.taken, p.queued, p.inFlight, p.settled)
}

// progress polls the outcomes (see poll) and counts the work messages. A
// message is waiting or in flight until it ends in a result or a dead
// letter, so together they are the files the stage function has taken.
func (c loadClients) progress(ctx context.Context, o *loadOutcomes, queueURL, outBucket, dlqURL string, byResult map[string]string) (loadProgress, error) {
	if err := c.poll(ctx, o, outBucket, dlqURL, byResult); err != nil {
		return loadProgress{}, err
	}
	out, err := c.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed},
	})
	if err != nil {
		return loadProgress{}, fmt.Errorf("get queue attributes %s: %w", queueURL, err)
	}
	count := func(name sqstypes.QueueAttributeName) int {
		n, _ := strconv.Atoi(out.Attributes[string(name)])
		return n
	}
	p := loadProgress{
		queued:   count(sqstypes.QueueAttributeNameApproximateNumberOfMessages) + count(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed),
		inFlight: count(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		settled:  o.settled(),
	}
	p.taken = p.queued + p.inFlight + p.settled
	return p, nil
}

// loadOutcomes is what the files came to so far.
type loadOutcomes struct {
	results    map[string]bool     // input keys with a result
	dead       map[string][]string // input key -> IDs of its dead letters
	reasons    map[string]int      // dead letters by cloudpipe.reason ("" for SQS's redrive)
	seen       map[string]bool     // dead-letter message IDs counted
	unexpected []string            // outcomes of no uploaded file
}

func (o *loadOutcomes) settled() int {
	n := len(o.dead)
	for key := range o.results {
		if len(o.dead[key]) == 0 {
			n++
		}
	}
	return n
}

// poll adds the results in the output bucket and the dead letters in the
// queue that o does not hold yet. Dead letters are received, not deleted,
// with a visibility timeout that outlasts the test, so each is counted
// once and all stay in the queue for whoever looks next.
func (c loadClients) poll(ctx context.Context, o *loadOutcomes, outBucket, dlqURL string, byResult map[string]string) error {
	p := s3.NewListObjectsV2Paginator(c.s3, &s3.ListObjectsV2Input{Bucket: aws.String(outBucket), Prefix: aws.String(loadPrefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list results in s3://%s: %w", outBucket, err)
		}
		for _, obj := range page.Contents {
			k := aws.ToString(obj.Key)
			key, ok := byResult[k]
			if !ok {
				if !slices.Contains(o.unexpected, s3URI(outBucket, k)) {
					o.unexpected = append(o.unexpected, s3URI(outBucket, k))
				}
				continue
			}
			o.results[key] = true
		}
	}
	for {
		out, err := c.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:              aws.String(dlqURL),
			MaxNumberOfMessages:   10,
			WaitTimeSeconds:       0,
			VisibilityTimeout:     12 * 60 * 60, // SQS's longest: never received twice here
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			return fmt.Errorf("receive dead letters: %w", err)
		}
		if len(out.Messages) == 0 {
			return nil
		}
		for _, m := range out.Messages {
			id := aws.ToString(m.MessageId)
			if o.seen[id] {
				continue
			}
			o.seen[id] = true
			o.reasons[aws.ToString(m.MessageAttributes[lambda.AttrReason].StringValue)]++
			msg, err := contract.DecodeMessage(aws.ToString(m.Body))
			if err != nil {
				o.unexpected = append(o.unexpected, fmt.Sprintf("dead letter %s: %v", id, err))
				continue
			}
			if _, ok := byResult[runner.ResultKey(msg.Key, loadAlgorithm, false)]; !ok {
				o.unexpected = append(o.unexpected, fmt.Sprintf("dead letter %s for %s", id, s3URI(msg.Bucket, msg.Key)))
				continue
			}
			o.dead[msg.Key] = append(o.dead[msg.Key], id)
		}
	}
}

func firstMissing(keys []string, o *loadOutcomes) string {
	for _, key := range keys {
		if !o.results[key] && len(o.dead[key]) == 0 {
			return key
		}
	}
	return "none"
}

// waitIdle waits until no task of the stage's family is running: then
// nothing can add an outcome any more (the runners exit once the queue has
// been idle for runnerIdleTimeout).
func (c loadClients) waitIdle(ctx context.Context, family string) error {
	for {
		out, err := c.ecs.ListTasks(ctx, &ecs.ListTasksInput{
			Cluster: aws.String(provision.DefaultCluster), Family: aws.String(family), DesiredStatus: ecstypes.DesiredStatusRunning,
		})
		if err != nil {
			return fmt.Errorf("list tasks %s: %w", family, err)
		}
		if len(out.TaskArns) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d tasks of %s still running: %w", len(out.TaskArns), family, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// loadTasks is what the stage's tasks did, as ECS (the local one) tells it.
type loadTasks struct {
	started int // tasks of the family
	peak    int // most running at once
	failed  int // exited with a status other than 0
}

// tasks describes every task of the family: how many started, how many ran
// at once at most (from their start and stop times) and how many failed.
func (c loadClients) tasks(ctx context.Context, family string) (loadTasks, error) {
	var arns []string
	for _, status := range []ecstypes.DesiredStatus{ecstypes.DesiredStatusRunning, ecstypes.DesiredStatusStopped} {
		p := ecs.NewListTasksPaginator(c.ecs, &ecs.ListTasksInput{
			Cluster: aws.String(provision.DefaultCluster), Family: aws.String(family), DesiredStatus: status,
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return loadTasks{}, fmt.Errorf("list tasks %s: %w", family, err)
			}
			arns = append(arns, page.TaskArns...)
		}
	}
	type event struct {
		at    time.Time
		delta int
	}
	var events []event
	res := loadTasks{started: len(arns)}
	for chunk := range slices.Chunk(arns, 100) {
		out, err := c.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(provision.DefaultCluster), Tasks: chunk})
		if err != nil {
			return loadTasks{}, fmt.Errorf("describe tasks %s: %w", family, err)
		}
		for _, task := range out.Tasks {
			if task.StartedAt == nil {
				continue // its process never started: it never ran
			}
			events = append(events, event{*task.StartedAt, +1})
			if task.StoppedAt != nil {
				events = append(events, event{*task.StoppedAt, -1})
			}
			for _, ct := range task.Containers {
				if ct.ExitCode != nil && *ct.ExitCode != 0 {
					res.failed++
				}
			}
		}
	}
	// Times are in milliseconds: at a tie, count the stop first, since the
	// stage function saw that task stopped before it started the next.
	slices.SortFunc(events, func(a, b event) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	running := 0
	for _, ev := range events {
		running += ev.delta
		res.peak = max(res.peak, running)
	}
	return res, nil
}

// loadRuns is what the run records in the state bucket say.
type loadRuns struct {
	ok, failed, duplicate int
	byKey                 map[string]struct{ ok, failed int }
}

// runs reads the stage's run records: each delivery of a message leaves
// one (contract.RunRecord).
func (c loadClients) runs(ctx context.Context, stateBucket, wf, inBucket string) (loadRuns, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(c.s3, &s3.ListObjectsV2Input{
		Bucket: aws.String(stateBucket), Prefix: aws.String(contract.StageRunsPrefix(wf, 0)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return loadRuns{}, fmt.Errorf("list run records: %w", err)
		}
		for _, obj := range page.Contents {
			keys = append(keys, aws.ToString(obj.Key))
		}
	}
	recs := make([]contract.RunRecord, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, key := range keys {
		g.Go(func() error {
			out, err := c.s3.GetObject(gctx, &s3.GetObjectInput{Bucket: aws.String(stateBucket), Key: aws.String(key)})
			if err != nil {
				return fmt.Errorf("get run record %s: %w", key, err)
			}
			defer out.Body.Close()
			if err := json.NewDecoder(out.Body).Decode(&recs[i]); err != nil {
				return fmt.Errorf("read run record %s: %w", key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return loadRuns{}, err
	}
	res := loadRuns{byKey: map[string]struct{ ok, failed int }{}}
	for _, rec := range recs {
		key, ok := strings.CutPrefix(rec.Input, "s3://"+inBucket+"/")
		if !ok || !strings.HasPrefix(key, loadPrefix) {
			continue // the demo's sample
		}
		r := res.byKey[key]
		switch rec.Outcome {
		case contract.OutcomeOK:
			r.ok++
			res.ok++
			if rec.Duplicate {
				res.duplicate++
			}
		default:
			r.failed++
			res.failed++
		}
		res.byKey[key] = r
	}
	return res, nil
}

// checkResults compares some results, spread over the batch, with what
// the algorithm makes of their input: its lines in byte order.
func (c loadClients) checkResults(t *testing.T, outBucket string, keys []string, failing map[string]bool) {
	t.Helper()
	const samples = 50
	var picked []int
	for i := 0; i < len(keys) && len(picked) < samples; i += max(1, len(keys)/samples) {
		if failing[keys[i]] && i+1 < len(keys) {
			i++ // its neighbour, which has a result
		}
		if !failing[keys[i]] {
			picked = append(picked, i)
		}
	}
	g, ctx := errgroup.WithContext(t.Context())
	g.SetLimit(8)
	for _, i := range picked {
		key := runner.ResultKey(keys[i], loadAlgorithm, false)
		g.Go(func() error {
			out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(outBucket), Key: aws.String(key)})
			if err != nil {
				return fmt.Errorf("get result %s: %w", key, err)
			}
			defer out.Body.Close()
			b, err := io.ReadAll(out.Body)
			if err != nil {
				return fmt.Errorf("read result %s: %w", key, err)
			}
			if got, want := lines(b), wantSorted(loadInput(i)); !slices.Equal(got, want) {
				t.Errorf("%s = %q, want %q", s3URI(outBucket, key), got, want)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Error(err)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(l) > n {
		l = append([]string{fmt.Sprintf("[%d lines before]", len(l)-n)}, l[len(l)-n:]...)
	}
	return strings.Join(l, "\n")
}

// writeJSONFiles writes each value of files as indented JSON at its path
// under dir, as a config repository holds its workflows and algorithms.
func writeJSONFiles(t *testing.T, dir string, files map[string]any) {
	t.Helper()
	for p, v := range files {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
