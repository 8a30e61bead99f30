package provision_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/provision"
)

func TestEnsureStageTwiceWritesNothing(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	first := e.ensure(spec, provision.StageResources{})
	if e.calls.Writes() == 0 {
		t.Fatal("first EnsureStage made no write call")
	}

	e.calls.Reset()
	second := e.ensure(spec, first)
	if w := e.calls.WriteOps(); len(w) != 0 {
		t.Errorf("second EnsureStage wrote: %v", w)
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("second EnsureStage returned\n%+v\nwant\n%+v", second, first)
	}
}

func TestEnsureStageUpdatesOnlyWhatChanged(t *testing.T) {
	newRevision := map[string]int{
		"ECS.RegisterTaskDefinition":         1,
		"Lambda.UpdateFunctionConfiguration": 1, // the function starts the new revision
		"ECS.DeregisterTaskDefinition":       1, // the old one is retired
	}
	tests := []struct {
		name   string
		change func(*provision.StageSpec)
		writes map[string]int
	}{
		{"variable", func(s *provision.StageSpec) { s.Variables["TEST_ENV"] = "other" }, newRevision},
		{"memory", func(s *provision.StageSpec) { s.Algorithm.MemoryMiB = 4096 }, newRevision},
		{"secret", func(s *provision.StageSpec) { s.Secrets["API_TOKEN"] = testSecretARN + ":token::" }, newRevision},
		{"max tasks", func(s *provision.StageSpec) { s.MaxTasks = 3 }, map[string]int{"Lambda.UpdateFunctionConfiguration": 1}},
		{"run time", func(s *provision.StageSpec) { s.Algorithm.ExpectedRunTime = 2 * time.Hour }, map[string]int{"SQS.SetQueueAttributes": 1}},
		{"suspend", func(s *provision.StageSpec) { s.Suspend = true }, map[string]int{"S3.PutBucketNotificationConfiguration": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			spec := e.spec()
			first := e.ensure(spec, provision.StageResources{})

			spec.Variables = maps.Clone(spec.Variables)
			spec.Secrets = maps.Clone(spec.Secrets)
			tt.change(&spec)
			e.calls.Reset()
			second := e.ensure(spec, first)
			if got := e.calls.WriteOps(); !maps.Equal(got, tt.writes) {
				t.Errorf("writes after changing the %s: %v, want %v", tt.name, got, tt.writes)
			}
			if len(second.TaskDefinitionARNs) != 1 || second.TaskDefinitionARNs[0] != second.TaskDefinitionARN {
				t.Errorf("task definitions = %v, current %s: want only the current one left", second.TaskDefinitionARNs, second.TaskDefinitionARN)
			}

			e.calls.Reset()
			e.ensure(spec, second)
			if w := e.calls.WriteOps(); len(w) != 0 {
				t.Errorf("third EnsureStage wrote: %v", w)
			}
		})
	}
}

