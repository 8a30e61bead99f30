package provision_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/internal/stagetask"
	"github.com/cloudpipe/cloudpipe/provision"
)

// TestStageActivity reads a stage's activity through the local ECS in front
// of kumo, whose tasks of an image under registry.invalid stop before they
// start, as ECS stops a task whose image cannot be pulled: three files wait
// with no task, a task the agent starts stops with CannotPullContainerError,
// and the files move to the dead-letter queue with their bodies and
// attributes. Then, with an image that runs, a started task counts as
// running.
func TestStageActivity(t *testing.T) {
	e, ecsProxy := newLocalECSEnv(t)
	ctx := t.Context()
	spec := e.spec()
	spec.Secrets, spec.TaskCredentialsSecret = nil, ""
	spec.Algorithm.Image = "registry.invalid/sorter:1"
	res := e.ensure(spec, provision.StageResources{})

	a, err := e.p.StageActivity(ctx, spec, res)
	if err != nil || a != (provision.StageActivity{}) {
		t.Fatalf("activity of an idle stage = %+v, %v; want all zero", a, err)
	}

	bodies := map[string]bool{}
	for i, key := range []string{"a.txt", "b.txt", "c.txt"} {
		body, err := contract.Message{Bucket: spec.InputBucket, Key: key, EventTime: time.Now().UTC()}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		bodies[body] = true
		in := &sqs.SendMessageInput{QueueUrl: aws.String(res.QueueURL), MessageBody: aws.String(body)}
		if i == 0 {
			in.MessageAttributes = map[string]sqstypes.MessageAttributeValue{
				"origin": {DataType: aws.String("String"), StringValue: aws.String("test")}}
		}
		if _, err := e.sqs.SendMessage(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	a, err = e.p.StageActivity(ctx, spec, res)
	if err != nil || a.Waiting != 3 || a.Running != 0 || a.InFlight != 0 || !a.Stranded() || a.StoppedReason != "" {
		t.Fatalf("activity with 3 queued and no task ever started = %+v, %v", a, err)
	}

	arn, err := e.p.StartStageTask(ctx, spec, res)
	if err != nil {
		t.Fatalf("StartStageTask: %v", err)
	}
	tasks := ecsProxy.Tasks()
	i := slices.IndexFunc(tasks, func(tk localecs.Task) bool { return tk.TaskARN == arn })
	if i < 0 || tasks[i].StartedBy != stagetask.StartedBy || tasks[i].Family != provision.ResourceName(spec.Workflow, 0) ||
		tasks[i].StopCode != localecs.StopTaskFailedToStart {
		t.Fatalf("started task %s: %+v; want a task of the stage's family, started by %s, failed to start", arn, tasks, stagetask.StartedBy)
	}
	a, err = e.p.StageActivity(ctx, spec, res)
	if err != nil || a.Waiting != 3 || a.Running != 0 || !strings.HasPrefix(a.StoppedReason, "CannotPullContainerError") {
		t.Fatalf("activity after a failed start = %+v, %v; want 3 waiting, none running, the pull failure", a, err)
	}

	n, err := e.p.DeadLetterWaiting(ctx, spec, res, a.StoppedReason)
	if err != nil || n != 3 {
		t.Fatalf("DeadLetterWaiting = %d, %v; want 3", n, err)
	}
	if a, err := e.p.StageActivity(ctx, spec, res); err != nil || a.Waiting != 0 || a.InFlight != 0 {
		t.Errorf("activity after dead-lettering = %+v, %v; want an empty queue", a, err)
	}
	out, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(res.DLQURL),
		MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"}, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 3 {
		t.Fatalf("dead-letter queue holds %d messages, want 3", len(out.Messages))
	}
	for _, m := range out.Messages {
		attrs := m.MessageAttributes
		if !bodies[aws.ToString(m.Body)] ||
			aws.ToString(attrs[contract.AttrDeadLetterReason].StringValue) != contract.DeadLetterStranded ||
			!strings.HasPrefix(aws.ToString(attrs[contract.AttrDeadLetterError].StringValue), "CannotPullContainerError") ||
			aws.ToString(attrs[contract.AttrDeadLetterFlow].StringValue) != spec.Workflow {
			t.Errorf("dead letter %s with %v: want a queued body with the reason attributes", aws.ToString(m.Body), attrs)
		}
		delete(bodies, aws.ToString(m.Body))
		if _, kept := attrs["origin"]; strings.Contains(aws.ToString(m.Body), `"a.txt"`) && !kept {
			t.Errorf("dead letter of a.txt lost its attribute: %v", attrs)
		}
	}

	// An image that runs: the task the agent starts counts as running.
	spec.Algorithm.Image = "alpine:3.20"
	res = e.ensure(spec, res)
	if _, err := e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(res.QueueURL), MessageBody: aws.String(`{"bucket":"b","key":"d.txt"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.StartStageTask(ctx, spec, res); err != nil {
		t.Fatal(err)
	}
	a, err = e.p.StageActivity(ctx, spec, res)
	if err != nil || a.Waiting != 1 || a.Running != 1 || a.Stranded() {
		t.Errorf("activity with a running task = %+v, %v; want 1 waiting, 1 running", a, err)
	}
}
