package lambda_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/lambda"
	"github.com/cloudpipe/cloudpipe/provision"
)

func decode(t *testing.T, m sqstypes.Message) contract.Message {
	t.Helper()
	msg, err := contract.DecodeMessage(aws.ToString(m.Body))
	if err != nil {
		t.Fatalf("message body %q: %v", aws.ToString(m.Body), err)
	}
	return msg
}

func TestHandleOneRecord(t *testing.T) {
	s := newStage(t, stageOptions{})
	ev := s3Event(t, "in-bucket", "data/a.txt")
	if err := s.handler().Handle(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	msgs := s.receiveAll(s.cfg.QueueURL)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	got := decode(t, msgs[0])
	want := contract.Message{Bucket: "in-bucket", Key: "data/a.txt", Size: 100, ETag: "etagdata/a.txt",
		EventTime: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)}
	if got != want {
		t.Errorf("message = %+v, want %+v", got, want)
	}

	runs := s.runTasks()
	if len(runs) != 1 {
		t.Fatalf("%d RunTask calls, want 1", len(runs))
	}
	in := runs[0]
	vpc := in.NetworkConfiguration.AwsvpcConfiguration
	switch {
	case aws.ToInt32(in.Count) != 1:
		t.Errorf("count = %d, want 1", aws.ToInt32(in.Count))
	case in.LaunchType != ecstypes.LaunchTypeFargate:
		t.Errorf("launch type = %s", in.LaunchType)
	case aws.ToString(in.Cluster) != s.cfg.Cluster || aws.ToString(in.TaskDefinition) != s.cfg.TaskDefinition:
		t.Errorf("cluster, task definition = %s, %s", aws.ToString(in.Cluster), aws.ToString(in.TaskDefinition))
	case !slices.Equal(vpc.Subnets, s.cfg.Subnets) || !slices.Equal(vpc.SecurityGroups, s.cfg.SecurityGroups) ||
		vpc.AssignPublicIp != ecstypes.AssignPublicIpEnabled:
		t.Errorf("network = %+v", vpc)
	case len(aws.ToString(in.ClientToken)) == 0 || len(aws.ToString(in.ClientToken)) > 64:
		t.Errorf("clientToken %q: want 1 to 64 characters", aws.ToString(in.ClientToken))
	}
	if n := len(s.receiveAll(s.cfg.DLQURL)); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	// The handler acted as the stage's Lambda role, and IAM allowed it.
	rep := testenv.AWSRules(t).Report()
	if r := rep.Principals[roleName(s.role)]; r.Authorized == 0 || len(r.Denied) > 0 {
		t.Errorf("the Lambda role's authorizations: %+v, want some and no denial", r)
	}
	authorized, denied := 0, 0
	for _, r := range rep.Principals {
		authorized += r.Authorized
		denied += len(r.Denied)
	}
	t.Logf("AWS rules so far in this package: %d principals, %d authorized, %d denied; this role %+v, unused statements %v",
		len(rep.Principals), authorized, denied, rep.Principals[roleName(s.role)], rep.Unused[roleName(s.role)])
}

func TestHandleManyRecords(t *testing.T) {
	s := newStage(t, stageOptions{maxTasks: 15})
	var keys []string
	for i := range 25 {
		keys = append(keys, fmt.Sprintf("in/file-%02d.csv", i))
	}
	if err := s.handler().Handle(t.Context(), s3Event(t, "in-bucket", keys...)); err != nil {
		t.Fatal(err)
	}
	if n := s.calls.Ops()["SQS.SendMessageBatch"]; n != 3 {
		t.Errorf("%d SendMessageBatch calls, want 3", n)
	}
	var got []string
	for _, m := range s.receiveAll(s.cfg.QueueURL) {
		got = append(got, decode(t, m).Key)
	}
	slices.Sort(got)
	if !slices.Equal(got, keys) {
		t.Errorf("queued keys %q, want %q", got, keys)
	}
	for _, in := range s.runTasks() {
		if c := aws.ToInt32(in.Count); c < 1 || c > 10 {
			t.Errorf("RunTask count %d, want 1..10", c)
		}
	}
	if n := s.tasksStarted(); n != 15 {
		t.Errorf("%d tasks started, want max_tasks = 15", n)
	}
}

