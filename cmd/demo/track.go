package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
)

// stageInfo is what the demo shows of a deployed stage.
type stageInfo struct {
	workflow      string
	region        string // the workflow's: its buckets, queues, function and tasks are there
	stage         int
	algorithm     string
	input, output string // buckets
	function      string // the stage function, also the task-definition family
	dlqURL        string // the stage's dead-letter queue
}

func (s stageInfo) label() string {
	return fmt.Sprintf("%s: stage %d (%s)", s.workflow, s.stage, s.algorithm)
}

// deployment is what is deployed, as the agent's inventory says: the stages
// of every workflow in state ready. It is refreshed after every pass and
// read by the task callbacks, hence the lock.
type deployment struct {
	mu        sync.Mutex
	workflows map[string][]stageInfo // by workflow, stages in order
}

// load reads the inventory: the agent's own record of what it deployed.
func (d *deployment) load(ctx context.Context, inv *inventory.Store) error {
	idx, err := inv.ReadIndex(ctx)
	if err != nil {
		return err
	}
	wfs := map[string][]stageInfo{}
	for name, e := range idx.Workflows {
		if e.State != inventory.StateReady {
			continue
		}
		rec, err := inv.ReadRecord(ctx, name)
		if err != nil {
			return err
		}
		var stages []stageInfo
		for _, s := range rec.Stages {
			stages = append(stages, stageInfo{
				workflow:  name,
				region:    s.Spec.Region,
				stage:     s.Spec.Stage,
				algorithm: s.Spec.Algorithm.Name,
				input:     s.Spec.InputBucket,
				output:    s.Spec.OutputBucket,
				function:  provision.ResourceName(name, s.Spec.Stage),
				dlqURL:    s.Resources.DLQURL,
			})
		}
		slices.SortFunc(stages, func(a, b stageInfo) int { return a.stage - b.stage })
		wfs[name] = stages
	}
	d.mu.Lock()
	d.workflows = wfs
	d.mu.Unlock()
	return nil
}

// names returns the deployed workflows, sorted.
func (d *deployment) names() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Sorted(maps.Keys(d.workflows))
}

func (d *deployment) stagesOf(workflow string) ([]stageInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.workflows[workflow]
	return s, ok
}

// functions returns every deployed stage function's region, by name.
func (d *deployment) functions() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	fns := map[string]string{}
	for _, stages := range d.workflows {
		for _, s := range stages {
			fns[s.function] = s.region
		}
	}
	return fns
}

func (d *deployment) byFunction(fn string) (stageInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, stages := range d.workflows {
		for _, s := range stages {
			if s.function == fn {
				return s, true
			}
		}
	}
	return stageInfo{}, false
}

// watch follows one upload through its workflow's stages.
type watch struct {
	workflow string
	stages   []stageInfo
	stage    int    // the stage whose run is awaited
	key      string // that stage's input key
	uploaded time.Time
	result   string // s3://BUCKET/KEY of the last stage's result, once done
	file     string // where the result was downloaded to
	failed   string // why a run failed
}

func (w *watch) settled() bool { return w.result != "" || w.failed != "" }

// tracker reports progress. It follows runs through the records runners
// write to the state bucket (runs/<workflow>/<stage>/...), each saying which
// input it processed and where its result went, or why it failed: the same
// trail the agent reads to count runs. And it reports tasks starting and
// ending, in order with the runs: the next stage's task starts the moment a
// result lands, often before the run's record is written, so the start of a
// watched upload's stage is held until the stage before it is reported.
//
// Apart from taskEvent, a tracker is used by one goroutine.
type tracker struct {
	aws      *operator // each stage's buckets and queues in its workflow's region
	bucket   string    // the state bucket, in the agent's region
	download string    // directory for results, "" for none
	stages   *deployment
	out      *console
	log      *slog.Logger
	seen     map[string]bool // record keys already handled
	watches  []*watch
	logHint  string          // appended to a failed run's line: where to see more
	held     []localecs.Task // task events waiting for an earlier stage's report
	// notStarted holds, by task-definition family, why the stage's last
	// task stopped before it started: the cause of a file the agent moved
	// to the stage's dead-letter queue.
	notStarted map[string]string
	dlqLooked  time.Time // when deadLetters last looked, at most every dlqEvery

	mu     sync.Mutex      // guards queued
	queued []localecs.Task // task events not yet looked at
}

