package provision_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// The buckets of this file existed before cloudpipe (issue 13 item 9).

// userQueueRule is a queue notification rule of the user's for events on
// bucket, with a prefix filter, its queue created by the operator.
func (e *env) userQueueRule(id, prefix string, events ...s3types.Event) s3types.QueueConfiguration {
	e.t.Helper()
	ctx := e.t.Context()
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(e.name + "-" + id)})
	if err != nil {
		e.t.Fatal(err)
	}
	qa, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return s3types.QueueConfiguration{
		Id: aws.String(id), QueueArn: aws.String(qa.Attributes["QueueArn"]), Events: events,
		Filter: &s3types.NotificationConfigurationFilter{Key: &s3types.S3KeyFilter{FilterRules: []s3types.FilterRule{
			{Name: s3types.FilterRuleNamePrefix, Value: aws.String(prefix)},
		}}},
	}
}

// putUserRules sets bucket's notification configuration, as its owner.
func (e *env) putUserRules(bucket string, rules ...s3types.QueueConfiguration) {
	e.t.Helper()
	_, err := e.s3.PutBucketNotificationConfiguration(context.WithoutCancel(e.t.Context()), &s3.PutBucketNotificationConfigurationInput{
		Bucket:                    &bucket,
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: rules},
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// wantOverlap fails t unless err is a *NotificationOverlapError naming
// rule id on bucket, with a message that names the rule and what to do.
func wantOverlap(t *testing.T, err error, bucket, id string) {
	t.Helper()
	var oe *provision.NotificationOverlapError
	if !errors.As(err, &oe) {
		t.Fatalf("EnsureStage: %v, want a *NotificationOverlapError", err)
	}
	if oe.Bucket != bucket || oe.Rule.ID != id || oe.Rule.Prefix != "uploads/" {
		t.Errorf("overlap = bucket %q, rule %+v; want bucket %q, rule %q with prefix uploads/", oe.Bucket, oe.Rule, bucket, id)
	}
	for _, s := range []string{bucket, `"` + id + `"`, "s3:ObjectCreated:Put", `prefix "uploads/"`, "remove that rule"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

// TestOverlappingNotificationRuleIsNamed: the user's input bucket has a
// rule for uploads under uploads/, which S3 refuses next to the stage's
// (every object created). EnsureStage names it and does not send the write
// S3 would refuse; the user's rules stay as they were.
func TestOverlappingNotificationRuleIsNamed(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	spec := e.spec()
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &spec.InputBucket}); err != nil {
		t.Fatal(err)
	}
	theirs := e.userQueueRule("ingest", "uploads/", "s3:ObjectCreated:Put")
	// A rule for another event type is no obstacle.
	other := e.userQueueRule("audit", "uploads/", "s3:ObjectRemoved:*")
	e.putUserRules(spec.InputBucket, theirs, other)

	_, err := e.p.EnsureStage(ctx, spec, provision.StageResources{})
	wantOverlap(t, err, spec.InputBucket, "ingest")
	if n := e.calls.Ops()["S3.PutBucketNotificationConfiguration"]; n != 0 {
		t.Errorf("%d PutBucketNotificationConfiguration calls, want none: S3 refuses that document", n)
	}
	n := e.notification(spec.InputBucket)
	if len(n.QueueConfigurations) != 2 || len(n.LambdaFunctionConfigurations) != 0 {
		t.Errorf("notification = %+v, want the user's two rules only", n)
	}
}

// TestNotificationOverlapRefusedByS3IsNamed: S3 refuses the write with
// its overlap InvalidArgument although cloudpipe's own check found no rule
// in the way (a fault, as the rules proxy refuses only what that check
// foresees). EnsureStage reports the overlap with S3's error, not as a
// raw InvalidArgument, and does not retry it as a permission that has not
// propagated (also InvalidArgument).
func TestNotificationOverlapRefusedByS3IsNamed(t *testing.T) {
	mod, seen := viaFaultProxy(t, func(r *http.Request) bool {
		return r.Method == http.MethodPut && r.URL.Query().Has("notification")
	}, 1, fault{
		status: http.StatusBadRequest,
		header: map[string]string{"Content-Type": "application/xml"},
		body: `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidArgument</Code>` +
			`<Message>Configurations overlap. Configurations on the same bucket cannot share a common event type.</Message></Error>`,
	})
	e := newEnv(t, mod)
	spec := e.spec()

	_, err := e.p.EnsureStage(t.Context(), spec, provision.StageResources{})
	var oe *provision.NotificationOverlapError
	if !errors.As(err, &oe) || oe.Bucket != spec.InputBucket {
		t.Fatalf("EnsureStage: %v, want a *NotificationOverlapError on %s", err, spec.InputBucket)
	}
	var api interface{ ErrorCode() string }
	if !errors.As(err, &api) || api.ErrorCode() != "InvalidArgument" {
		t.Errorf("EnsureStage: %v, want S3's InvalidArgument wrapped", err)
	}
	for _, s := range []string{"bucket " + spec.InputBucket, "a notification rule overlaps cloudpipe's", "input bucket of its own"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if n := seen.Load(); n != 1 {
		t.Errorf("%d PutBucketNotificationConfiguration requests, want 1 (an overlap is not retried)", n)
	}
}

// TestBucketOfAnotherAccountIsReportedAsSuch: the input bucket belongs to
// another account, whose GetBucketTagging answers this one 403. EnsureStage
// says so and writes nothing to it; DeleteStage keeps it and deletes the
// rest.
func TestBucketOfAnotherAccountIsReportedAsSuch(t *testing.T) {
	theirs := testenv.UniqueName(t) + "-theirs"
	foreign := testenv.KumoWith(t, awsrules.Options{ForeignBuckets: []string{theirs}})
	e := newEnv(t, func(cfg *aws.Config) { cfg.BaseEndpoint = foreign.BaseEndpoint })
	ctx := t.Context()
	spec := e.spec()
	spec.InputBucket, spec.RetainBuckets = theirs, false
	// In kumo the bucket exists (untagged), as the other account made it.
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &spec.InputBucket}); err != nil {
		t.Fatal(err)
	}

	res, err := e.p.EnsureStage(ctx, spec, provision.StageResources{})
	var fe *provision.ForeignBucketError
	if !errors.As(err, &fe) || fe.Bucket != spec.InputBucket {
		t.Fatalf("EnsureStage: %v, want a *ForeignBucketError for %s", err, spec.InputBucket)
	}
	if !strings.Contains(err.Error(), "bucket "+spec.InputBucket+" belongs to another AWS account") {
		t.Errorf("error %q does not say whose bucket it is", err)
	}
	if res.InputBucketCreated {
		t.Error("InputBucketCreated = true for another account's bucket")
	}
	if _, err := e.s3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: &spec.InputBucket}); err == nil {
		t.Error("the other account's bucket was tagged")
	}
	if _, err := e.s3.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: &spec.InputBucket}); err == nil {
		t.Error("the other account's bucket got a public access block")
	}
	if n := e.notification(spec.InputBucket); len(n.LambdaFunctionConfigurations)+len(n.QueueConfigurations) != 0 {
		t.Errorf("the other account's bucket got notifications: %+v", n)
	}

	del, err := e.p.DeleteStage(ctx, spec, res)
	if err != nil {
		t.Fatalf("DeleteStage: %v", err)
	}
	want := []provision.KeptBucket{{Name: spec.InputBucket, Reason: "of another AWS account, or not readable by this agent"}}
	if !reflect.DeepEqual(del.KeptBuckets, want) {
		t.Errorf("KeptBuckets = %+v, want %+v", del.KeptBuckets, want)
	}
	if _, err := e.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &spec.InputBucket}); err != nil {
		t.Errorf("the other account's bucket is gone: %v", err)
	}
}

