package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/backoff"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/notify"
	"github.com/cloudpipe/cloudpipe/status"
)

// StatusPoster posts commit statuses: status.GitHub, or status.Discard when
// there is no token, or status.Console in the demo.
type StatusPoster interface {
	Post(ctx context.Context, s status.Status) (bool, error)
}

// PullRequestLister lists open pull requests; status.GitHub is one. Without
// one, pull requests are not planned (there is nowhere to report the plan).
type PullRequestLister interface {
	OpenPullRequests(ctx context.Context) ([]status.PullRequest, error)
}

// PlanCommenter writes the plan of a pull request as one comment on it,
// edited as the pull request moves: status.GitHub, or status.Discard when
// there is no token, or status.Console in the demo.
type PlanCommenter interface {
	PostPlanComment(ctx context.Context, pr int, body string) (bool, error)
}

// Observer is told what the loop does, for metrics; metrics.Metrics is one.
type Observer interface {
	Pass(outcome string, took time.Duration)
	Workflows(byState map[string]int)
	GitPoll(outcome string)
	Status(outcome string)
	// DriftRepaired counts one resource or setting a drift repair put
	// back, by its kind ("sqs queue").
	DriftRepaired(kind string)
}

// Notifier takes notifications; notify.Notifier is one.
type Notifier interface {
	Notify(notify.Event)
}

// LoopOptions configure the daemon loop. Repo and Reconciler are required.
type LoopOptions struct {
	Repo       *Repo
	Reconciler *Reconciler
	Statuses   StatusPoster      // nil: no statuses
	PRs        PullRequestLister // nil: pull requests are not planned
	// Comments gets the full plan of each planned pull request (Plan.Comment)
	// besides its cloudpipe/plan status; nil: no comment.
	Comments PlanCommenter
	// Runs is where runners record their runs (the state bucket); nil: no
	// cloudpipe/run/<workflow> statuses.
	Runs RunRecords
	// Schedule is when to poll, in cron syntax; default "@every 1m".
	Schedule string
	// DriftEvery is how often a pass also checks that deployed resources
	// still exist; default 10 minutes.
	DriftEvery time.Duration
	// RunStatusEvery is how often cloudpipe/run/<workflow> statuses are
	// brought up to date from the runners' records, and deployed stages
	// are checked for files left waiting with no task; default 1 minute.
	RunStatusEvery time.Duration
	// Tasks reads deployed stages' activity and starts a task again for
	// files left waiting (sync/strand.go); nil: no such check. NewDaemon
	// sets it to the provisioner when that can.
	Tasks StageTasks
	// MaxFailedStarts is how many tasks the Loop starts for files left
	// waiting, each stopping before it received one, before it moves the
	// files to the stage's dead-letter queue; default
	// DefaultMaxFailedStarts.
	MaxFailedStarts int
	// RetryBackoff is the wait before a workflow that failed to apply is
	// tried again at the same commit, doubled after the first failed try
	// and no further (at most twice RetryBackoff, and at most DriftEvery);
	// default one minute. Invalid files are not retried: only a new commit
	// changes them.
	RetryBackoff time.Duration
	// StartBackoff is the wait before the first such start, doubled after
	// each failed one (at most 16 times, jittered); default RunStatusEvery.
	StartBackoff time.Duration
	// Observer, if set, is told about passes, polls and statuses.
	Observer Observer
	// Notifier, if set, is told of applies, failures, teardowns, drift
	// repairs and run failures (notify.Notifier). Notify must not block:
	// a pass never waits on a delivery.
	Notifier Notifier
	// RunFailuresEvery is the least time between two notifications of run
	// failures of one workflow; default 5 minutes.
	RunFailuresEvery time.Duration
	// OnPass, if set, is called after every pass with what it did.
	OnPass func(PassResult)
	Logger *slog.Logger
	Now    func() time.Time
}

// PassResult summarises one pass of the loop.
type PassResult struct {
	Commit  string
	Skipped bool    // the branch had not moved and no drift check was due
	Drift   bool    // the pass included a drift check
	Report  *Report // nil when Skipped or on error
	Err     error   // the pass could not run (Git or the inventory unreachable)
	Started time.Time
	Took    time.Duration
}