// newTracker returns a tracker; logLevel is the children's, to say where
// a failed command's output can be seen.
func newTracker(clients *operator, download string, stages *deployment, out *console, log *slog.Logger, logLevel slog.Level) *tracker {
	t := &tracker{aws: clients, download: download, stages: stages, out: out, log: log, seen: map[string]bool{},
		notStarted: map[string]string{}}
	if logLevel > slog.LevelInfo {
		// The runner logs the command's output at info level.
		t.logHint = " (--log-level info shows the command's output)"
	}
	return t
}

// taskEvent queues a task's start or stop for the tracker's goroutine. It
// never blocks: the local ECS calls it from the goroutine that waits for the
// task's process.
func (t *tracker) taskEvent(task localecs.Task) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.queued = append(t.queued, task)
}

// reportTasks prints the queued task events, holding those of a stage that
// a watched upload has not reached yet.
func (t *tracker) reportTasks() {
	t.mu.Lock()
	events := append(t.held, t.queued...)
	t.queued = nil
	t.mu.Unlock()
	t.held = nil
	for _, ev := range events {
		st, ok := t.stages.byFunction(ev.Family)
		if ok && slices.ContainsFunc(t.watches, func(w *watch) bool {
			return !w.settled() && w.workflow == st.workflow && w.stage < st.stage
		}) {
			t.held = append(t.held, ev)
			continue
		}
		label := ev.Family
		if ok {
			label = st.label()
		}
		t.printTask(label, ev)
	}
}

func (t *tracker) printTask(label string, ev localecs.Task) {
	id := shortID(ev.TaskID)
	switch {
	case ev.LastStatus == localecs.StatusRunning:
		t.out.printf("%s: queued, task %s started\n", label, id)
	case ev.StopCode == localecs.StopTaskFailedToStart:
		t.out.printf("%s: task %s could not start: %s\n", label, id, ev.StoppedReason)
		t.notStarted[ev.Family] = ev.StoppedReason
	case ev.StopCode == localecs.StopUserInitiated:
		t.log.Debug("task stopped", "task", ev.TaskARN, "reason", ev.StoppedReason)
	case ev.ExitCode != nil && *ev.ExitCode != 0:
		what := fmt.Sprintf("exit status %d", *ev.ExitCode)
		if *ev.ExitCode > 128 {
			what = "killed by " + syscall.Signal(*ev.ExitCode-128).String()
		}
		t.out.printf("%s: task %s ended: %s (its log is above)\n", label, id, what)
	}
}

// skipExisting marks the records already in the state bucket as seen, so
// only runs from now on are reported.
func (t *tracker) skipExisting(ctx context.Context) error {
	return t.eachNew(ctx, func(string) error { return nil })
}

// state is the S3 client for the state bucket, which stays in the
// agent's region whatever region a workflow names.
func (t *tracker) state() *s3.Client { return t.aws.s3In(region) }

// eachNew calls fn with the key of each record not seen before.
func (t *tracker) eachNew(ctx context.Context, fn func(key string) error) error {
	p := s3.NewListObjectsV2Paginator(t.state(), &s3.ListObjectsV2Input{Bucket: aws.String(t.bucket), Prefix: aws.String(contract.RunsPrefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list run records in s3://%s: %w", t.bucket, err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			if t.seen[key] {
				continue
			}
			if err := fn(key); err != nil {
				return err
			}
			t.seen[key] = true
		}
	}
	return nil
}

// poll handles the records written since the last poll: it advances the
// watches they concern and reports the others as activity.
func (t *tracker) poll(ctx context.Context) error {
	return t.eachNew(ctx, func(key string) error {
		rec, err := t.record(ctx, key)
		if err != nil {
			return err
		}
		for _, w := range t.watches {
			if !w.settled() && rec.Workflow == w.workflow && rec.Stage == w.stage &&
				rec.Input == s3URI(w.stages[w.stage].input, w.key) {
				return t.advance(ctx, w, rec)
			}
		}
		t.activity(rec)
		return nil
	})
}

// dlqEvery is how often the dead-letter queues of watched stages are
// looked at.
const dlqEvery = time.Second

// deadLetters settles the watches whose file went to their stage's
// dead-letter queue without a run: moved there by the agent after its tasks
// stopped before receiving it, sent there by the stage function (a record
// it could not queue), or by Lambda after the stage function failed its
// event on every attempt (an invocation record naming the file). It
// receives what the queue holds and makes it visible again at once, so the
// dead letters stay for whoever looks next.
func (t *tracker) deadLetters(ctx context.Context) error {
	if time.Since(t.dlqLooked) < dlqEvery {
		return nil
	}
	t.dlqLooked = time.Now()
	for _, w := range t.watches {
		if w.settled() {
			continue
		}
		st := w.stages[w.stage]
		if st.dlqURL == "" {
			continue
		}
		queues := t.aws.sqsIn(st.region)
		out, err := queues.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(st.dlqURL),
			MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"}})
		if err != nil {
			return fmt.Errorf("look at the dead letters of %s: %w", st.label(), err)
		}
		for _, m := range out.Messages {
			if _, err := queues.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(st.dlqURL),
				ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
				t.log.Warn("dead letter not made visible again", "err", err)
			}
			dl, err := contract.DecodeDeadLetter(aws.ToString(m.Body))
			if err != nil || dl.Bucket != st.input || dl.Key != w.key || w.settled() {
				continue
			}
			how := t.deadLetterCause(st, dl, m.MessageAttributes)
			w.failed = "dead-lettered " + how
			t.out.printf("%s: %s dead-lettered to %s %s\n", st.label(), s3URI(st.input, w.key), path.Base(st.dlqURL), how)
		}
	}
	return nil
}

// deadLetterCause says how a watched file came to be a dead letter, by who
// sent it there.
func (t *tracker) deadLetterCause(st stageInfo, dl contract.DeadLetter, attrs map[string]sqstypes.MessageAttributeValue) string {
	attr := func(name string) string { return aws.ToString(attrs[name].StringValue) }
	if inv := dl.Invocation; inv.Condition != "" {
		why := "the stage function failed it " + strconv.Itoa(inv.Attempts) + " times"
		if inv.Condition == "EventAgeExceeded" {
			why = "its event outlived Lambda's maximum event age after " + strconv.Itoa(inv.Attempts) + " attempts"
		}
		return "by Lambda: " + why + ": " + inv.Error
	}
	if attr(contract.AttrDeadLetterReason) == contract.DeadLetterStranded || t.notStarted[st.function] != "" {
		why := attr(contract.AttrDeadLetterError)
		if why == "" {
			why = t.notStarted[st.function]
		}
		return "after its tasks stopped before receiving it: " + why
	}
	return "by the stage function (" + attr(contract.AttrDeadLetterReason) + "): " + attr(contract.AttrDeadLetterError)
}

// wait reports progress until every watch is settled or ctx ends.
func (t *tracker) wait(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		t.reportTasks()
		if err := t.poll(ctx); err != nil {
			return err
		}
		t.reportTasks()
		if err := t.deadLetters(ctx); err != nil {
			return err
		}
		if !slices.ContainsFunc(t.watches, func(w *watch) bool { return !w.settled() }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// follow reports progress until ctx ends; a poll that fails is logged and
// retried.
func (t *tracker) follow(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		t.reportTasks()
		if err := t.poll(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("run records not read", "err", err)
		}
		t.reportTasks()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (t *tracker) record(ctx context.Context, key string) (contract.RunRecord, error) {
	out, err := t.state().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(key)})
	if err != nil {
		return contract.RunRecord{}, fmt.Errorf("get run record %s: %w", key, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		return contract.RunRecord{}, fmt.Errorf("read run record %s: %w", key, err)
	}
	rec, err := contract.DecodeRunRecord(body)
	if err != nil {
		return rec, fmt.Errorf("read run record %s: %w", key, err)
	}
	return rec, nil
}

// advance moves w past the stage rec reports on.
func (t *tracker) advance(ctx context.Context, w *watch, rec contract.RunRecord) error {
	st := w.stages[w.stage]
	if rec.Outcome != contract.OutcomeOK {
		w.failed = rec.Error
		t.out.printf("%s: run failed (attempt %d): %s%s\n", st.label(), rec.Attempt, rec.Error, t.logHint)
		return nil
	}
	_, key, ok := splitS3URI(rec.Result)
	if !ok {
		return fmt.Errorf("run record of %s names no result", st.label())
	}
	if rec.Duplicate && w.stage < len(w.stages)-1 {
		// The runner never overwrites a result, so no new object, and no
		// event for the next stage.
		w.failed = "result already existed"
		t.out.printf("%s: result already in %s from an earlier upload of the same key: not overwritten, so the next stages do not run again\n",
			st.label(), rec.Result)
		return nil
	}
	t.out.printf("%s: result in %s\n", st.label(), rec.Result)
	w.stage++
	w.key = key
	// The next stage's task may have started already: report it now,
	// after the result that started it.
	t.reportTasks()
	if w.stage < len(w.stages) {
		return nil
	}
	w.result = rec.Result
	line := fmt.Sprintf("%s: done in %s: %s", w.workflow, time.Since(w.uploaded).Round(10*time.Millisecond), rec.Result)
	if t.download != "" {
		file, err := t.fetch(ctx, w)
		if err != nil {
			return err
		}
		w.file = file
		line += " -> " + file
	}
	t.out.printf("%s\n", line)
	return nil
}

// activity reports a run no watch expected: an upload made by hand.
func (t *tracker) activity(rec contract.RunRecord) {
	label := fmt.Sprintf("%s: stage %d (%s)", rec.Workflow, rec.Stage, rec.Algorithm)
	switch {
	case rec.Outcome == contract.OutcomeOK && rec.Duplicate:
		t.out.printf("%s: %s -> %s (already there from an earlier upload: results are never overwritten)\n", label, rec.Input, rec.Result)
		return
	case rec.Outcome == contract.OutcomeOK:
		t.out.printf("%s: %s -> %s\n", label, rec.Input, rec.Result)
		return
	}
	t.out.printf("%s: %s failed (attempt %d): %s%s\n", label, rec.Input, rec.Attempt, rec.Error, t.logHint)
}

// fetch downloads w's result into the download directory as
// <workflow>/<file name of the result>.
func (t *tracker) fetch(ctx context.Context, w *watch) (file string, err error) {
	bucket, key, _ := splitS3URI(w.result)
	dir := filepath.Join(t.download, w.workflow)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	file = filepath.Join(dir, path.Base(key))
	out, err := t.aws.s3In(w.stages[len(w.stages)-1].region).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "", fmt.Errorf("download %s: %w", w.result, err)
	}
	defer out.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	if _, err := io.Copy(f, out.Body); err != nil {
		return "", fmt.Errorf("download %s: %w", w.result, err)
	}
	return file, nil
}

func s3URI(bucket, key string) string { return "s3://" + bucket + "/" + key }

// splitS3URI splits s3://BUCKET/KEY.
func splitS3URI(uri string) (bucket, key string, ok bool) {
	rest, ok := strings.CutPrefix(uri, "s3://")
	if !ok {
		return "", "", false
	}
	bucket, key, ok = strings.Cut(rest, "/")
	return bucket, key, ok && bucket != "" && key != ""
}
