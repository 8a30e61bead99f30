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

// TestRunHeartbeatKeepsWithin12Hours takes a run to SQS's limit: a
// message's visibility cannot be extended past 12 h from its receive
// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html),
// which the AWS rules enforce. The runner's clock and the rules' clock are
// moved forward together to seconds before the limit: the heartbeat then
// asks for what is left, which is accepted, where the full visibility
// timeout is refused. Once nothing is left the runner stops extending,
// lets the run finish, and its record says it outlived the limit.
func TestRunHeartbeatKeepsWithin12Hours(t *testing.T) {
	// Heartbeats every 5 s. The visibility must exceed the runner's safety
	// margin (5 s) and a heartbeat interval for a window to exist in which
	// the full timeout is refused and a shorter one accepted.
	const visibility = 15 * time.Second
	s := newStage(t, stageOptions{visibility: visibility, shortPoll: true})
	started, release := filepath.Join(s.root, "started"), filepath.Join(s.root, "release")
	hold := s.script("hold.sh", `touch "`+started+`"; while [ ! -e "`+release+`" ]; do sleep 0.1; done; cp "$1" "$2"`)
	s.cfg.RunCommand = "sh " + hold + " $input $output"
	s.cfg.Visibility = visibility
	s.put("long.txt", "l")
	s.send("long.txt")

	// The runner's requests: the heartbeats it sends, and the receipt
	// handle of its receive with when the answer came (no earlier than the
	// AWS rules stamped the receive).
	awsCfg := s.aws.Copy()
	var calls testenv.CallCounter
	calls.Attach(&awsCfg)
	var rcv receiveCapture
	rcv.attach(&awsCfg)
	var shift atomic.Int64 // the runner's clock's advance
	now := func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	advance := func(d time.Duration) {
		shift.Add(int64(d))
		testenv.AdvanceAWSClock(d)
	}

	done := make(chan error, 1)
	go func() {
		done <- runner.RunWithClock(t.Context(), awsCfg, s.cfg, s.logger(), now)
	}()
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
	// the full timeout would end past the limit, while a heartbeat within
	// the next 5 s still has a few seconds to ask for.
	advance(12*time.Hour - 13*time.Second - time.Since(receivedBy))
	_, err := s.sqs.ChangeMessageVisibility(t.Context(), &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &s.queueURL, ReceiptHandle: &handle, VisibilityTimeout: int32(visibility / time.Second),
	})
	if ae := (smithy.APIError)(nil); !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValue" {
		t.Fatalf("ChangeMessageVisibility for the full %v 13 s before the limit: %v, want InvalidParameterValue", visibility, err)
	}

	const gaveUp, refused = "visibility no longer extended", `msg="visibility not extended"`
	waitFor(t, "the heartbeat to reach the limit", func() bool {
		l := s.logs.String()
		return strings.Contains(l, gaveUp) || strings.Contains(l, refused)
	})
	advance(time.Minute) // the run goes on past the 12 h
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	logs := s.logs.String()
	if strings.Contains(logs, refused) {
		t.Error("SQS refused a heartbeat: it asked for more than the time left before 12 h from the receive")
	}
	if n := strings.Count(logs, gaveUp); n != 1 {
		t.Errorf("the runner said %d times that it stopped extending, want once", n)
	}
	var capped int
	var asked []int32
	hbs := calls.Inputs("SQS.ChangeMessageVisibility")
	for _, in := range hbs {
		v := in.(*sqs.ChangeMessageVisibilityInput).VisibilityTimeout
		asked = append(asked, v)
		if v <= 0 || v > int32(visibility/time.Second) {
			t.Errorf("a heartbeat asked for %d s, want 1 to %v", v, visibility)
		}
		if v < int32(visibility/time.Second) {
			capped++
		}
	}
	// Every heartbeat the runner sent was accepted (none refused, above).
	if capped == 0 || strings.Count(logs, `msg="visibility extended"`) != len(hbs) {
		t.Errorf("heartbeats %d, of them capped %d; want at least one capped heartbeat, each accepted", len(hbs), capped)
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
