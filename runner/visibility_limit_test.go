package runner_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/runner"
)

// The runner's message visibility meets SQS's limit: a message's visibility
// cannot be extended past 12 h from its receive
// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html),
// which the AWS rules enforce. These tests move the runner's clock and the
// rules' clock forward together to seconds before that limit.

// limitVisibility is the queue's visibility timeout in these tests:
// heartbeats every 5 s. It must exceed the runner's safety margin (5 s) and
// a heartbeat interval for a window to exist in which the full timeout is
// refused and a shorter one accepted.
const limitVisibility = 15 * time.Second

// nearLimit is a runner working on one message whose receive is 13 s short
// of 12 h old by both clocks.
type nearLimit struct {
	s       *stage
	calls   *testenv.CallCounter // the runner's requests
	release string               // creating this file lets the command end
	done    chan error           // Run's result
	advance func(time.Duration)  // moves both clocks
}

// startNearLimit starts a runner whose command waits for n.release and then
// runs then (shell), and moves both clocks to 13 s before 12 h after the
// receive. At that point it checks that SQS refuses to extend the message's
// visibility by the full timeout.
func startNearLimit(t *testing.T, o stageOptions, then string) *nearLimit {
	t.Helper()
	o.visibility, o.shortPoll = limitVisibility, true
	s := newStage(t, o)
	n := &nearLimit{s: s, calls: new(testenv.CallCounter), release: filepath.Join(s.root, "release"), done: make(chan error, 1)}
	started := filepath.Join(s.root, "started")
	hold := s.script("hold.sh", `touch "`+started+`"; while [ ! -e "`+n.release+`" ]; do sleep 0.1; done; `+then)
	s.cfg.RunCommand = "sh " + hold + " $input $output"
	s.cfg.Visibility = limitVisibility
	// After a failure: a minute, capped by the visibility timeout.
	s.cfg.RetryDelay = time.Minute
	s.put("long.txt", "l")
	s.send("long.txt")

	// The runner's requests, and the receipt handle of its receive with
	// when the answer came: no earlier than the AWS rules stamped it.
	awsCfg := s.aws.Copy()
	n.calls.Attach(&awsCfg)
	var rcv receiveCapture
	rcv.attach(&awsCfg)
	var shift atomic.Int64 // the runner's clock's advance
	now := func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	n.advance = func(d time.Duration) {
		shift.Add(int64(d))
		testenv.AdvanceAWSClock(d)
	}
	cfg, log := s.cfg, s.logger()
	go func() { n.done <- runner.RunWithClock(t.Context(), awsCfg, cfg, log, now) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runner logs:\n%s", s.logs.String())
		}
	})
	waitFor(t, "the command to start", func() bool { _, err := os.Stat(started); return err == nil })
	handle, receivedBy := rcv.get()
	if handle == "" {
		t.Fatal("the runner works on a message it was not seen receiving")
	}

	// To 13 s before the 12 h, counted from no earlier than the receive:
	// the full timeout would end past the limit, while the runner, within
	// 5 s, still has a few seconds to ask for.
	n.advance(12*time.Hour - 13*time.Second - time.Since(receivedBy))
	_, err := s.sqs.ChangeMessageVisibility(t.Context(), &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &s.queueURL, ReceiptHandle: &handle, VisibilityTimeout: int32(limitVisibility / time.Second),
	})
	if ae := (smithy.APIError)(nil); !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValue" {
		t.Fatalf("ChangeMessageVisibility for the full %v 13 s before the limit: %v, want InvalidParameterValue", limitVisibility, err)
	}
	return n
}