// Loop runs passes on a schedule and on demand, never two at once.
type Loop struct {
	opts    LoopOptions
	log     *slog.Logger
	trigger chan struct{}

	mu        gosync.Mutex // guards the fields below
	deployed  string       // commit of the last successful pass
	lastDrift time.Time
	retry     retryState     // workflows that failed at deployed, and when to try again
	prHeads   map[int]string // PR number -> head planned last
	runs      map[string]*runTally
	last      PassResult
	// notified is the last failure notified per workflow (its error), so
	// a failure retried unchanged is told once.
	notified    map[string]string
	runFailures *notify.RunFailures
}

// NewLoop checks opts and returns a Loop.
func NewLoop(opts LoopOptions) (*Loop, error) {
	if opts.Repo == nil || opts.Reconciler == nil {
		return nil, errors.New("loop needs a repository and a reconciler")
	}
	if opts.Schedule == "" {
		opts.Schedule = "@every 1m"
	}
	if opts.DriftEvery <= 0 {
		opts.DriftEvery = 10 * time.Minute
	}
	if opts.RunStatusEvery <= 0 {
		opts.RunStatusEvery = time.Minute
	}
	if opts.MaxFailedStarts <= 0 {
		opts.MaxFailedStarts = DefaultMaxFailedStarts
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = time.Minute
	}
	if opts.StartBackoff <= 0 {
		opts.StartBackoff = opts.RunStatusEvery
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if _, err := cron.ParseStandard(opts.Schedule); err != nil {
		return nil, fmt.Errorf("schedule %q: %w", opts.Schedule, err)
	}
	return &Loop{
		opts:    opts,
		log:     opts.Logger.With("component", "loop"),
		trigger: make(chan struct{}, 1),
		prHeads: map[int]string{},
		runs:    map[string]*runTally{},

		notified:    map[string]string{},
		runFailures: &notify.RunFailures{Every: opts.RunFailuresEvery, Now: opts.Now},
	}, nil
}

// Trigger asks for a pass soon. It never blocks: triggers that arrive while
// a pass runs coalesce into one more pass after it.
func (l *Loop) Trigger() {
	select {
	case l.trigger <- struct{}{}:
	default:
	}
}

// Last returns the result of the most recent pass.
func (l *Loop) Last() PassResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Run does one pass at once, then one per schedule tick or Trigger, until ctx
// ends. The pass running when ctx ends finishes the workflows it started and
// records them in the inventory before Run returns.
func (l *Loop) Run(ctx context.Context) error {
	c := cron.New()
	if _, err := c.AddFunc(l.opts.Schedule, l.Trigger); err != nil {
		return fmt.Errorf("schedule %q: %w", l.opts.Schedule, err)
	}
	c.Start()
	defer func() { <-c.Stop().Done() }()
	// Run statuses have their own ticker so that a poll of an unmoved
	// branch stays free of AWS calls.
	runTicker := time.NewTicker(l.opts.RunStatusEvery)
	defer runTicker.Stop()
	l.Trigger()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-runTicker.C:
			if err := l.UpdateRunStatuses(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("run statuses not updated", "err", err)
			}
		case <-l.trigger:
			res := l.Pass(ctx)
			if l.opts.OnPass != nil {
				l.opts.OnPass(res)
			}
		}
	}
}

// Pass runs one pass now. If the branch has not moved since the last
// successful pass and no drift check is due, it stops after one ref
// listing, with no AWS call.
func (l *Loop) Pass(ctx context.Context) PassResult {
	start := l.opts.Now()
	l.log.Debug("pass started")
	res := l.pass(ctx, start)
	res.Started, res.Took = start, l.opts.Now().Sub(start)
	l.mu.Lock()
	l.last = res
	l.mu.Unlock()
	l.observe(res)
	switch {
	case res.Err != nil:
		l.log.Error("pass failed", "commit", res.Commit, "err", res.Err)
	case res.Skipped:
		l.log.Debug("branch unchanged", "commit", res.Commit)
	default:
		c, u, d := res.Report.Plan.Counts()
		l.log.Info("pass done", "commit", res.Commit, "create", c, "update", u, "delete", d,
			"failed", res.Report.Failed(), "drift_check", res.Drift, "duration", res.Took)
	}
	return res
}

