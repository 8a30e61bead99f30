package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	cpbackoff "github.com/cloudpipe/cloudpipe/internal/backoff"
	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// Bounds of the receive loop.
const (
	// receiveAttempts is how many receives in a row may fail (after the
	// SDK's own retries) before Run gives up: the task ends, and the next
	// upload starts a fresh one.
	receiveAttempts = 5
	// finishTimeout bounds deleting or releasing a message and writing its
	// record, which happen even after Run's context ended (SIGTERM), so a
	// stopped task does not leave its message invisible for a whole
	// visibility timeout.
	finishTimeout = 10 * time.Second

	// maxVisibility is how long after its receive a message may at most
	// stay invisible: "A message's visibility timeout cannot be extended
	// beyond 12 hours from the time the message was received"; SQS refuses
	// a longer ChangeMessageVisibility with InvalidParameterValue
	// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html).
	maxVisibility = 12 * time.Hour
	// visibilityMargin is kept between what the runner asks for and that
	// limit: SQS counts from when a request arrives, a little after the
	// runner read its clock (latency, an SDK retry). The receive time is
	// already taken before the receive is sent, so it errs the same way.
	visibilityMargin = 5 * time.Second
)

// worker processes the messages of one queue; Run owns it.
type worker struct {
	c          Config
	sqs        *sqs.Client
	s3         *s3.Client // the stage's buckets, in the task's region
	state      *s3.Client // the state bucket, in Config.StateRegion
	xfer       *transfer
	log        *slog.Logger
	visibility time.Duration // of received messages; heartbeats extend it
	// env is the environment of the algorithm's process (algorithmEnviron,
	// then the original runtime's variables: legacyEnv).
	env []string
	// now is the clock of SQS's 12 h limit on a message's visibility
	// (time.Now; tests move it forward to reach the limit).
	now func() time.Time
}

// Run receives messages from the stage's queue one at a time and processes
// each (see Config for how paths and the command are formed):
//
//  1. download the object into the input path, streaming to the file;
//  2. run the command, its output streamed to log line by line;
//  3. upload the result to the output bucket as
//     <input key's prefix>/Result-<ALGORITHM>-<input file name>, with ".zip"
//     appended when the result is a directory, which is zipped; the upload
//     is conditional (If-None-Match: *), and a result that already exists
//     means a duplicate delivery of a message already done: success;
//  4. delete the message on success; on failure leave it in the queue for a
//     later delivery (after RetryDelay, doubled per delivery), so that SQS
//     moves it to the dead-letter queue after maxReceiveCount failures;
//  5. write a Record to the state bucket.
//
// While a message is worked on, its visibility is extended every third of
// the visibility timeout, so no other runner receives it, up to SQS's limit
// of 12 h from the receive: a run that lasts longer goes on, and its record
// says so (contract.RunRecord.OutlivedVisibilityLimit). Local files of a
// run are removed after it.
//
// Run returns nil after IdleTimeout without messages, once no message it
// released for a retry is still to come back, ctx's error when ctx
// ends (the message in progress is released at once for another task), and
// an error when the configuration is invalid or the queue cannot be read.
func Run(ctx context.Context, awsCfg aws.Config, c Config, log *slog.Logger) error {
	return run(ctx, awsCfg, c, log, time.Now)
}

// run is Run with the clock of the 12 h visibility limit as a parameter.
func run(ctx context.Context, awsCfg aws.Config, c Config, log *slog.Logger, now func() time.Time) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c, err := c.withDefaults()
	if err != nil {
		return err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s3c := s3.NewFromConfig(awsCfg, s3Options(c))
	w := &worker{
		c:     c,
		sqs:   sqs.NewFromConfig(awsCfg),
		s3:    s3c,
		state: s3c,
		xfer:  newTransfer(s3c, c),
		log:   log.With("component", "runner", "workflow", c.Workflow, "stage", c.Stage),
		now:   now,
		env:   withDefaults(algorithmEnviron(os.Environ()), legacyEnv(c, awsCfg.Region)),
	}
	if c.StateRegion != "" && c.StateRegion != awsCfg.Region {
		// A stage of a workflow in another region than the agent's: S3
		// answers only at the bucket's regional endpoint.
		w.state = s3.NewFromConfig(awsCfg, s3Options(c), func(o *s3.Options) { o.Region = c.StateRegion })
	}
	w.visibility = w.queueVisibility(ctx)
	if c.StateBucket == "" {
		w.log.Warn("no state bucket, runs are not recorded")
	}
	return w.loop(ctx)
}