// finish lets the command end and waits for Run, which must succeed.
func (n *nearLimit) finish(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(n.release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-n.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// visibilities returns what each ChangeMessageVisibility of the runner
// asked for, in seconds, and checks each is within 0 to the full timeout.
func (n *nearLimit) visibilities(t *testing.T) []int32 {
	t.Helper()
	var asked []int32
	for _, in := range n.calls.Inputs("SQS.ChangeMessageVisibility") {
		v := in.(*sqs.ChangeMessageVisibilityInput).VisibilityTimeout
		if v < 0 || v > int32(limitVisibility/time.Second) {
			t.Errorf("the runner asked for a visibility of %d s, want 0 to %v", v, limitVisibility)
		}
		asked = append(asked, v)
	}
	return asked
}

// TestRunHeartbeatKeepsWithin12Hours: near the limit the heartbeat asks for
// what is left, which is accepted where the full visibility timeout is
// refused. Once nothing is left the runner stops extending, lets the run
// finish, and its record says it outlived the limit.
func TestRunHeartbeatKeepsWithin12Hours(t *testing.T) {
	n := startNearLimit(t, stageOptions{}, `cp "$1" "$2"`)
	s := n.s
	const gaveUp, refused = "visibility no longer extended", `msg="visibility not extended"`
	waitFor(t, "the heartbeat to reach the limit", func() bool {
		l := s.logs.String()
		return strings.Contains(l, gaveUp) || strings.Contains(l, refused)
	})
	n.advance(time.Minute) // the run goes on past the 12 h
	n.finish(t)

	logs := s.logs.String()
	if strings.Contains(logs, refused) {
		t.Error("SQS refused a heartbeat: it asked for more than the time left before 12 h from the receive")
	}
	if c := strings.Count(logs, gaveUp); c != 1 {
		t.Errorf("the runner said %d times that it stopped extending, want once", c)
	}
	asked := n.visibilities(t)
	capped := 0
	for _, v := range asked {
		if v > 0 && v < int32(limitVisibility/time.Second) {
			capped++
		}
	}
	// Every heartbeat the runner sent was accepted (none refused, above).
	if capped == 0 || strings.Count(logs, `msg="visibility extended"`) != len(asked) {
		t.Errorf("heartbeats asked for %v s; want at least one capped heartbeat, each accepted", asked)
	}

	recs := s.records()
	if len(recs) == 0 {
		t.Fatal("no run record")
	}
	// The first record is the run that outlived the limit. The message was
	// visible again meanwhile: a later delivery, if any, finds the result
	// and is a duplicate.
	if r := recs[0]; r.Outcome != contract.OutcomeOK || !r.OutlivedVisibilityLimit || r.Duplicate {
		t.Errorf("record %+v, want an ok run that outlived the visibility limit", r)
	}
	for _, r := range recs[1:] {
		if r.Outcome != contract.OutcomeOK || !r.Duplicate || r.OutlivedVisibilityLimit {
			t.Errorf("later record %+v, want a duplicate within the limit", r)
		}
	}
	if got, ok := s.get(s.out, "Result-copy-long.txt"); !ok || got != "l" {
		t.Errorf("result = %q (exists %v), want the copy", got, ok)
	}
	t.Logf("heartbeats asked for %v s; %d record(s)", asked, len(recs))
}

// TestRunRetryDelayKeepsWithin12Hours: a run that fails near the limit
// releases its message for a retry no later than the limit allows, where
// its retry delay (the full 15 s visibility timeout) would be refused.
func TestRunRetryDelayKeepsWithin12Hours(t *testing.T) {
	n := startNearLimit(t, stageOptions{maxReceiveCount: 1}, "exit 3")
	s := n.s
	n.finish(t)

	if strings.Contains(s.logs.String(), "message not released") {
		t.Error("the failed run's message was not released for its retry")
	}
	asked := n.visibilities(t)
	if len(asked) == 0 || asked[len(asked)-1] == 0 || asked[len(asked)-1] >= int32(limitVisibility/time.Second) {
		t.Errorf("the runner asked for visibilities %v s, want the last, the release, between 0 and %v exclusive", asked, limitVisibility)
	}
	recs := s.records()
	if len(recs) != 1 || recs[0].Outcome != contract.OutcomeFailed || recs[0].OutlivedVisibilityLimit {
		t.Errorf("records %+v, want one failed run within the limit", recs)
	}
	t.Logf("the runner asked for visibilities %v s", asked)
}

// receiveCapture remembers the receipt handle of the last message a
// client received, and when the answer arrived.
type receiveCapture struct {
	mu     sync.Mutex
	handle string
	at     time.Time
}

func (c *receiveCapture) attach(cfg *aws.Config) {
	opts := cfg.APIOptions[:len(cfg.APIOptions):len(cfg.APIOptions)]
	cfg.APIOptions = append(opts, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test.receiveCapture",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				if r, ok := out.Result.(*sqs.ReceiveMessageOutput); ok && err == nil && len(r.Messages) > 0 {
					c.mu.Lock()
					c.handle, c.at = aws.ToString(r.Messages[len(r.Messages)-1].ReceiptHandle), time.Now()
					c.mu.Unlock()
				}
				return out, md, err
			}), middleware.After)
	})
}

func (c *receiveCapture) get() (handle string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.handle, c.at
}

// waitFor polls cond until it holds; the bound only keeps a broken runner
// from hanging the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}