// observe reports a pass to the Observer.
func (l *Loop) observe(res PassResult) {
	o := l.opts.Observer
	if o == nil {
		return
	}
	switch {
	case res.Err != nil:
		o.Pass("failed", res.Took)
		return
	case res.Skipped:
		o.Pass("skipped", res.Took)
		return
	}
	o.Pass("applied", res.Took)
	for _, r := range res.Report.Results {
		if r.Err == nil {
			for _, d := range r.Drift {
				o.DriftRepaired(d.Kind)
			}
		}
	}
	states := map[string]int{"ready": 0, "failed": 0, "invalid": 0, "held": 0}
	for _, r := range res.Report.Results {
		switch {
		case r.Action == Invalid:
			states["invalid"]++
		case r.Err != nil:
			states["failed"]++
		case r.Action == Skip:
			states["held"]++
		case r.Action != Delete && r.Action != TornDown:
			states["ready"]++
		}
	}
	o.Workflows(states)
}

func (l *Loop) pass(ctx context.Context, now time.Time) PassResult {
	var head string
	var prs []gitsource.PullRequest
	if src := l.opts.Repo.Git(); src != nil {
		refs, err := src.Refs(ctx)
		if err != nil {
			l.gitPoll("error")
			return PassResult{Err: fmt.Errorf("poll repository: %w", err)}
		}
		head, prs = refs.Head, refs.PullRequests
	}
	l.mu.Lock()
	moved := head == "" || head != l.deployed
	if head != "" {
		if moved {
			l.gitPoll("moved")
		} else {
			l.gitPoll("unchanged")
		}
	}
	drift := now.Sub(l.lastDrift) >= l.opts.DriftEvery
	retrying := !moved && l.retry.due(head, now)
	// The wait before the try after this one, should a workflow fail now.
	attempt := 1
	if l.retry.commit == head {
		attempt = l.retry.attempts + 1
	}
	next := backoff.Capped(attempt, l.opts.RetryBackoff, l.retryCeiling())
	l.mu.Unlock()

	res := PassResult{Commit: head, Drift: drift}
	if !moved && !drift && !retrying {
		res.Skipped = true
	} else {
		if retrying {
			l.log.Info("retrying failed workflows", "commit", head, "attempt", attempt)
		}
		rep, err := l.apply(ctx, head, drift, next, retryDue(now, next))
		if err != nil {
			res.Err = err
			return res
		}
		res.Report = rep
		l.mu.Lock()
		if ctx.Err() == nil {
			l.deployed = head
			l.retry = l.retry.after(head, failedToApply(rep), attempt, retryDue(now, next))
		}
		if drift {
			l.lastDrift = now
		}
		l.mu.Unlock()
	}
	if err := l.planPullRequests(ctx, prs); err != nil {
		l.log.Warn("pull request plans incomplete", "err", err)
	}
	return res
}

// retryCeiling is the longest wait between tries at one commit: twice
// RetryBackoff, and at most DriftEvery. The wait in force bounds how long a
// workflow stays failed after its obstacle is gone (a permission granted,
// a bucket name freed, a quota raised): the goal is under two polls plus
// the backoff, 3 minutes with the defaults, and BenchmarkRetryLatency
// measures it. Doubling up to the drift interval, as the loop first did,
// left a workflow failed up to 11 polls after its fix. A try costs the
// failed workflows' own calls plus one index read and write, so trying
// every two minutes an obstacle that stays is cheap.
func (l *Loop) retryCeiling() time.Duration {
	return min(2*l.opts.RetryBackoff, l.opts.DriftEvery)
}

// retryDue is when a try after a failing pass that started at start, with
// a wait of next, is due: a tenth of the wait early. A scheduled pass
// starts its tick's lag after the tick (the timer and the scheduler, or a
// run-status update on the loop's goroutine), a different lag each tick,
// and Run's first pass is not on a tick at all (robfig/cron ticks on whole
// seconds). Due at exactly start+next, the try would be missed by any pass
// that started less late than the failing one, about every other one:
// each miss costs a whole poll.
func retryDue(start time.Time, next time.Duration) time.Time {
	return start.Add(next - next/10)
}

// retryState is what the Loop remembers of workflows that failed to apply
// at a commit: a transient error costs one backoff, not a drift interval.
type retryState struct {
	commit   string    // the commit they failed at; "" when none failed
	attempts int       // passes at commit with failures
	at       time.Time // when the next try is due
}

// due reports whether a retry at head is due at now.
func (r retryState) due(head string, now time.Time) bool {
	return r.commit != "" && r.commit == head && !now.Before(r.at)
}

// after is the state after a pass at head that left failed workflows
// failing (attempt was its number), the next try due at at.
func (r retryState) after(head string, failed, attempt int, at time.Time) retryState {
	if failed == 0 {
		return retryState{}
	}
	return retryState{commit: head, attempts: attempt, at: at}
}

