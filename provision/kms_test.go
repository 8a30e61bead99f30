package provision_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cloudpipe/cloudpipe/provision"
)

// TestEnsureStageFollowsTheInputBucketsKey: the task role is granted the
// key the input bucket's default encryption names when the stage is
// ensured; a bucket switched to another key rewrites the role's policy and
// nothing else, an unchanged one writes nothing, and a bucket back on the
// AWS managed key takes the grant away.
func TestEnsureStageFollowsTheInputBucketsKey(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	spec := e.spec()
	admin := kms.NewFromConfig(e.cfg)
	newKey := func() string {
		out, err := admin.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(e.name)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.KeyMetadata.Arn)
	}
	first, second := newKey(), newKey()
	if _, err := admin.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/" + e.name), TargetKeyId: &first}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &spec.InputBucket}); err != nil {
		t.Fatal(err)
	}
	encrypt := func(key *string) {
		t.Helper()
		if _, err := e.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: &spec.InputBucket,
			ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
				ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: key}}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	taskPolicy := func() string {
		t.Helper()
		out, err := e.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(provision.ResourceName(e.name, 0) + "-task"), PolicyName: aws.String("cloudpipe")})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.PolicyDocument)
	}

	encrypt(aws.String("alias/" + e.name))
	res := e.ensure(spec, provision.StageResources{})
	if p := taskPolicy(); !strings.Contains(p, `"Resource":"`+first+`"`) || !strings.Contains(p, "kms:ViaService") {
		t.Errorf("the task role's policy does not grant the bucket's key %s through S3:\n%s", first, p)
	}
	e.calls.Reset()
	res = e.ensure(spec, res)
	if w := e.calls.WriteOps(); len(w) != 0 {
		t.Errorf("ensuring again with the same key wrote %v", w)
	}

	for _, step := range []struct {
		name        string
		key         *string
		granted     string // the key the policy must name, "" for none
		notGranted  string
		wantWritten map[string]int
	}{
		{"another key, by id", aws.String(second[strings.LastIndex(second, "/")+1:]), second, first, map[string]int{"IAM.PutRolePolicy": 1}},
		{"the AWS managed key", nil, "", second, map[string]int{"IAM.PutRolePolicy": 1}},
	} {
		encrypt(step.key)
		e.calls.Reset()
		res = e.ensure(spec, res)
		if w := e.calls.WriteOps(); !maps.Equal(w, step.wantWritten) {
			t.Errorf("%s: wrote %v, want %v", step.name, w, step.wantWritten)
		}
		p := taskPolicy()
		if step.granted != "" && !strings.Contains(p, step.granted) || strings.Contains(p, step.notGranted) || step.granted == "" && strings.Contains(p, "kms:") {
			t.Errorf("%s: the task role's policy\n%s\nwant it to grant %q and not %s", step.name, p, step.granted, step.notGranted)
		}
	}
}