// s3Options configures the runner's S3 client. Ranged GETs carry no
// checksum of their own, and the SDK would log a warning for each part.
func s3Options(c Config) func(*s3.Options) {
	return func(o *s3.Options) {
		o.UsePathStyle = c.S3UsePathStyle
		o.DisableLogOutputChecksumValidationSkipped = true
	}
}

// queueVisibility returns Config.Visibility, or else the queue's own
// VisibilityTimeout, which the provisioner sets above the expected run time.
func (w *worker) queueVisibility(ctx context.Context) time.Duration {
	if w.c.Visibility > 0 {
		return w.c.Visibility
	}
	out, err := w.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(w.c.QueueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameVisibilityTimeout},
	})
	if err == nil {
		if n, err := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameVisibilityTimeout)]); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	// Receiving states the timeout explicitly, so the fallback is safe: it
	// only makes heartbeats more frequent than needed.
	w.log.Warn("queue visibility timeout unknown, using the fallback", "fallback", fallbackVisibility, "err", err)
	return fallbackVisibility
}

// loop receives and processes messages until the queue has been idle for
// IdleTimeout or ctx ends.
//
// It does not count as idle while a message it released after a failure
// is still to come back: the task that started this runner may be the only
// one, and if it left, the message would come back to nobody, neither
// retried nor moved to the dead-letter queue (SQS moves a message only when
// a receive finds it over maxReceiveCount) until some later upload started
// a task.
func (w *worker) loop(ctx context.Context) error {
	lastWork := time.Now()
	var retriesDue time.Time // when the last message released for a retry is visible again
	failures := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		left := max(w.c.IdleTimeout-time.Since(lastWork), time.Until(retriesDue)+w.c.WaitTime)
		if left <= 0 {
			w.log.Info("queue idle, runner exits", "idle", w.c.IdleTimeout)
			return nil
		}
		// The 12 h limit counts from when SQS hands the message out: a
		// time taken before asking is never later than that.
		received := w.now()
		out, err := w.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(w.c.QueueURL),
			// One at a time: a message held by a busy runner is one that
			// another task could be processing.
			MaxNumberOfMessages:         1,
			WaitTimeSeconds:             int32(math.Ceil(min(w.c.WaitTime, left).Seconds())),
			VisibilityTimeout:           seconds(w.visibility),
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			if failures >= receiveAttempts {
				return fmt.Errorf("receive from %s: %w", w.c.QueueURL, err)
			}
			w.log.Warn("receive failed", "attempt", failures, "err", err)
			if err := cpbackoff.Sleep(ctx, backoff(failures)); err != nil {
				return err
			}
			continue
		}
		failures = 0
		for _, m := range out.Messages {
			if back := w.process(ctx, m, received); back > 0 {
				retriesDue = later(retriesDue, time.Now().Add(back))
			}
			lastWork = time.Now()
		}
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// process handles one delivery of a message, received at received (w.now),
// start to finish. After a failure it returns how long until the message is
// visible again.
func (w *worker) process(ctx context.Context, m sqstypes.Message, received time.Time) (retryIn time.Duration) {
	receipt := aws.ToString(m.ReceiptHandle)
	attempt, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
	rec := contract.RunRecord{
		Workflow:  w.c.Workflow,
		Stage:     w.c.Stage,
		Algorithm: w.c.Algorithm,
		Attempt:   attempt,
		Started:   time.Now().UTC(),
		MessageID: aws.ToString(m.MessageId),
	}
	log := w.log.With("message_id", rec.MessageID, "attempt", attempt)

	stop := w.heartbeat(ctx, receipt, received, log)
	msg, err := w.run(ctx, aws.ToString(m.Body), &rec, log)
	gaveUp := stop()
	rec.Finished = time.Now().UTC()
	// Past the limit (or less than a second before it) the message could
	// no longer be kept from other runners, whether or not a heartbeat
	// came to find it out.
	rec.OutlivedVisibilityLimit = gaveUp || visibilityLeft(received, w.now()) == 0

	// Deleting or releasing the message and recording the run must happen
	// even if ctx ended meanwhile.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if err == nil {
		rec.Outcome = contract.OutcomeOK
		if _, derr := w.sqs.DeleteMessage(fctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(w.c.QueueURL), ReceiptHandle: &receipt}); derr != nil {
			// The message comes back; its next run finds the result
			// (If-None-Match) and counts as a duplicate.
			log.Warn("message not deleted", "err", derr)
		}
		log.Info("run succeeded", "result", rec.Result, "duplicate", rec.Duplicate,
			"bytes", rec.Bytes, "result_bytes", rec.ResultBytes, "duration", rec.Finished.Sub(rec.Started),
			"outlived_visibility_limit", rec.OutlivedVisibilityLimit)
	} else {
		rec.Outcome, rec.Error = contract.OutcomeFailed, safeMessage(err)
		// SQS refuses a visibility that ends more than 12 h after the
		// receive, and the message would then stay invisible for its old
		// timeout: wait at most what is left.
		delay := min(w.retryDelay(attempt), visibilityLeft(received, w.now()))
		if ctx.Err() != nil {
			delay = 0 // interrupted, not failed: another task may take it now
		}
		if rec.OutlivedVisibilityLimit {
			// Its visibility, extended no further than the limit, has
			// ended: the message is visible again, and SQS would refuse
			// even a release once the 12 h have passed.
			log.Warn("message not released: SQS's visibility limit has passed, it is visible again", "received", received)
		} else if _, verr := w.sqs.ChangeMessageVisibility(fctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(w.c.QueueURL), ReceiptHandle: &receipt, VisibilityTimeout: seconds(delay),
		}); verr != nil {
			log.Warn("message not released, it returns after its visibility timeout", "err", verr)
		}
		log.Error("run failed", "input", rec.Input, "retry_in", delay,
			"outlived_visibility_limit", rec.OutlivedVisibilityLimit, "err", err)
		retryIn = delay
	}
	if w.c.StateBucket != "" {
		if rerr := w.writeRecord(fctx, rec, msg.Bucket, msg.Key, receipt); rerr != nil {
			log.Warn("run not recorded", "err", rerr)
		}
	}
	return retryIn
}