// failedToApply counts the workflows a pass could not apply, not counting
// invalid files, which only a new commit changes.
func failedToApply(rep *Report) int {
	n := 0
	for _, r := range rep.Results {
		if r.Err != nil && r.Action != Invalid {
			n++
		}
	}
	return n
}

// apply loads the branch at head, reconciles and posts the statuses; next
// is when a workflow that fails is tried again, said in its status.
func (l *Loop) apply(ctx context.Context, head string, drift bool, next time.Duration, retryAt time.Time) (*Report, error) {
	d, err := l.opts.Repo.Load(ctx, head)
	if err != nil {
		return nil, err
	}
	// Workflows about to change show "pending" before their apply starts.
	pending := func(p *Plan) { l.PostPending(ctx, p) }
	rep, err := l.opts.Reconciler.reconcile(ctx, d, drift, pending, retryAt)
	if rep != nil {
		l.postResults(context.WithoutCancel(ctx), rep, next)
		l.notifyResults(rep)
	}
	return rep, err
}

// notifyResults tells the Notifier what the pass did to each workflow
// (ReportEvents); a failure is told once per error: retried, or still
// there at a later commit, it is not told again until the workflow
// applied or its error changed.
func (l *Loop) notifyResults(rep *Report) {
	if l.opts.Notifier == nil {
		return
	}
	for _, e := range ReportEvents(rep, l.opts.Now()) {
		l.mu.Lock()
		told := false
		if e.Event == notify.EventFailure {
			told = l.notified[e.Workflow] == e.Error
			l.notified[e.Workflow] = e.Error
		} else {
			delete(l.notified, e.Workflow)
		}
		l.mu.Unlock()
		if !told {
			l.opts.Notifier.Notify(e)
		}
	}
}

// ReportEvents are the notifications of a pass's report: per workflow an
// apply, a drift repair, a teardown (its file removed) or a failure; none
// for workflows left as they were, or torn down by `agent teardown`, which
// says so itself.
func ReportEvents(rep *Report, now time.Time) []notify.Event {
	var out []notify.Event
	for _, r := range rep.Results {
		e := notify.Event{Workflow: r.Workflow, Commit: rep.Commit, State: "success", Time: now.UTC(),
			Buckets: notify.Buckets{Input: r.InputBucket, Output: r.OutputBucket}}
		switch {
		case r.Err != nil:
			e.Event, e.State, e.Error = notify.EventFailure, "failure", status.ErrorDescription(r.Err.Error())
		case (r.Action == Create || r.Action == Update) && len(r.Drift) > 0:
			e.Event, e.Detail = notify.EventDrift, r.Repaired()
			e.Counts = map[string]int{"repaired": len(r.Drift)}
		case r.Action == Create || r.Action == Update:
			e.Event, e.Counts = notify.EventApply, map[string]int{"stages": r.Stages}
		case r.Action == Delete && !r.Teardown:
			e.Event = notify.EventTeardown
		default:
			continue
		}
		out = append(out, e)
	}
	return out
}

// postResults posts each workflow's outcome on the commit it was applied at.
func (l *Loop) postResults(ctx context.Context, rep *Report, next time.Duration) {
	if l.opts.Statuses == nil || rep.Commit == "" {
		return
	}
	for _, r := range rep.Results {
		s, ok := resultStatus(rep.Commit, r, next)
		if !ok {
			continue
		}
		l.post(ctx, s)
	}
}

// resultStatus is the cloudpipe/<workflow> status a result calls for, if
// any; a workflow that failed to apply says when it is tried again (next).
func resultStatus(commit string, r Result, next time.Duration) (status.Status, bool) {
	s := status.Status{Commit: commit, Context: status.WorkflowContext(r.Workflow)}
	switch {
	case r.Err != nil && r.Action != Invalid:
		s.State, s.Description = status.Failure, status.RetryDescription(r.Err.Error(), next)
	case r.Err != nil:
		s.State, s.Description = status.Failure, status.ErrorDescription(r.Err.Error())
	case r.Action == Create || r.Action == Update:
		s.State = status.Success
		s.Description = status.DeployedDescription(r.InputBucket, r.OutputBucket)
		if len(r.Drift) > 0 {
			s.Description = status.ErrorDescription(r.Repaired())
		}
		s.TargetURL = status.ConsoleURL(r.Region, r.OutputBucket)
	case r.Action == Delete:
		s.State, s.Description = status.Success, "torn down"
		for _, kb := range r.KeptBuckets {
			s.Description += fmt.Sprintf("; kept s3://%s (%s)", kb.Name, kb.Reason)
		}
		s.Description = status.ErrorDescription(s.Description)
	default:
		return s, false
	}
	return s, true
}