func TestHandleKeys(t *testing.T) {
	s := newStage(t, stageOptions{})
	tests := []struct{ encoded, want string }{
		{"in/a+b.txt", "in/a b.txt"},
		{"in/a%2Bb.txt", "in/a+b.txt"},
		{"in/%E6%97%A5%E6%9C%AC%E8%AA%9E.txt", "in/日本語.txt"},
		{"in/%24%28reboot%29.txt", "in/$(reboot).txt"},
		{"%3B+rm+-rf+%2F+%23", "; rm -rf / #"},
		{"in/100%25.txt", "in/100%.txt"},
	}
	var encoded, want []string
	for _, tt := range tests {
		encoded = append(encoded, tt.encoded)
		want = append(want, tt.want)
	}
	if err := s.handler().Handle(t.Context(), s3Event(t, "in-bucket", encoded...)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range s.receiveAll(s.cfg.QueueURL) {
		got = append(got, decode(t, m).Key)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("decoded keys\n got %q\nwant %q", got, want)
	}
}

// TestHandleRecordsBuiltInCode covers records that were not decoded from
// JSON, so URLDecodedKey is empty: the handler decodes Key itself.
func TestHandleRecordsBuiltInCode(t *testing.T) {
	s := newStage(t, stageOptions{})
	var rec events.S3EventRecord
	rec.EventName = "ObjectCreated:Put"
	rec.S3.Bucket.Name = "in-bucket"
	rec.S3.Object.Key = "in/x+y%2Bz.txt"
	if err := s.handler().Handle(t.Context(), events.S3Event{Records: []events.S3EventRecord{rec}}); err != nil {
		t.Fatal(err)
	}
	msgs := s.receiveAll(s.cfg.QueueURL)
	if len(msgs) != 1 || decode(t, msgs[0]).Key != "in/x y+z.txt" {
		t.Errorf("messages %v, want one for in/x y+z.txt", msgs)
	}
}

func TestHandleSkips(t *testing.T) {
	s := newStage(t, stageOptions{})
	ev := s3Event(t, "in-bucket", "in/folder/", "in/real.txt", "in/gone.txt")
	ev.Records[2].EventName = "ObjectRemoved:Delete"
	if err := s.handler().Handle(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	msgs := s.receiveAll(s.cfg.QueueURL)
	if len(msgs) != 1 || decode(t, msgs[0]).Key != "in/real.txt" {
		t.Errorf("queued %d messages, want only in/real.txt", len(msgs))
	}
	if n := s.tasksStarted(); n != 1 {
		t.Errorf("%d tasks started, want 1", n)
	}
}

func TestHandleEmptyEvent(t *testing.T) {
	s := newStage(t, stageOptions{})
	// S3 sends an s3:TestEvent, which has no Records, when a notification
	// is configured.
	if err := s.handler().Handle(t.Context(), events.S3Event{}); err != nil {
		t.Fatal(err)
	}
	if n := s.calls.Total(); n != 0 {
		t.Errorf("%d AWS calls for an empty event, want 0: %v", n, s.calls.Ops())
	}
}

func TestHandleDuplicateEventSameToken(t *testing.T) {
	s := newStage(t, stageOptions{})
	h := s.handler()
	ev := s3Event(t, "in-bucket", "in/a.txt")
	for range 2 {
		if err := h.Handle(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	// Another upload of the same key is another event: a new token.
	again := s3Event(t, "in-bucket", "in/a.txt")
	again.Records[0].EventTime = again.Records[0].EventTime.Add(time.Second)
	again.Records[0].S3.Object.ETag = "other"
	if err := h.Handle(t.Context(), again); err != nil {
		t.Fatal(err)
	}
	// A batch of several records has its own token, the same each time.
	many := s3Event(t, "in-bucket", "in/b.txt", "in/c.txt", "in/d.txt")
	for range 2 {
		if err := h.Handle(t.Context(), many); err != nil {
			t.Fatal(err)
		}
	}
	runs := s.runTasks()
	if len(runs) != 5 {
		t.Fatalf("%d RunTask calls, want 5", len(runs))
	}
	tok := func(i int) string { return aws.ToString(runs[i].ClientToken) }
	if tok(0) != tok(1) {
		t.Errorf("the same event gave clientTokens %q and %q", tok(0), tok(1))
	}
	if tok(2) == tok(0) {
		t.Errorf("a new upload of the same key reused clientToken %q", tok(0))
	}
	if tok(3) != tok(4) || tok(3) == tok(0) || aws.ToInt32(runs[3].Count) != 3 {
		t.Errorf("batch tokens %q, %q (count %d): want equal, new, count 3", tok(3), tok(4), aws.ToInt32(runs[3].Count))
	}
	for i := range runs {
		if len(tok(i)) > 64 {
			t.Errorf("clientToken %q longer than 64", tok(i))
		}
	}
}

func TestHandleDeadLetters(t *testing.T) {
	s := newStage(t, stageOptions{})
	huge := "in/" + strings.Repeat("x", lambda.MaxMessageBytes) + ".txt"
	ev := s3Event(t, "in-bucket", "in/ok.txt", huge, "")
	if err := s.handler().Handle(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	queued := s.receiveAll(s.cfg.QueueURL)
	if len(queued) != 1 || decode(t, queued[0]).Key != "in/ok.txt" {
		t.Errorf("queued %d messages, want only in/ok.txt", len(queued))
	}
	dead := s.receiveAll(s.cfg.DLQURL)
	reasons := map[string]string{} // reason -> body
	for _, m := range dead {
		attrs := m.MessageAttributes
		reason := aws.ToString(attrs[lambda.AttrReason].StringValue)
		reasons[reason] = aws.ToString(m.Body)
		if aws.ToString(attrs[lambda.AttrError].StringValue) == "" || aws.ToString(attrs[lambda.AttrWorkflow].StringValue) != s.cfg.Workflow {
			t.Errorf("dead letter %s lacks error or workflow attributes: %v", reason, attrs)
		}
		if len(aws.ToString(m.Body)) > lambda.MaxMessageBytes {
			t.Errorf("dead letter %s is %d bytes", reason, len(aws.ToString(m.Body)))
		}
	}
	if len(dead) != 2 || reasons[lambda.ReasonTooLarge] == "" || reasons[lambda.ReasonBadRecord] == "" {
		t.Fatalf("dead letters by reason %v, want %s and %s", keysOf(reasons), lambda.ReasonTooLarge, lambda.ReasonBadRecord)
	}
	big, err := contract.DecodeDeadLetter(reasons[lambda.ReasonTooLarge])
	if err != nil || !big.Truncated ||
		!strings.HasPrefix(huge, big.Key) || big.Bucket != "in-bucket" {
		t.Errorf("too-large dead letter = %.200s (%v), want the record with its key cut", reasons[lambda.ReasonTooLarge], err)
	}
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestHandleRunTaskDenied: IAM refuses RunTask of a task definition outside
// the stage's family (the Lambda role may start only its own stage's tasks),
// which retrying cannot fix: the records are dead-lettered.
func TestHandleRunTaskDenied(t *testing.T) {
	p := newFaultProxy(t) // no rules: it counts the attempts
	s := newStage(t, stageOptions{proxy: p})
	s.expectDenials()
	family := provision.ResourceName(s.cfg.Workflow, 0)
	s.cfg.TaskDefinition = strings.Replace(s.cfg.TaskDefinition, ":task-definition/"+family+":", ":task-definition/"+family+"-other:", 1)
	if err := s.handler().Handle(t.Context(), s3Event(t, "in-bucket", "in/a.txt", "in/b.txt")); err != nil {
		t.Fatalf("Handle = %v, want nil: retrying cannot fix access denied", err)
	}
	// Each file in one place: queued, for the agent's stranded-files check
	// to start a task again or dead-letter it; no dead-letter copy.
	if n := len(s.receiveAll(s.cfg.QueueURL)); n != 2 {
		t.Errorf("%d messages queued, want 2 (queued before RunTask)", n)
	}
	if dead := s.receiveAll(s.cfg.DLQURL); len(dead) != 0 {
		t.Errorf("%d dead letters, want none: the files are still queued", len(dead))
	}
	if n := p.count("RunTask"); n != 1 {
		t.Errorf("%d RunTask calls, want 1 (access denied is not retried)", n)
	}
	if d := s.denied(); len(d) != 1 || !strings.HasPrefix(d[0], "ecs:RunTask on ") {
		t.Errorf("IAM denied the Lambda role %q, want one ecs:RunTask", d)
	}
}

func TestHandleThrottled(t *testing.T) {
	p := newFaultProxy(t)
	p.on("RunTask", func(n int) (int, string) {
		if n <= 2 {
			return http.StatusBadRequest, awsError("ThrottlingException", "Rate exceeded")
		}
		return 0, ""
	})
	s := newStage(t, stageOptions{proxy: p})
	if err := s.handler().Handle(t.Context(), s3Event(t, "in-bucket", "in/a.txt")); err != nil {
		t.Fatal(err)
	}
	if n := p.count("RunTask"); n != 3 {
		t.Errorf("%d RunTask attempts, want 3 (two throttled)", n)
	}
	if n := len(s.receiveAll(s.cfg.DLQURL)); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	// The production retryer retries throttling too, not only the test's.
	throttle := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
	if !lambda.DefaultRetryer().IsErrorRetryable(throttle) {
		t.Error("DefaultRetryer does not retry ThrottlingException")
	}
}

func TestHandleServerErrorIsRetried(t *testing.T) {
	p := newFaultProxy(t)
	p.on("RunTask", func(int) (int, string) {
		return http.StatusInternalServerError, awsError("ServerException", "internal error")
	})
	s := newStage(t, stageOptions{proxy: p})
	err := s.handler().Handle(t.Context(), s3Event(t, "in-bucket", "in/a.txt"))
	if err == nil || !strings.Contains(err.Error(), "ServerException") {
		t.Fatalf("Handle = %v, want the ServerException for Lambda to retry", err)
	}
	if n := len(s.receiveAll(s.cfg.DLQURL)); n != 0 {
		t.Errorf("%d dead letters, want none: a server error is retried", n)
	}
}

func TestHandleRunningTasksCounted(t *testing.T) {
	p := newFaultProxy(t)
	p.on("ListTasks", func(int) (int, string) {
		var arns []string
		for i := range 7 {
			arns = append(arns, fmt.Sprintf("arn:aws:ecs:us-east-1:000000000000:task/c/%d", i))
		}
		b, _ := json.Marshal(map[string]any{"taskArns": arns})
		return http.StatusOK, string(b)
	})
	s := newStage(t, stageOptions{proxy: p, maxTasks: 10})
	s.uploadEight()
	if n := s.tasksStarted(); n != 3 {
		t.Errorf("%d tasks started with 7 of 10 running, want 3", n)
	}
	in := s.calls.LastInput("ECS.ListTasks").(*ecs.ListTasksInput)
	if want := "cp-" + s.cfg.Workflow + "-0"; aws.ToString(in.Family) != want || in.DesiredStatus != ecstypes.DesiredStatusRunning {
		t.Errorf("ListTasks family %q status %s, want %q RUNNING", aws.ToString(in.Family), in.DesiredStatus, want)
	}
}

// TestHandleUncountedStartsOneTask: when the running tasks cannot be
// counted (here ListTasks is denied, as it was on a real account before the
// role could list tasks on "*"), an event starts one task, not MaxTasks, so
// a burst of uploads cannot run the stage far past its cap.
func TestHandleUncountedStartsOneTask(t *testing.T) {
	p := newFaultProxy(t)
	p.on("ListTasks", func(int) (int, string) {
		return http.StatusBadRequest, awsError("AccessDeniedException", "not authorized to perform: ecs:ListTasks")
	})
	s := newStage(t, stageOptions{proxy: p, maxTasks: 10})
	s.uploadEight()
	if n := s.tasksStarted(); n != 1 {
		t.Errorf("%d tasks started for 8 files while the count failed, want 1", n)
	}
	if got := len(s.receiveAll(s.cfg.QueueURL)); got != 8 {
		t.Errorf("%d messages queued, want all 8 (the one task drains them)", got)
	}
}

func TestHandleListTasksMissingAskedOnce(t *testing.T) {
	s := newStage(t, stageOptions{})
	h := s.handler()
	for i := range 3 {
		if err := h.Handle(t.Context(), s3Event(t, "in-bucket", fmt.Sprintf("in/%d.txt", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.calls.Ops()["ECS.ListTasks"]; n != 1 {
		t.Errorf("%d ListTasks calls against kumo (which lacks it, after IAM allowed it), want 1", n)
	}
	if n := s.tasksStarted(); n != 3 {
		t.Errorf("%d tasks started, want 3", n)
	}
}

func TestHandleNearDeadline(t *testing.T) {
	s := newStage(t, stageOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	h := s.handler(lambda.WithDeadlineMargin(time.Minute))
	err := h.Handle(ctx, s3Event(t, "in-bucket", "in/a.txt"))
	if !errors.Is(err, lambda.ErrDeadline) {
		t.Fatalf("Handle = %v, want ErrDeadline", err)
	}
	if n := len(s.runTasks()); n != 0 {
		t.Errorf("%d RunTask calls near the deadline, want 0", n)
	}
	if n := len(s.receiveAll(s.cfg.QueueURL)); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
}

// TestHandleShortFunctionTimeout: with a function timeout far below the
// default margin, the automatic margin (a third of the time) still lets
// tasks start.
func TestHandleShortFunctionTimeout(t *testing.T) {
	s := newStage(t, stageOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := s.handler().Handle(ctx, s3Event(t, "in-bucket", "in/a.txt")); err != nil {
		t.Fatal(err)
	}
	if n := s.tasksStarted(); n != 1 {
		t.Errorf("%d tasks started, want 1", n)
	}
}

func TestHandleQueueUnavailable(t *testing.T) {
	p := newFaultProxy(t)
	p.on("SendMessageBatch", func(int) (int, string) {
		return http.StatusInternalServerError, awsError("InternalError", "service unavailable")
	})
	s := newStage(t, stageOptions{proxy: p})
	err := s.handler().Handle(t.Context(), s3Event(t, "in-bucket", "in/a.txt"))
	if err == nil || !strings.Contains(err.Error(), "InternalError") {
		t.Fatalf("Handle = %v, want the queue's error for Lambda to retry", err)
	}
	if n := len(s.runTasks()); n != 0 {
		t.Errorf("%d RunTask calls with nothing queued, want 0", n)
	}
}

// TestHandleQueueRefusesEntries: SQS refuses an entry of a batch as the
// sender's fault (as it does a body with characters SQS does not allow,
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html):
// the record goes to the dead-letter queue instead of being retried forever.
func TestHandleQueueRefusesEntries(t *testing.T) {
	p := newFaultProxy(t)
	p.on("SendMessageBatch", func(n int) (int, string) {
		if n != 1 {
			return 0, "" // the dead letter goes through
		}
		b, _ := json.Marshal(map[string]any{
			"Successful": []any{},
			"Failed": []map[string]any{
				{"Id": "0", "Code": "InvalidMessageContents", "Message": "invalid characters", "SenderFault": true},
			},
		})
		return http.StatusOK, string(b)
	})
	s := newStage(t, stageOptions{proxy: p})
	if err := s.handler().Handle(t.Context(), s3Event(t, "in-bucket", "in/a.txt")); err != nil {
		t.Fatal(err)
	}
	if n := len(s.runTasks()); n != 0 {
		t.Errorf("%d RunTask calls with nothing queued, want 0", n)
	}
	dead := s.receiveAll(s.cfg.DLQURL)
	if len(dead) != 1 || aws.ToString(dead[0].MessageAttributes[lambda.AttrReason].StringValue) != lambda.ReasonQueueRejected {
		t.Errorf("dead letters %v, want one %s", dead, lambda.ReasonQueueRejected)
	}
	if n := p.count("SendMessageBatch"); n != 2 {
		t.Errorf("%d SendMessageBatch calls, want 2 (the refused entry is not sent again; its dead letter is)", n)
	}
}

// TestSendMessageBatchEntryRetry makes SQS fail one entry of a batch without
// blaming the sender: the handler sends that entry again.
func TestSendMessageBatchEntryRetry(t *testing.T) {
	p := newFaultProxy(t)
	p.on("SendMessageBatch", func(n int) (int, string) {
		if n != 1 {
			return 0, ""
		}
		b, _ := json.Marshal(map[string]any{
			"Successful": []any{},
			"Failed": []map[string]any{
				{"Id": "0", "Code": "InternalError", "Message": "try again", "SenderFault": false},
				{"Id": "1", "Code": "InternalError", "Message": "try again", "SenderFault": false},
			},
		})
		return http.StatusOK, string(b)
	})
	s := newStage(t, stageOptions{proxy: p})
	if err := s.handler().Handle(t.Context(), s3Event(t, "in-bucket", "in/a.txt", "in/b.txt")); err != nil {
		t.Fatal(err)
	}
	if n := len(s.receiveAll(s.cfg.QueueURL)); n != 2 {
		t.Errorf("%d messages queued, want 2", n)
	}
	if n := p.count("SendMessageBatch"); n != 2 {
		t.Errorf("%d SendMessageBatch calls, want 2", n)
	}
}

// Compile-time check that the handler has the signature aws-lambda-go needs
// for an S3 trigger.
var _ func(context.Context, events.S3Event) error = (*lambda.Handler)(nil).Handle

// uploadEight hands the stage's function one event of eight uploads.
func (s *stage) uploadEight() {
	s.t.Helper()
	var keys []string
	for i := range 8 {
		keys = append(keys, fmt.Sprintf("in/%d.txt", i))
	}
	if err := s.handler().Handle(s.t.Context(), s3Event(s.t, "in-bucket", keys...)); err != nil {
		s.t.Fatal(err)
	}
}