// TestCreateBucketOf200OnAnExistingBucketIsNotOurs: in us-east-1 the user
// creates the input bucket between the agent finding it missing and its
// CreateBucket, which S3 answers 200 there. The bucket is not recorded as
// cloudpipe's, nor changed; DeleteStage keeps it.
func TestCreateBucketOf200OnAnExistingBucketIsNotOurs(t *testing.T) {
	if testenv.Region != "us-east-1" {
		t.Skip("S3 answers 200 to CreateBucket of an owned bucket in us-east-1 only")
	}
	var e *env
	var once sync.Once
	e = newEnv(t, beforeOperation("CreateBucket", func(ctx context.Context, in any) {
		if b := aws.ToString(in.(*s3.CreateBucketInput).Bucket); b == e.spec().InputBucket {
			once.Do(func() {
				if _, err := e.s3.CreateBucket(context.WithoutCancel(ctx), &s3.CreateBucketInput{Bucket: &b}); err != nil {
					t.Errorf("the user's CreateBucket: %v", err)
				}
			})
		}
	}))
	ctx := t.Context()
	spec := e.spec()
	spec.RetainBuckets = false

	res := e.ensure(spec, provision.StageResources{})
	if res.InputBucketCreated || !res.OutputBucketCreated {
		t.Errorf("InputBucketCreated, OutputBucketCreated = %v, %v; want false (the user's), true", res.InputBucketCreated, res.OutputBucketCreated)
	}
	if _, err := e.s3.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: &spec.InputBucket}); err == nil {
		t.Error("the user's bucket got a public access block")
	}
	if _, err := e.s3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: &spec.InputBucket}); err == nil {
		t.Error("the user's bucket was tagged")
	}

	del, err := e.p.DeleteStage(ctx, spec, res)
	if err != nil {
		t.Fatalf("DeleteStage: %v", err)
	}
	want := []provision.KeptBucket{{Name: spec.InputBucket, Reason: "not created by cloudpipe"}}
	if !reflect.DeepEqual(del.KeptBuckets, want) {
		t.Errorf("KeptBuckets = %+v, want %+v", del.KeptBuckets, want)
	}
}

// beforeOperation adds SDK middleware that calls f with the input of each
// call of the operation named op before it is sent, as another client
// acting in between would.
func beforeOperation(op string, f func(ctx context.Context, in any)) func(*aws.Config) {
	return func(cfg *aws.Config) {
		cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test.BeforeOperation",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if middleware.GetOperationName(ctx) == op {
						f(ctx, in.Parameters)
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
		})
	}
}
