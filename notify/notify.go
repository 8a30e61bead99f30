// Package notify posts what the agent did to a chat webhook: one JSON POST
// per event, Slack-compatible (a one-line "text") with the event's fields
// under "cloudpipe" for other receivers. Delivery never holds up a pass:
// events wait in a bounded queue for one sender goroutine, which retries
// with backoff and drops, counted and logged, what it cannot deliver. The
// URL carries a secret (a Slack incoming webhook's path is its credential),
// so it never appears in a log line or an error.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/backoff"
)

// Kinds of event.
const (
	EventApply       = "apply"        // a workflow was created or updated
	EventFailure     = "failure"      // a workflow failed to apply
	EventTeardown    = "teardown"     // a workflow was torn down (its file removed)
	EventDrift       = "drift"        // a drift repair put back what was changed outside cloudpipe
	EventRunFailures = "run_failures" // runs failed (aggregated, see RunFailures)
)

// Event is one notification's structured part, the "cloudpipe" object.
type Event struct {
	Event    string         `json:"event"`
	Workflow string         `json:"workflow"`
	Commit   string         `json:"commit,omitempty"`
	State    string         `json:"state"` // success or failure
	Buckets  Buckets        `json:"buckets"`
	Counts   map[string]int `json:"counts,omitempty"`
	Error    string         `json:"error,omitempty"`
	// Detail is what happened in words (the repairs of a drift event).
	Detail string    `json:"detail,omitempty"`
	Time   time.Time `json:"time"`
}

// Buckets are where a workflow's files go in and its results come out.
type Buckets struct {
	Input  string `json:"input,omitempty"`
	Output string `json:"output,omitempty"`
}

// Text is the event as one line a person reads in chat.
func (e Event) Text() string {
	commit := e.Commit
	if len(commit) > 7 {
		commit = commit[:7]
	}
	at := ""
	if commit != "" {
		at = " at " + commit
	}
	switch e.Event {
	case EventApply:
		return fmt.Sprintf("cloudpipe: %s deployed%s: upload to s3://%s, results in s3://%s", e.Workflow, at, e.Buckets.Input, e.Buckets.Output)
	case EventFailure:
		return fmt.Sprintf("cloudpipe: %s failed to apply%s: %s", e.Workflow, at, e.Error)
	case EventTeardown:
		return fmt.Sprintf("cloudpipe: %s torn down%s", e.Workflow, at)
	case EventDrift:
		return fmt.Sprintf("cloudpipe: %s drift %s", e.Workflow, e.Detail)
	case EventRunFailures:
		return fmt.Sprintf("cloudpipe: %s: %d runs failed%s", e.Workflow, e.Counts["failed"], lastError(e.Error))
	}
	return fmt.Sprintf("cloudpipe: %s %s %s", e.Workflow, e.Event, e.State)
}

func lastError(msg string) string {
	if msg == "" {
		return ""
	}
	return " (last: " + msg + ")"
}

// payload is the body of one POST.
type payload struct {
	Text      string `json:"text"`
	Cloudpipe Event  `json:"cloudpipe"`
}

// Outcomes of a notification, as Options.OnOutcome is told them.
const (
	OutcomeSent          = "sent"
	OutcomeDroppedFull   = "dropped_full"   // the queue was full
	OutcomeDroppedFailed = "dropped_failed" // refused, or retries ran out
)

// Options configure a Notifier. URL is required.
type Options struct {
	URL string
	// QueueSize bounds the events waiting to be sent; default 256. An event
	// that finds the queue full is dropped.
	QueueSize int
	// Attempts is how often one event is tried; default 5.
	Attempts int
	// FirstRetry and MaxRetry bound the wait between tries (doubled,
	// jittered); defaults 1 s and 30 s. A Retry-After of the receiver is
	// honoured up to MaxRetry.
	FirstRetry, MaxRetry time.Duration
	// Client sends the POSTs; default one with a 10 s timeout.
	Client *http.Client
	Logger *slog.Logger
	// OnOutcome, if set, is told each event's outcome (for metrics).
	OnOutcome func(outcome string)
}

// Notifier sends events in the background. Its methods are safe for
// concurrent use.
type Notifier struct {
	opts  Options
	log   *slog.Logger
	queue chan Event
	stop  chan struct{} // closed by Close: the sender stops retrying
	done  chan struct{} // closed when the sender has returned

	mu       sync.Mutex // guards closed
	closed   bool
	stopOnce sync.Once
}