// heartbeat extends the visibility of the message being worked on every
// third of the visibility timeout, so that a run longer than the timeout is
// not handed to a second runner. Each extension is capped by SQS's 12 h
// limit from the receive (heartbeatExtension); once nothing is left it
// stops, and the run goes on unprotected. stop ends it, waits for it, and
// reports whether it stopped for the limit.
func (w *worker) heartbeat(ctx context.Context, receipt string, received time.Time, log *slog.Logger) (stop func() (gaveUp bool)) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var reachedLimit bool // written before done closes, read after
	go func() {
		defer close(done)
		t := time.NewTicker(w.visibility / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ext := heartbeatExtension(w.visibility, received, w.now())
			if ext == 0 {
				reachedLimit = true
				log.Warn("visibility no longer extended: SQS's limit from the receive is reached, the run goes on and the message may be delivered again",
					"received", received, "limit_at", received.Add(maxVisibility), "visibility", w.visibility)
				return
			}
			_, err := w.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(w.c.QueueURL), ReceiptHandle: &receipt, VisibilityTimeout: seconds(ext),
			})
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				log.Warn("visibility not extended", "visibility", ext, "err", err)
			default:
				log.Debug("visibility extended", "visibility", ext)
			}
		}
	}()
	return func() bool {
		cancel()
		<-done
		return reachedLimit
	}
}

// heartbeatExtension is the visibility a heartbeat at now asks for, for a
// message received at received: the full visibility timeout while it fits
// before SQS's 12 h limit (less visibilityMargin), what is left after, and 0
// (ask nothing) once less than a second is left.
func heartbeatExtension(visibility time.Duration, received, now time.Time) time.Duration {
	return min(visibility.Truncate(time.Second), visibilityLeft(received, now))
}

// visibilityLeft is how much longer, at now, a message received at received
// may stay invisible, less visibilityMargin, in the whole seconds SQS
// counts; 0 when less than a second is left.
func visibilityLeft(received, now time.Time) time.Duration {
	left := received.Add(maxVisibility - visibilityMargin).Sub(now)
	return max(left.Truncate(time.Second), 0)
}

// retryDelay is how long a message waits after its attempt-th delivery
// failed: RetryDelay doubled per earlier delivery, at most the visibility
// timeout (a failure should not wait longer than a crash would).
func (w *worker) retryDelay(attempt int) time.Duration {
	return cpbackoff.Capped(attempt, w.c.RetryDelay, w.visibility)
}

// seconds is d in whole seconds, as SQS takes timeouts; below a second is 0.
func seconds(d time.Duration) int32 {
	return int32(min(d, 12*time.Hour) / time.Second)
}

// backoff is the wait after the n-th failed receive in a row: exponential
// from 1s with jitter, capped at 30s.
func backoff(n int) time.Duration {
	return cpbackoff.Exponential(n, time.Second, 30*time.Second)
}

// errInterrupted is the cause of a run stopped because Run's context ended.
var errInterrupted = errors.New("interrupted")
