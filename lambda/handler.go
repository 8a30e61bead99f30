package lambda

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Handler handles the S3 events of one stage. It is safe for concurrent use,
// although the Lambda runtime calls it one event at a time.
type Handler struct {
	cfg    Config
	sqs    *sqs.Client
	ecs    *ecs.Client
	batch  *batch.Client // a stage on AWS Batch submits jobs
	log    *slog.Logger
	margin time.Duration // see WithDeadlineMargin; 0 means automatic
	// noListTasks is set once ListTasks turned out not to exist (an emulator
	// without it), so the call is not repeated on every event.
	noListTasks atomic.Bool
}

// Option changes a Handler built by New.
type Option func(*options)

type options struct {
	log     *slog.Logger
	retryer func() aws.Retryer
	margin  time.Duration
}

// WithLogger sets the handler's logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRetryer replaces the retryer of the handler's SQS and ECS clients
// (tests use one with short delays). The default is DefaultRetryer.
func WithRetryer(r func() aws.Retryer) Option { return func(o *options) { o.retryer = r } }

// WithDeadlineMargin sets how much time before the invocation's deadline the
// handler stops starting RunTask batches. By default it is a third of the
// invocation's time, at most DefaultDeadlineMargin.
func WithDeadlineMargin(d time.Duration) Option { return func(o *options) { o.margin = d } }

// DefaultDeadlineMargin leaves room for one RunTask call with its retries
// (the stage function has 60 seconds in all); a function with a shorter
// timeout keeps a third of it instead, so that it still starts tasks.
const DefaultDeadlineMargin = 10 * time.Second

// DefaultRetryer is the retryer of the handler's clients: the SDK's standard
// one (which retries ThrottlingException and other throttling codes with
// exponential backoff and jitter) with more attempts, since a burst of uploads
// makes many functions call RunTask at once, and without the client-side
// retry quota, which would turn a burst of throttling into failures.
func DefaultRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 6
		o.MaxBackoff = 5 * time.Second
		o.RateLimiter = ratelimit.None
	})
}

// New returns a Handler for the stage c, with clients built from cfg.
func New(cfg aws.Config, c Config, opts ...Option) *Handler {
	o := options{retryer: DefaultRetryer}
	for _, fn := range opts {
		fn(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.Copy()
	cfg.Retryer = o.retryer
	return &Handler{
		cfg:    c,
		sqs:    sqs.NewFromConfig(cfg),
		ecs:    ecs.NewFromConfig(cfg),
		batch:  batch.NewFromConfig(cfg),
		log:    o.log.With("component", "lambda", "workflow", c.Workflow, "stage", c.Stage),
		margin: o.margin,
	}
}

// ErrDeadline is returned (wrapped) when the invocation came too close to its
// deadline to start all its tasks: the messages are queued, and Lambda's
// retry of the event starts the rest (the clientToken keeps the batches
// already started from starting twice).
var ErrDeadline = errors.New("too close to the deadline to start tasks")

// Handle queues one message per created object of ev and starts tasks to
// process them. Records that can never be processed (no key, a message too
// large) go to the dead-letter queue with the reason and error as message
// attributes. Queued files whose tasks RunTask refuses for good stay
// queued, in one place: the agent starts a task again or dead-letters them. Handle returns an
// error only for what a retry of the whole event can fix (throttling that
// outlasted the retryer, a server error, ErrDeadline, an unreachable queue),
// and for tasks only when none of the stage runs to drain the queue (see
// startTasks); a retry may queue a message twice, which the runner
// tolerates (its result is written at most once).
func (h *Handler) Handle(ctx context.Context, ev events.S3Event) error {
	start := time.Now()
	margin := h.margin
	if margin == 0 {
		margin = min(DefaultDeadlineMargin, remaining(ctx)/3)
	}
	var dead []deadJob
	var work []job
	skipped := 0
	for _, r := range ev.Records {
		if why := skipReason(r); why != "" {
			skipped++
			h.log.Debug("record skipped", "event_name", r.EventName, "reason", why)
			continue
		}
		j, skip, err := newJob(r)
		switch {
		case skip:
			skipped++
			h.log.Debug("folder placeholder skipped")
		case errors.Is(err, errTooLarge):
			dead = append(dead, deadJob{j, ReasonTooLarge, err})
		case err != nil:
			dead = append(dead, deadJob{j, ReasonBadRecord, err})
		default:
			work = append(work, j)
		}
	}

	queued, rejected, qerr := h.enqueue(ctx, work)
	dead = append(dead, rejected...)

	var started int
	var terr error
	if len(queued) > 0 {
		started, terr = h.startTasks(ctx, queued, margin)
	}
	derr := h.sendDeadLetters(ctx, dead)

	h.log.Info("event handled",
		"records", len(ev.Records), "skipped", skipped, "queued", len(queued),
		"dead_lettered", len(dead), "tasks_started", started, "duration", time.Since(start))
	return errors.Join(qerr, terr, derr)
}

// deadJob is a job bound for the dead-letter queue, with why.
type deadJob struct {
	job    job
	reason string
	err    error
}

// remaining returns the time left before ctx's deadline, or a day when it has
// none (tests, local processes).
func remaining(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return 24 * time.Hour
}

// errorSummary shortens err for a message attribute.
func errorSummary(err error) string {
	return cutUTF8(err.Error(), 1024)
}