func TestEnsureStageForeignResource(t *testing.T) {
	tests := []struct {
		kind   string
		create func(e *env, spec provision.StageSpec) string // makes the foreign resource, returns its name
		check  func(e *env, name string)                     // fails if it was changed or deleted
	}{
		{
			kind: "sqs queue",
			create: func(e *env, spec provision.StageSpec) string {
				name := provision.ResourceName(spec.Workflow, spec.Stage)
				_, err := e.sqs.CreateQueue(e.t.Context(), &sqs.CreateQueueInput{
					QueueName: &name, Attributes: map[string]string{"VisibilityTimeout": "42"}, Tags: map[string]string{"owner": "someone"},
				})
				if err != nil {
					e.t.Fatal(err)
				}
				return name
			},
			check: func(e *env, name string) {
				url, err := e.sqs.GetQueueUrl(e.t.Context(), &sqs.GetQueueUrlInput{QueueName: &name})
				if err != nil {
					e.t.Fatalf("foreign queue gone: %v", err)
				}
				attrs, err := e.sqs.GetQueueAttributes(e.t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: url.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"All"}})
				if err != nil {
					e.t.Fatal(err)
				}
				if v := attrs.Attributes["VisibilityTimeout"]; v != "42" {
					e.t.Errorf("foreign queue VisibilityTimeout = %s, want 42 (untouched)", v)
				}
				if _, ok := attrs.Attributes["RedrivePolicy"]; ok {
					e.t.Error("foreign queue got a RedrivePolicy")
				}
				tags, err := e.sqs.ListQueueTags(e.t.Context(), &sqs.ListQueueTagsInput{QueueUrl: url.QueueUrl})
				if err != nil {
					e.t.Fatal(err)
				}
				if want := map[string]string{"owner": "someone"}; !maps.Equal(tags.Tags, want) {
					e.t.Errorf("foreign queue tags = %v, want %v", tags.Tags, want)
				}
			},
		},
		{
			kind: "iam role",
			create: func(e *env, spec provision.StageSpec) string {
				name := provision.ResourceName(spec.Workflow, spec.Stage) + "-task"
				_, err := e.iam.CreateRole(e.t.Context(), &iam.CreateRoleInput{RoleName: &name, AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[]}`)})
				if err != nil {
					e.t.Fatal(err)
				}
				return name
			},
			check: func(e *env, name string) {
				if _, err := e.iam.GetRole(e.t.Context(), &iam.GetRoleInput{RoleName: &name}); err != nil {
					e.t.Fatalf("foreign role gone: %v", err)
				}
				pols, err := e.iam.ListRolePolicies(e.t.Context(), &iam.ListRolePoliciesInput{RoleName: &name})
				if err != nil {
					e.t.Fatal(err)
				}
				if len(pols.PolicyNames) != 0 {
					e.t.Errorf("foreign role got policies %v", pols.PolicyNames)
				}
			},
		},
		{
			kind: "lambda function",
			create: func(e *env, spec provision.StageSpec) string {
				name := provision.ResourceName(spec.Workflow, spec.Stage)
				_, err := e.lambda.CreateFunction(e.t.Context(), &lambda.CreateFunctionInput{
					FunctionName: &name, Role: aws.String("arn:aws:iam::123456789012:role/someone"),
					Runtime: "provided.al2023", Handler: aws.String("bootstrap"),
					Code: &lambdatypes.FunctionCode{ZipFile: tinyZip(e.t)},
				})
				if err != nil {
					e.t.Fatal(err)
				}
				return name
			},
			check: func(e *env, name string) {
				fn, err := e.lambda.GetFunction(e.t.Context(), &lambda.GetFunctionInput{FunctionName: &name})
				if err != nil {
					e.t.Fatalf("foreign function gone: %v", err)
				}
				if r := aws.ToString(fn.Configuration.Role); r != "arn:aws:iam::123456789012:role/someone" {
					e.t.Errorf("foreign function role changed to %s", r)
				}
			},
		},
		{
			kind: "s3 bucket",
			create: func(e *env, spec provision.StageSpec) string {
				if _, err := e.s3.CreateBucket(e.t.Context(), &s3.CreateBucketInput{Bucket: &spec.OutputBucket}); err != nil {
					e.t.Fatal(err)
				}
				return spec.OutputBucket
			},
			check: func(e *env, name string) {
				if _, err := e.s3.HeadBucket(e.t.Context(), &s3.HeadBucketInput{Bucket: &name}); err != nil {
					e.t.Fatalf("foreign bucket gone: %v", err)
				}
				if _, err := e.s3.GetBucketTagging(e.t.Context(), &s3.GetBucketTaggingInput{Bucket: &name}); err == nil {
					e.t.Error("foreign bucket got tags")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			e := newEnv(t)
			spec := e.spec()
			spec.RetainBuckets = false
			spec.OutputOwned = true // an intermediate bucket name: only cloudpipe may own it
			name := tt.create(e, spec)

			res, err := e.p.EnsureStage(t.Context(), spec, provision.StageResources{})
			var notOwned *provision.NotOwnedError
			if !errors.Is(err, provision.ErrNotOwned) || !errors.As(err, &notOwned) {
				t.Fatalf("EnsureStage error = %v, want ErrNotOwned", err)
			}
			if notOwned.Kind != tt.kind || notOwned.Name != name {
				t.Errorf("NotOwnedError names %s %s, want %s %s", notOwned.Kind, notOwned.Name, tt.kind, name)
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name %s", err, name)
			}
			tt.check(e, name)

			del, err := e.p.DeleteStage(t.Context(), spec, res)
			if err != nil {
				t.Fatalf("DeleteStage: %v", err)
			}
			tt.check(e, name)
			if tt.kind != "s3 bucket" && !slices.Contains(del.NotOwned, tt.kind+" "+name) {
				t.Errorf("DeleteStage NotOwned = %v, want it to list %s %s", del.NotOwned, tt.kind, name)
			}
			if slices.Contains(del.Deleted, tt.kind+" "+name) {
				t.Errorf("DeleteStage reports deleting the foreign %s %s", tt.kind, name)
			}
		})
	}
}

func TestUserBucketNotificationsMerged(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	spec := e.spec()
	spec.RetainBuckets = false // even so, a bucket cloudpipe did not create stays

	// The user's bucket already notifies a queue of theirs on deletions.
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &spec.InputBucket}); err != nil {
		t.Fatal(err)
	}
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(e.name + "-audit")})
	if err != nil {
		t.Fatal(err)
	}
	qa, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		t.Fatal(err)
	}
	theirs := s3types.QueueConfiguration{
		Id: aws.String("audit"), QueueArn: aws.String(qa.Attributes["QueueArn"]),
		Events: []s3types.Event{"s3:ObjectRemoved:*"},
	}
	_, err = e.s3.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket:                    &spec.InputBucket,
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{theirs}},
	})
	if err != nil {
		t.Fatal(err)
	}

	res := e.ensure(spec, provision.StageResources{})
	if res.InputBucketCreated || !res.OutputBucketCreated {
		t.Errorf("InputBucketCreated, OutputBucketCreated = %v, %v; want false, true", res.InputBucketCreated, res.OutputBucketCreated)
	}
	if _, err := e.s3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: &spec.InputBucket}); err == nil {
		t.Error("the user's bucket was tagged")
	}
	n := e.notification(spec.InputBucket)
	if len(n.QueueConfigurations) != 1 || aws.ToString(n.QueueConfigurations[0].Id) != "audit" {
		t.Errorf("queue notifications after EnsureStage = %+v, want the user's one", n.QueueConfigurations)
	}
	if len(n.LambdaFunctionConfigurations) != 1 ||
		aws.ToString(n.LambdaFunctionConfigurations[0].Id) != res.NotificationID ||
		aws.ToString(n.LambdaFunctionConfigurations[0].LambdaFunctionArn) != res.FunctionARN ||
		!slices.Equal(n.LambdaFunctionConfigurations[0].Events, []s3types.Event{"s3:ObjectCreated:*"}) {
		t.Errorf("lambda notifications after EnsureStage = %+v, want ours (%s -> %s)", n.LambdaFunctionConfigurations, res.NotificationID, res.FunctionARN)
	}

	del, err := e.p.DeleteStage(ctx, spec, res)
	if err != nil {
		t.Fatalf("DeleteStage: %v", err)
	}
	n = e.notification(spec.InputBucket)
	if len(n.LambdaFunctionConfigurations) != 0 || len(n.QueueConfigurations) != 1 {
		t.Errorf("notifications after DeleteStage = %+v, want only the user's queue", n)
	}
	if _, err := e.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &spec.InputBucket}); err != nil {
		t.Errorf("the user's bucket is gone: %v", err)
	}
	want := []provision.KeptBucket{{Name: spec.InputBucket, Reason: "not created by cloudpipe"}}
	if !reflect.DeepEqual(del.KeptBuckets, want) {
		t.Errorf("KeptBuckets = %+v, want %+v (the empty output bucket cloudpipe created is deleted)", del.KeptBuckets, want)
	}
}

func (e *env) notification(bucket string) *s3.GetBucketNotificationConfigurationOutput {
	e.t.Helper()
	out, err := e.s3.GetBucketNotificationConfiguration(e.t.Context(), &s3.GetBucketNotificationConfigurationInput{Bucket: &bucket})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// allStageResources is what MissingResources reports once a stage is gone
// whose record holds its dead-letter queue (without it, the function's
// asynchronous invocation configuration is not checked).
func allStageResources(spec provision.StageSpec) []string {
	n := provision.ResourceName(spec.Workflow, spec.Stage)
	return []string{
		"s3 bucket " + spec.InputBucket, "s3 bucket " + spec.OutputBucket,
		"sqs queue " + n, "sqs queue " + n + "-dlq",
		"iam role " + n + "-lambda", "iam role " + n + "-exec", "iam role " + n + "-task",
		"lambda function " + n, "lambda event invoke config " + n,
		"log group /cloudpipe/" + spec.Workflow, "log group /aws/lambda/" + n,
		"s3 notification cloudpipe-" + n + " on " + spec.InputBucket,
	}
}

func TestDeleteStage(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	spec := e.spec()
	spec.RetainBuckets = false
	res := e.ensure(spec, provision.StageResources{})
	if missing, err := e.p.MissingResources(ctx, spec, res); err != nil || len(missing) != 0 {
		t.Fatalf("MissingResources after EnsureStage = %v, %v; want none", missing, err)
	}
	// A result in the output bucket: it must survive.
	_, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &spec.OutputBucket, Key: aws.String("Result-x-a.txt"), Body: strings.NewReader("done")})
	if err != nil {
		t.Fatal(err)
	}

	e.calls.Reset()
	del, err := e.p.DeleteStage(ctx, spec, res)
	if err != nil {
		t.Fatalf("DeleteStage: %v", err)
	}
	wantKept := []provision.KeptBucket{{Name: spec.OutputBucket, Reason: "not empty"}}
	if !reflect.DeepEqual(del.KeptBuckets, wantKept) {
		t.Errorf("KeptBuckets = %+v, want %+v", del.KeptBuckets, wantKept)
	}
	if len(del.NotOwned) != 0 {
		t.Errorf("NotOwned = %v, want none", del.NotOwned)
	}
	missing, err := e.p.MissingResources(ctx, spec, res)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.DeleteFunc(allStageResources(spec), func(s string) bool { return s == "s3 bucket "+spec.OutputBucket })
	if !slices.Equal(missing, want) {
		t.Errorf("MissingResources after DeleteStage = %v\nwant %v", missing, want)
	}
	for _, w := range want {
		// The asynchronous invocation configuration went with the
		// function, unasked.
		if !slices.Contains(del.Deleted, w) && !strings.HasPrefix(w, "lambda event invoke config ") {
			t.Errorf("Deleted = %v, want it to list %s", del.Deleted, w)
		}
	}
	if !slices.Contains(del.Deleted, "ecs task definition "+res.TaskDefinitionARN) {
		t.Errorf("Deleted = %v, want the task definition %s", del.Deleted, res.TaskDefinitionARN)
	}
	// Deletion order: nothing that refers to the function outlives it.
	ops := e.calls.Ops()
	if ops["S3.PutBucketNotificationConfiguration"] != 1 || ops["IAM.DeleteRolePolicy"] != 3 || ops["IAM.DeleteRole"] != 3 {
		t.Errorf("delete calls = %v", ops)
	}

	again, err := e.p.DeleteStage(ctx, spec, res)
	if err != nil {
		t.Fatalf("second DeleteStage: %v", err)
	}
	for _, d := range again.Deleted {
		// Deregistering an inactive revision succeeds again; nothing else
		// is left to delete.
		if !strings.HasPrefix(d, "ecs task definition ") {
			t.Errorf("second DeleteStage deleted %s", d)
		}
	}
	if !reflect.DeepEqual(again.KeptBuckets, wantKept) {
		t.Errorf("second KeptBuckets = %+v, want %+v", again.KeptBuckets, wantKept)
	}
}

func TestDeleteStageRetainsEmptyBuckets(t *testing.T) {
	e := newEnv(t)
	spec := e.spec() // RetainBuckets: true, the workflow default
	res := e.ensure(spec, provision.StageResources{})
	del, err := e.p.DeleteStage(t.Context(), spec, res)
	if err != nil {
		t.Fatal(err)
	}
	want := []provision.KeptBucket{
		{Name: spec.InputBucket, Reason: "retain_buckets is set"},
		{Name: spec.OutputBucket, Reason: "retain_buckets is set"},
	}
	if !reflect.DeepEqual(del.KeptBuckets, want) {
		t.Errorf("KeptBuckets = %+v, want %+v", del.KeptBuckets, want)
	}
	if n := e.notification(spec.InputBucket); len(n.LambdaFunctionConfigurations) != 0 {
		t.Errorf("kept bucket still notifies %+v", n.LambdaFunctionConfigurations)
	}
}

func TestDeleteStageAfterPartialEnsure(t *testing.T) {
	for _, n := range []int64{5, 10, 16, 24, 32} {
		t.Run(fmt.Sprintf("after %d calls", n), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			e := newEnv(t, cancelAfter(n, cancel))
			spec := e.spec()
			spec.RetainBuckets = false

			res, err := e.p.EnsureStage(ctx, spec, provision.StageResources{})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("EnsureStage cut after %d calls: err = %v, want context.Canceled", n, err)
			}
			if e.calls.Writes() == 0 {
				t.Fatalf("nothing was created in %d calls: the test proves nothing", n)
			}
			// The inventory may hold res, or nothing if the crash came first.
			for _, rec := range []provision.StageResources{res, {}} {
				if _, err := e.p.DeleteStage(t.Context(), spec, rec); err != nil {
					t.Fatalf("DeleteStage after %d calls: %v", n, err)
				}
			}
			missing, err := e.p.MissingResources(t.Context(), spec, res)
			if err != nil {
				t.Fatal(err)
			}
			want := allStageResources(spec)
			if res.DLQARN == "" {
				want = slices.DeleteFunc(want, func(s string) bool { return strings.HasPrefix(s, "lambda event invoke config ") })
			}
			if !slices.Equal(missing, want) {
				t.Errorf("left after DeleteStage: MissingResources = %v\nwant every resource: %v", missing, want)
			}
		})
	}
}

func TestSequenceStages(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	first := e.spec()
	first.RetainBuckets = false
	first.OutputBucket = provision.IntermediateBucketName(first.Workflow, 0, kumoAccount, first.Region)
	first.OutputOwned = true
	second := e.spec()
	second.RetainBuckets = false
	second.Stage = 1
	second.InputBucket, second.InputOwned = first.OutputBucket, true

	r0 := e.ensure(first, provision.StageResources{})
	r1 := e.ensure(second, provision.StageResources{})
	if !r0.OutputBucketCreated || !r1.InputBucketCreated {
		t.Errorf("intermediate bucket created = %v/%v, want true for both stages", r0.OutputBucketCreated, r1.InputBucketCreated)
	}
	n := e.notification(first.OutputBucket)
	if len(n.LambdaFunctionConfigurations) != 1 || aws.ToString(n.LambdaFunctionConfigurations[0].LambdaFunctionArn) != r1.FunctionARN {
		t.Errorf("intermediate bucket notifications = %+v, want stage 1's function %s", n.LambdaFunctionConfigurations, r1.FunctionARN)
	}
	if r0.LogGroup != r1.LogGroup {
		t.Errorf("stages log to %s and %s, want one workflow group", r0.LogGroup, r1.LogGroup)
	}

	// Stage 1 goes first. It takes the (empty) intermediate bucket with it,
	// but the workflow's log group stays for stage 0.
	if _, err := e.p.DeleteStage(ctx, second, r1); err != nil {
		t.Fatal(err)
	}
	missing, err := e.p.MissingResources(ctx, first, r0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"s3 bucket " + first.OutputBucket}; !slices.Equal(missing, want) {
		t.Errorf("stage 0 lost %v when stage 1 was deleted, want only %v", missing, want)
	}
	del, err := e.p.DeleteStage(ctx, first, r0)
	if err != nil {
		t.Fatal(err)
	}
	if len(del.KeptBuckets) != 0 {
		t.Errorf("KeptBuckets = %+v, want every (empty) bucket deleted", del.KeptBuckets)
	}
}

// The workflow's shared log group belongs to stage 0: every stage ensures
// it, but only stage 0 reports it missing and deletes it.
func TestWorkflowLogGroupBelongsToStageZero(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	first := e.spec()
	first.OutputBucket = provision.IntermediateBucketName(first.Workflow, 0, kumoAccount, first.Region)
	first.OutputOwned = true
	second := e.spec()
	second.Stage = 1
	second.InputBucket, second.InputOwned = first.OutputBucket, true
	r0 := e.ensure(first, provision.StageResources{})
	r1 := e.ensure(second, provision.StageResources{})
	group := "/cloudpipe/" + first.Workflow

	if _, err := e.logs.DeleteLogGroup(ctx, &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: &group}); err != nil {
		t.Fatal(err)
	}
	if missing, err := e.p.MissingResources(ctx, first, r0); err != nil || !slices.Equal(missing, []string{"log group " + group}) {
		t.Errorf("stage 0 MissingResources = %v, %v; want only the workflow log group", missing, err)
	}
	if missing, err := e.p.MissingResources(ctx, second, r1); err != nil || len(missing) != 0 {
		t.Errorf("stage 1 MissingResources = %v, %v; want none (the group is stage 0's)", missing, err)
	}

	// Stage 1's containers log there, so ensuring stage 1 brings it back,
	// as stage 0's.
	r1 = e.ensure(second, r1)
	if tags := e.logGroupTags(group); tags[provision.TagStage] != "0" {
		t.Errorf("recreated %s has tags %v, want stage 0's", group, tags)
	}
	if missing, err := e.p.MissingResources(ctx, first, r0); err != nil || len(missing) != 0 {
		t.Errorf("stage 0 MissingResources after stage 1 ensured = %v, %v; want none", missing, err)
	}

	del, err := e.p.DeleteStage(ctx, second, r1)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(del.Deleted, "log group "+group) {
		t.Errorf("deleting stage 1 deleted %s", group)
	}
	if tags := e.logGroupTags(group); tags == nil {
		t.Errorf("%s is gone with stage 1", group)
	}
	if del, err = e.p.DeleteStage(ctx, first, r0); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(del.Deleted, "log group "+group) {
		t.Errorf("deleting stage 0 deleted %v, want %s among them", del.Deleted, group)
	}
}

// logGroupTags returns the tags of log group name, or nil if it does not exist.
func (e *env) logGroupTags(name string) map[string]string {
	e.t.Helper()
	out, err := e.logs.DescribeLogGroups(e.t.Context(), &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: &name})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, g := range out.LogGroups {
		if aws.ToString(g.LogGroupName) != name {
			continue
		}
		arn := strings.TrimSuffix(aws.ToString(g.Arn), ":*")
		tags, err := e.logs.ListTagsForResource(e.t.Context(), &cloudwatchlogs.ListTagsForResourceInput{ResourceArn: &arn})
		if err != nil {
			e.t.Fatal(err)
		}
		return tags.Tags
	}
	return nil
}
