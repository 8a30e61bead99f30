package provision_test

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/provision"
)

// TestChangedSettings changes, as a person with the console would, each
// setting a drift check compares: ChangedSettings names it (and nothing
// else), EnsureStage puts it back, and then nothing is listed. A stage left
// as EnsureStage made it lists nothing.
func TestChangedSettings(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	name := provision.ResourceName(spec.Workflow, spec.Stage)

	if d, err := e.p.ChangedSettings(ctx, spec, res); err != nil || len(d) != 0 {
		t.Fatalf("ChangedSettings after EnsureStage = %v, %v; want none", d, err)
	}
	lambdaRole := name + "-lambda"
	for _, tt := range []struct {
		name   string
		tamper func() error
		want   []string // Drift.String of each
	}{
		{"queue visibility", func() error {
			_, err := e.sqs.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &res.QueueURL,
				Attributes: map[string]string{"VisibilityTimeout": "30"}})
			return err
		}, []string{"sqs queue " + name + " VisibilityTimeout 1200 → 30"}},
		{"queue retention and redrive", func() error {
			_, err := e.sqs.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &res.QueueURL,
				Attributes: map[string]string{"MessageRetentionPeriod": "60",
					"RedrivePolicy": `{"deadLetterTargetArn":"` + res.DLQARN + `","maxReceiveCount":10}`}})
			return err
		}, []string{"sqs queue " + name + " MessageRetentionPeriod 345600 → 60",
			"sqs queue " + name + ` RedrivePolicy {"deadLetterTargetArn":"` + res.DLQARN + `","maxReceiveCount":3} → {"deadLetterTargetArn":"` + res.DLQARN + `","maxReceiveCount":10}`}},
		{"function timeout and memory", func() error {
			_, err := e.lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: &name,
				Timeout: aws.Int32(3), MemorySize: aws.Int32(512)})
			return err
		}, []string{"lambda function " + name + " Timeout 60 → 3", "lambda function " + name + " MemorySize 128 → 512"}},
		{"function environment", func() error {
			cur, err := e.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: &name})
			if err != nil {
				return err
			}
			env := cur.Environment.Variables
			env["DEBUG"] = "1"
			_, err = e.lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: &name,
				Environment: &lambdatypes.Environment{Variables: env}})
			return err
		}, []string{"lambda function " + name + " Environment (DEBUG)"}},
		{"role inline policy", func() error {
			_, err := e.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: &lambdaRole, PolicyName: aws.String("cloudpipe"),
				PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`)})
			return err
		}, []string{"iam role " + lambdaRole + " inline policy cloudpipe"}},
		{"notification filter", func() error {
			_, err := e.s3.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: &spec.InputBucket,
				NotificationConfiguration: &s3types.NotificationConfiguration{LambdaFunctionConfigurations: []s3types.LambdaFunctionConfiguration{{
					Id: aws.String(res.NotificationID), LambdaFunctionArn: &res.FunctionARN, Events: []s3types.Event{"s3:ObjectCreated:Put"},
				}}}})
			return err
		}, []string{"s3 notification " + res.NotificationID + " on " + spec.InputBucket + " rule s3:ObjectCreated:* to " + res.FunctionARN +
			" → s3:ObjectCreated:Put to " + res.FunctionARN}},
	} {
		if err := tt.tamper(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		d, err := e.p.ChangedSettings(ctx, spec, res)
		var got []string
		for _, x := range d {
			got = append(got, x.String())
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: ChangedSettings = %q, %v\nwant %q", tt.name, got, err, tt.want)
		}
		if missing, err := e.p.MissingResources(ctx, spec, res); err != nil || len(missing) != 0 {
			t.Errorf("%s: MissingResources = %v, %v; want none (a changed setting is not a missing resource)", tt.name, missing, err)
		}
		res = e.ensure(spec, res)
		if d, err := e.p.ChangedSettings(ctx, spec, res); err != nil || len(d) != 0 {
			t.Errorf("%s: after the repair ChangedSettings = %v, %v; want none", tt.name, d, err)
		}
	}
}
