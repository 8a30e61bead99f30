package provision_test

import (
	"context"
	"encoding/json"
	"maps"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

func TestQueues(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	ctx := t.Context()
	tags := map[string]string{provision.TagManaged: "true", provision.TagWorkflow: spec.Workflow, provision.TagStage: "0"}

	attrs := func(url string) map[string]string {
		out, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []sqstypes.QueueAttributeName{"All"}})
		if err != nil {
			t.Fatalf("queue %s: %v", url, err)
		}
		got, err := e.sqs.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: &url})
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got.Tags, tags) {
			t.Errorf("queue %s tags = %v, want %v", url, got.Tags, tags)
		}
		return out.Attributes
	}
	work, dlq := attrs(res.QueueURL), attrs(res.DLQURL)
	if work["QueueArn"] != res.QueueARN || dlq["QueueArn"] != res.DLQARN {
		t.Errorf("ARNs %s/%s, recorded %s/%s", work["QueueArn"], dlq["QueueArn"], res.QueueARN, res.DLQARN)
	}
	// Default run time 15 minutes, plus a 5 minute margin.
	if work["VisibilityTimeout"] != "1200" || work["MessageRetentionPeriod"] != "345600" || work["ReceiveMessageWaitTimeSeconds"] != "20" {
		t.Errorf("work queue attributes = %v", work)
	}
	var redrive struct {
		DeadLetterTargetArn string
		MaxReceiveCount     json.Number
	}
	if err := json.Unmarshal([]byte(work["RedrivePolicy"]), &redrive); err != nil {
		t.Fatalf("RedrivePolicy %q: %v", work["RedrivePolicy"], err)
	}
	if redrive.DeadLetterTargetArn != res.DLQARN || redrive.MaxReceiveCount.String() != "3" {
		t.Errorf("RedrivePolicy = %+v, want DLQ %s after 3 receives", redrive, res.DLQARN)
	}
	if dlq["MessageRetentionPeriod"] != "1209600" {
		t.Errorf("DLQ retention = %s, want 14 days", dlq["MessageRetentionPeriod"])
	}
}

func TestQueueAttributesRestoredInPlace(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	// Someone shortens the visibility timeout by hand.
	_, err := e.sqs.SetQueueAttributes(t.Context(), &sqs.SetQueueAttributesInput{QueueUrl: &res.QueueURL, Attributes: map[string]string{"VisibilityTimeout": "30"}})
	if err != nil {
		t.Fatal(err)
	}
	e.calls.Reset()
	again := e.ensure(spec, res)
	if got, want := e.calls.WriteOps(), map[string]int{"SQS.SetQueueAttributes": 1}; !maps.Equal(got, want) {
		t.Errorf("writes = %v, want %v (the queue is never recreated)", got, want)
	}
	in := e.calls.LastInput("SQS.SetQueueAttributes").(*sqs.SetQueueAttributesInput)
	if want := map[string]string{"VisibilityTimeout": "1200"}; !maps.Equal(in.Attributes, want) {
		t.Errorf("SetQueueAttributes sent %v, want only %v", in.Attributes, want)
	}
	if again.QueueURL != res.QueueURL {
		t.Errorf("queue URL changed from %s to %s", res.QueueURL, again.QueueURL)
	}
}

// TestQueueNameReusedWithinAMinute: a stage deleted and created again in
// one pass (a workflow removed and added back, a stage replaced) waits out
// the minute SQS holds a deleted queue's name, and succeeds. The AWS rules
// hold the name; the provisioner's Sleep moves their clock instead of
// waiting.
func TestQueueNameReusedWithinAMinute(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	var waited []time.Duration
	opts := e.opts
	opts.Sleep = func(_ context.Context, d time.Duration) error {
		waited = append(waited, d)
		testenv.AdvanceAWSClock(d)
		return nil
	}
	p := provision.New(testenv.AsRole(e.cfg, testenv.AgentRole), opts)
	spec := e.spec()
	res, err := p.EnsureStage(ctx, spec, provision.StageResources{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DeleteStage(ctx, spec, res); err != nil {
		t.Fatal(err)
	}
	if _, err := p.EnsureStage(ctx, spec, provision.StageResources{}); err != nil {
		t.Fatalf("EnsureStage right after DeleteStage: %v", err)
	}
	// What is left of the minute since this provisioner deleted the
	// dead-letter queue, made first; by then the work queue's name is free
	// too.
	if len(waited) != 1 {
		t.Fatalf("waited %v, want once", waited)
	}
	for _, d := range waited {
		if d <= 0 || d > 61*time.Second {
			t.Errorf("waited %v, want what is left of SQS's 60 s", d)
		}
	}
}