// New checks opts and starts the sender.
func New(opts Options) (*Notifier, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// Not the URL itself, nor url.Parse's error, which quotes it.
		return nil, errors.New("notify URL: want an http(s) URL")
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 256
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	if opts.FirstRetry <= 0 {
		opts.FirstRetry = time.Second
	}
	if opts.MaxRetry <= 0 {
		opts.MaxRetry = 30 * time.Second
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{
		opts: opts, log: opts.Logger.With("component", "notify"),
		queue: make(chan Event, opts.QueueSize), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go n.run()
	return n, nil
}

// Notify queues e and returns at once; e is dropped (counted and logged)
// when the queue is full or the Notifier is closed.
func (n *Notifier) Notify(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		n.dropped(e, OutcomeDroppedFull, "notifier closed", 0)
		return
	}
	select {
	case n.queue <- e:
	default:
		n.dropped(e, OutcomeDroppedFull, "queue full", 0)
	}
}

// Close stops taking events and waits until those queued are sent, or ctx
// ends; then the rest are dropped and the sender stops.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.queue)
	}
	n.mu.Unlock()
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
	}
	n.stopOnce.Do(func() { close(n.stop) })
	<-n.done
	return fmt.Errorf("notifications not all sent: %w", ctx.Err())
}

func (n *Notifier) run() {
	defer close(n.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-n.done:
		}
	}()
	for e := range n.queue {
		n.send(ctx, e)
	}
}

// send tries e until it is delivered, refused, or out of attempts.
func (n *Notifier) send(ctx context.Context, e Event) {
	body, err := json.Marshal(payload{Text: e.Text(), Cloudpipe: e})
	if err != nil {
		n.dropped(e, OutcomeDroppedFailed, err.Error(), 0)
		return
	}
	for attempt := 1; ; attempt++ {
		wait, retry, err := n.post(ctx, body)
		if err == nil {
			n.outcome(OutcomeSent)
			return
		}
		if !retry || attempt >= n.opts.Attempts || ctx.Err() != nil {
			n.dropped(e, OutcomeDroppedFailed, err.Error(), attempt)
			return
		}
		if wait <= 0 {
			wait = backoff.Exponential(attempt, n.opts.FirstRetry, n.opts.MaxRetry)
		}
		if err := backoff.Sleep(ctx, min(wait, n.opts.MaxRetry)); err != nil {
			n.dropped(e, OutcomeDroppedFailed, "shutting down", attempt)
			return
		}
	}
}

// post makes one POST. retry says the failure may pass (a network error,
// 429, 5xx); wait is the receiver's Retry-After, if it gave one. Its errors
// never hold the URL.
func (n *Notifier) post(ctx context.Context, body []byte) (wait time.Duration, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.opts.URL, bytes.NewReader(body))
	if err != nil {
		return 0, false, errors.New("build request")
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		// *url.Error quotes the URL: keep only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, true, fmt.Errorf("post: %s", redactedError(err, n.opts.URL))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode < 300:
		return 0, false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return retryAfter(resp.Header.Get("Retry-After")), true, fmt.Errorf("receiver answered %s", resp.Status)
	}
	return 0, false, fmt.Errorf("receiver answered %s", resp.Status)
}

// redactedError is err's text with the URL, should a transport quote it,
// cut out.
func redactedError(err error, rawURL string) string {
	msg := err.Error()
	if u, perr := url.Parse(rawURL); perr == nil {
		for _, s := range []string{rawURL, u.Path, u.RawQuery} {
			if len(s) > 1 {
				msg = replaceAll(msg, s, "[redacted]")
			}
		}
	}
	return msg
}

func replaceAll(s, old, repl string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte(old), []byte(repl)))
}

// retryAfter reads a Retry-After header in seconds (the form Slack sends
// with its 429: incoming webhooks allow about one message per second, with
// short bursts); 0 when absent or in the date form.
// https://api.slack.com/docs/rate-limits
// https://www.rfc-editor.org/rfc/rfc9110#field.retry-after
func retryAfter(v string) time.Duration {
	s, err := strconv.Atoi(v)
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

func (n *Notifier) dropped(e Event, outcome, why string, attempts int) {
	n.log.Warn("notification dropped", "event", e.Event, "workflow", e.Workflow, "reason", why, "attempts", attempts)
	n.outcome(outcome)
}

func (n *Notifier) outcome(o string) {
	if n.opts.OnOutcome != nil {
		n.opts.OnOutcome(o)
	}
}
