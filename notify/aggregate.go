package notify

import (
	"sort"
	"sync"
	"time"
)

// RunFailures aggregates run failures into at most one message per workflow
// per Every: the first failures after a quiet interval are sent at once,
// later ones wait and are sent, counted together, when the interval since
// the last message has passed (Flush). A pipeline failing every file
// otherwise floods the channel.
type RunFailures struct {
	Every time.Duration    // default 5 minutes
	Now   func() time.Time // default time.Now

	mu    sync.Mutex
	state map[string]*failureTally
}

type failureTally struct {
	sent    time.Time // when the last message went
	waiting int       // failures not yet in a message
	commit  string
	lastErr string
	buckets Buckets
}

func (a *RunFailures) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *RunFailures) every() time.Duration {
	if a.Every > 0 {
		return a.Every
	}
	return 5 * time.Minute
}

// Add notes n more failed runs of workflow; it returns the message to send
// now, if the workflow's last one is at least Every old.
func (a *RunFailures) Add(workflow, commit string, buckets Buckets, n int, lastErr string) (Event, bool) {
	if n <= 0 {
		return Event{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state == nil {
		a.state = map[string]*failureTally{}
	}
	t := a.state[workflow]
	if t == nil {
		t = &failureTally{}
		a.state[workflow] = t
	}
	t.waiting += n
	t.commit, t.buckets = commit, buckets
	if lastErr != "" {
		t.lastErr = lastErr
	}
	return a.due(workflow, t, a.now())
}

// Flush returns the messages of the workflows whose failures wait and whose
// interval has passed, by workflow name.
func (a *RunFailures) Flush() []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	var out []Event
	for name, t := range a.state {
		if e, ok := a.due(name, t, now); ok {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Workflow < out[j].Workflow })
	return out
}

func (a *RunFailures) due(name string, t *failureTally, now time.Time) (Event, bool) {
	if t.waiting == 0 || (!t.sent.IsZero() && now.Sub(t.sent) < a.every()) {
		return Event{}, false
	}
	e := Event{Event: EventRunFailures, Workflow: name, Commit: t.commit, State: "failure", Buckets: t.buckets,
		Counts: map[string]int{"failed": t.waiting}, Error: t.lastErr, Time: now.UTC()}
	t.sent, t.waiting = now, 0
	return e, true
}
