package provision_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/provision"
)

// TestRedrivePrimitives, through the local ECS in front of kumo: a
// stage's queue counts, a dead letter received, sent back and deleted, and
// tasks started for redriven files under the stage's max_tasks, counting
// the tasks that run (the local ECS serves ListTasks, which kumo lacks).
func TestRedrivePrimitives(t *testing.T) {
	e, ecsProxy := newLocalECSEnv(t)
	ctx := t.Context()
	spec := e.spec()
	spec.Secrets, spec.TaskCredentialsSecret = nil, ""
	spec.Algorithm.Image = "alpine:3.20"
	spec.MaxTasks = 3
	res := e.ensure(spec, provision.StageResources{})

	for _, url := range []string{res.QueueURL, res.QueueURL, res.DLQURL} {
		if _, err := e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(`{"bucket":"b","key":"k"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(res.QueueURL), VisibilityTimeout: 60}); err != nil {
		t.Fatal(err)
	}
	if q, err := e.p.StageQueues(ctx, spec, res); err != nil || q != (provision.StageQueues{Waiting: 1, InFlight: 1, DeadLetters: 1}) {
		t.Fatalf("StageQueues = %+v, %v; want 1 waiting, 1 in flight, 1 dead letter", q, err)
	}

	msgs, err := e.p.ReceiveDeadLetters(ctx, spec, res, 30*time.Second)
	if err != nil || len(msgs) != 1 || msgs[0].Body != `{"bucket":"b","key":"k"}` {
		t.Fatalf("ReceiveDeadLetters = %+v, %v", msgs, err)
	}
	if again, err := e.p.ReceiveDeadLetters(ctx, spec, res, 30*time.Second); err != nil || len(again) != 0 {
		t.Errorf("a received dead letter was received again while hidden: %+v, %v", again, err)
	}
	if _, err := e.p.SendWork(ctx, spec, res, msgs[0].Body, msgs[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := e.p.DeleteDeadLetter(ctx, spec, res, msgs[0].Receipt); err != nil {
		t.Fatal(err)
	}
	if q, err := e.p.StageQueues(ctx, spec, res); err != nil || q.Waiting != 2 || q.DeadLetters != 0 {
		t.Errorf("after the move: %+v, %v; want 2 waiting, no dead letter", q, err)
	}

	// max_tasks 3: two files start two tasks, then five more start the one
	// the cap leaves, then none.
	for i, want := range []struct{ files, started int }{{2, 2}, {5, 1}, {5, 0}} {
		n, err := e.p.StartStageTasks(ctx, spec, res, want.files, "t"+string(rune('0'+i)))
		if err != nil || n != want.started {
			t.Errorf("StartStageTasks(%d files) #%d = %d, %v; want %d", want.files, i+1, n, err, want.started)
		}
	}
	if n := len(ecsProxy.Tasks()); n != 3 {
		t.Errorf("%d tasks started in all, want the cap of 3", n)
	}
}
