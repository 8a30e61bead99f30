package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/notify"
)

// receiver is a loopback webhook that records the bodies it is sent and
// answers with the codes of answers in turn (then 200).
type receiver struct {
	mu      sync.Mutex
	bodies  []map[string]any
	answers []int
	got     chan struct{}
}

func newReceiver(t *testing.T, answers ...int) (*receiver, *httptest.Server) {
	r := &receiver{answers: answers, got: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		code := http.StatusOK
		if len(r.answers) > 0 {
			code, r.answers = r.answers[0], r.answers[1:]
		}
		if code == http.StatusOK {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Errorf("body %q: %v", body, err)
			}
			r.bodies = append(r.bodies, m)
		}
		r.mu.Unlock()
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(code)
		r.got <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return r, srv
}

func (r *receiver) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.bodies {
		cp, _ := b["cloudpipe"].(map[string]any)
		out = append(out, cp["event"].(string)+" "+cp["workflow"].(string))
	}
	return out
}

// outcomes counts what OnOutcome is told.
type outcomes struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *outcomes) add(s string) { o.mu.Lock(); o.n[s]++; o.mu.Unlock() }
func (o *outcomes) get(s string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[s]
}

func newNotifier(t *testing.T, url string, logTo io.Writer, o *outcomes, mod ...func(*notify.Options)) *notify.Notifier {
	t.Helper()
	opts := notify.Options{URL: url, FirstRetry: time.Millisecond, MaxRetry: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logTo, nil)), OnOutcome: o.add}
	for _, m := range mod {
		m(&opts)
	}
	n, err := notify.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeliveryRetriesAndPayload: events arrive in order, each once, as a
// Slack-compatible body; 429 and 5xx are retried, a 4xx is not.
func TestDeliveryRetriesAndPayload(t *testing.T) {
	rcv, srv := newReceiver(t, http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusOK, http.StatusBadRequest)
	o := &outcomes{n: map[string]int{}}
	var logs bytes.Buffer
	n := newNotifier(t, srv.URL+"/services/T000/B000/secretpart", &logs, o)
	n.Notify(notify.Event{Event: notify.EventApply, Workflow: "a", Commit: "0123456789abcdef", State: "success",
		Buckets: notify.Buckets{Input: "in", Output: "out"}})
	n.Notify(notify.Event{Event: notify.EventFailure, Workflow: "b", State: "failure", Error: "boom"})
	n.Notify(notify.Event{Event: notify.EventTeardown, Workflow: "c", State: "success"})
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// a: 503, 429, 200; b: 400 (dropped); c: 200.
	if got, want := rcv.events(), []string{"apply a", "teardown c"}; !equal(got, want) {
		t.Errorf("received %v, want %v", got, want)
	}
	if o.get(notify.OutcomeSent) != 2 || o.get(notify.OutcomeDroppedFailed) != 1 {
		t.Errorf("outcomes %v, want 2 sent and 1 dropped", o.n)
	}
	rcv.mu.Lock()
	first := rcv.bodies[0]
	rcv.mu.Unlock()
	if text, _ := first["text"].(string); text != "cloudpipe: a deployed at 0123456: upload to s3://in, results in s3://out" {
		t.Errorf("text %q", text)
	}
	cp := first["cloudpipe"].(map[string]any)
	if b := cp["buckets"].(map[string]any); b["input"] != "in" || b["output"] != "out" || cp["state"] != "success" || cp["time"] == "" {
		t.Errorf("cloudpipe object %v", cp)
	}
	if strings.Contains(logs.String(), "secretpart") || strings.Contains(logs.String(), srv.URL) {
		t.Errorf("the URL is in the log:\n%s", logs.String())
	}
}

// TestURLNeverLogged: with the receiver down (a closed port) every
// attempt fails with an error that, from net/http, quotes the URL; the
// log line of the drop must not.
func TestURLNeverLogged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	url := "http://" + addr + "/services/T000/B000/xoxsecret?token=hush"
	o := &outcomes{n: map[string]int{}}
	var logs bytes.Buffer
	n := newNotifier(t, url, &logs, o, func(o *notify.Options) { o.Attempts = 2 })
	n.Notify(notify.Event{Event: notify.EventFailure, Workflow: "wf", State: "failure"})
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if o.get(notify.OutcomeDroppedFailed) != 1 {
		t.Fatalf("outcomes %v, want the event dropped", o.n)
	}
	out := logs.String()
	if !strings.Contains(out, "notification dropped") {
		t.Errorf("no log line of the drop:\n%s", out)
	}
	for _, s := range []string{"xoxsecret", "hush", "/services/"} {
		if strings.Contains(out, s) {
			t.Errorf("log holds %q of the URL:\n%s", s, out)
		}
	}
	if _, err := notify.New(notify.Options{URL: "ftp://x/secretpath"}); err == nil || strings.Contains(err.Error(), "secretpath") {
		t.Errorf("New with a bad URL: %v, want an error without the URL", err)
	}
}

// TestNotifyNeverBlocks: with a receiver that hangs, Notify returns at once,
// events beyond the queue are dropped and counted, and Close gives up at
// its deadline.
func TestNotifyNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	o := &outcomes{n: map[string]int{}}
	n := newNotifier(t, srv.URL, io.Discard, o, func(o *notify.Options) { o.QueueSize = 2 })
	for range 10 {
		n.Notify(notify.Event{Event: notify.EventApply, Workflow: "wf"})
	}
	// One is with the sender, two wait: at least seven were dropped.
	if d := o.get(notify.OutcomeDroppedFull); d < 7 {
		t.Errorf("%d dropped for a full queue, want at least 7", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); err == nil {
		t.Errorf("Close with a hanging receiver returned nil, want its deadline's error")
	}
}

// TestRunFailuresAggregated: at most one message per workflow per interval,
// carrying every failure since the last.
func TestRunFailuresAggregated(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	a := &notify.RunFailures{Every: 5 * time.Minute, Now: func() time.Time { return now }}
	type step struct {
		at       time.Duration // since the start
		workflow string
		n        int    // failures added; 0: Flush
		want     string // "wf:count" sent, "" none
	}
	start := now
	for i, s := range []step{
		{0, "a", 1, "a:1"},               // first failure: at once
		{time.Minute, "a", 2, ""},        // within the interval: waits
		{2 * time.Minute, "b", 1, "b:1"}, // another workflow has its own interval
		{4 * time.Minute, "", 0, ""},     // flush before a's interval: nothing
		{5 * time.Minute, "a", 1, "a:3"}, // interval passed: all waiting, counted
		{6 * time.Minute, "a", 3, ""},
		{10 * time.Minute, "", 0, "a:3"}, // flush after a's interval
		{11 * time.Minute, "", 0, ""},    // nothing waits
	} {
		now = start.Add(s.at)
		var got []string
		if s.n == 0 {
			for _, e := range a.Flush() {
				got = append(got, e.Workflow+":"+strconv.Itoa(e.Counts["failed"]))
			}
		} else if e, ok := a.Add(s.workflow, "c1", notify.Buckets{}, s.n, "exit 1"); ok {
			got = append(got, e.Workflow+":"+strconv.Itoa(e.Counts["failed"]))
			if e.Event != notify.EventRunFailures || e.Error != "exit 1" {
				t.Errorf("step %d: event %+v", i, e)
			}
		}
		if strings.Join(got, ",") != s.want {
			t.Errorf("step %d (%v): sent %v, want %q", i, s.at, got, s.want)
		}
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }
