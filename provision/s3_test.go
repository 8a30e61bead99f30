package provision_test

import (
	"maps"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cloudpipe/cloudpipe/provision"
)

func TestBucketsCreatedTaggedAndProtected(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	if !res.InputBucketCreated || !res.OutputBucketCreated {
		t.Errorf("InputBucketCreated, OutputBucketCreated = %v, %v; want true, true", res.InputBucketCreated, res.OutputBucketCreated)
	}
	if n := e.calls.Ops()["S3.PutBucketTagging"]; n != 0 {
		t.Errorf("%d PutBucketTagging calls: tags should be set by CreateBucket", n)
	}
	ctx := t.Context()
	for _, b := range []string{spec.InputBucket, spec.OutputBucket} {
		tags, err := e.s3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: &b})
		if err != nil {
			t.Fatalf("bucket %s tags: %v", b, err)
		}
		got := map[string]string{}
		for _, tag := range tags.TagSet {
			got[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
		}
		if want := map[string]string{provision.TagManaged: "true", provision.TagWorkflow: spec.Workflow, provision.TagStage: "0"}; !maps.Equal(got, want) {
			t.Errorf("bucket %s tags = %v, want %v", b, got, want)
		}
		pab, err := e.s3.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: &b})
		if err != nil {
			t.Fatalf("bucket %s public access block: %v", b, err)
		}
		if c := pab.PublicAccessBlockConfiguration; !aws.ToBool(c.BlockPublicAcls) || !aws.ToBool(c.IgnorePublicAcls) ||
			!aws.ToBool(c.BlockPublicPolicy) || !aws.ToBool(c.RestrictPublicBuckets) {
			t.Errorf("bucket %s public access block = %+v, want all blocked", b, c)
		}
		enc, err := e.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: &b})
		if err != nil {
			t.Fatalf("bucket %s encryption: %v", b, err)
		}
		if r := enc.ServerSideEncryptionConfiguration.Rules; len(r) != 1 || r[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm != s3types.ServerSideEncryptionAes256 {
			t.Errorf("bucket %s encryption = %+v, want SSE-S3", b, r)
		}
	}
}

// TestNotificationRetriedWhileLambdaPermissionPropagates makes S3 answer
// "Unable to validate the following destination configurations" twice, as
// it does right after AddPermission, and expects EnsureStage to wait it out.
func TestNotificationRetriedWhileLambdaPermissionPropagates(t *testing.T) {
	mod, seen := viaFaultProxy(t, func(r *http.Request) bool {
		return r.Method == http.MethodPut && r.URL.Query().Has("notification")
	}, 2, fault{
		status: http.StatusBadRequest,
		header: map[string]string{"Content-Type": "application/xml"},
		body:   `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidArgument</Code><Message>Unable to validate the following destination configurations</Message></Error>`,
	})
	e := newEnv(t, mod)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	if got := seen.Load(); got != 3 {
		t.Errorf("%d PutBucketNotificationConfiguration requests, want 2 refused + 1 accepted", got)
	}
	if n := e.notification(spec.InputBucket); len(n.LambdaFunctionConfigurations) != 1 ||
		aws.ToString(n.LambdaFunctionConfigurations[0].LambdaFunctionArn) != res.FunctionARN {
		t.Errorf("notification = %+v, want ours", n.LambdaFunctionConfigurations)
	}
}