func (l *Loop) post(ctx context.Context, s status.Status) {
	posted, err := l.opts.Statuses.Post(ctx, s)
	outcome := "unchanged"
	switch {
	case err != nil:
		outcome = "error"
		l.log.Warn("status not posted", "context", s.Context, "commit", s.Commit, "err", err)
	case posted:
		outcome = "posted"
	}
	if l.opts.Observer != nil {
		l.opts.Observer.Status(outcome)
	}
}

func (l *Loop) gitPoll(outcome string) {
	if l.opts.Observer != nil {
		l.opts.Observer.GitPoll(outcome)
	}
}

// planPullRequests plans the head of every open pull request whose head
// moved since it was last planned, posts cloudpipe/plan on it and makes the
// full plan the pull request's plan comment. Nothing is applied.
func (l *Loop) planPullRequests(ctx context.Context, advertised []gitsource.PullRequest) error {
	src := l.opts.Repo.Git()
	if l.opts.PRs == nil || l.opts.Statuses == nil || src == nil || len(advertised) == 0 {
		return nil
	}
	heads := map[int]string{}
	for _, pr := range advertised {
		heads[pr.Number] = pr.Head
	}
	l.mu.Lock()
	var changed bool
	for n, h := range heads {
		if l.prHeads[n] != h {
			changed = true
		}
	}
	l.mu.Unlock()
	if !changed {
		return nil
	}
	// GitHub keeps refs/pull/N/head after a pull request closes: ask the API
	// which are open.
	open, err := l.opts.PRs.OpenPullRequests(ctx)
	if err != nil {
		return err
	}
	if err := src.Fetch(ctx); err != nil {
		return err
	}
	var idx *inventory.Index
	for _, pr := range open {
		head := pr.HeadSHA
		l.mu.Lock()
		done := l.prHeads[pr.Number] == head
		l.mu.Unlock()
		if done {
			continue
		}
		fsys, err := src.FS(ctx, head)
		if err != nil {
			return fmt.Errorf("pull request #%d: %w", pr.Number, err)
		}
		d, err := l.opts.Repo.desired(ctx, fsys, head)
		if err != nil {
			return fmt.Errorf("pull request #%d: %w", pr.Number, err)
		}
		if idx == nil {
			if idx, err = l.opts.Reconciler.Inventory().ReadIndex(ctx); err != nil {
				return err
			}
		}
		plan := l.opts.Reconciler.PlanAgainst(d, idx)
		desc := status.PlanDescription(plan.Counts())
		if notes := plan.Notes(); len(notes) > 0 {
			desc = status.NotedDescription(desc, len(notes), notes[0].Msg)
		}
		s := status.Status{Commit: head, Context: status.PlanContext, State: status.Success, Description: desc}
		if len(d.Problems) > 0 {
			p := d.Problems[0]
			s.State = status.Failure
			s.Description = status.ErrorDescription(fmt.Sprintf("%s:%s: %s", p.File, p.Path, p.Msg))
		}
		l.post(ctx, s)
		if l.opts.Comments != nil {
			if _, err := l.opts.Comments.PostPlanComment(ctx, pr.Number, plan.Comment()); err != nil {
				// Not marked as planned: the next pass tries again, and the
				// status, already posted, is not posted twice.
				l.log.Warn("plan comment not posted", "pull_request", pr.Number, "commit", head, "err", err)
				continue
			}
		}
		l.mu.Lock()
		l.prHeads[pr.Number] = head
		l.mu.Unlock()
	}
	return nil
}

// PostPending posts "pending" on every workflow the plan is about to change.
// The Loop's own passes do it before each apply.
func (l *Loop) PostPending(ctx context.Context, plan *Plan) {
	if l.opts.Statuses == nil || plan.Commit == "" {
		return
	}
	for _, c := range plan.Changes {
		if !c.Action.writes() {
			continue
		}
		l.post(ctx, status.Status{Commit: plan.Commit, Context: status.WorkflowContext(c.Workflow),
			State: status.Pending, Description: status.ErrorDescription(string(c.Action) + ": " + c.Reason)})
	}
}
