package awsrules_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/iamsim"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

const kumoAccount = "000000000000"

var (
	evalOnce sync.Once
	evalErr  error
	eval     *iamsim.Evaluator
)

// evaluator is the test binary's IAM evaluator, started once: it ends with
// the process.
func evaluator(t *testing.T) *iamsim.Evaluator {
	t.Helper()
	evalOnce.Do(func() {
		var cache string
		if cache, evalErr = testenv.CacheDir(); evalErr == nil {
			eval, evalErr = iamsim.Start(t.Context(), cache)
		}
	})
	if evalErr != nil {
		t.Fatalf("the IAM evaluator is required (Node.js, and the npm registry once): %v", evalErr)
	}
	return eval
}

func doc(statements ...string) json.RawMessage {
	return json.RawMessage(`{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`)
}

// iamProxy starts a proxy with IAM on, the role "tester" holding policy,
// and returns it with the operator's config and the tester's.
func iamProxy(t *testing.T, policy json.RawMessage) (*awsrules.Proxy, aws.Config, aws.Config) {
	t.Helper()
	p, operator := newProxy(t, awsrules.Options{IAM: &awsrules.IAM{
		Evaluator: evaluator(t), Account: kumoAccount,
		Fixed: map[string][]json.RawMessage{"tester": {policy}},
	}})
	tester := operator.Copy()
	tester.Credentials = awsrules.RoleCredentials("tester")
	return p, operator, tester
}

func TestRoleAccessKeyIDNamesTheRole(t *testing.T) {
	for _, role := range []string{"cloudpipe-agent", "cp-wf-0-task", "a+b=c,d.e@f_g"} {
		key := awsrules.RoleAccessKeyID(role)
		if strings.ContainsAny(key, "/,= ") {
			t.Errorf("%s: key %q would break SigV4's Credential=", role, key)
		}
		if awsrules.RoleAccessKeyID(role+"x") == key {
			t.Errorf("%s: two roles share key %q", role, key)
		}
	}
}

// TestIAMRefusesWhatThePolicyDoesNotAllow: each service answers a denial
// in its own error, and only the operator (unsigned by a role) passes
// unchecked.
func TestIAMRefusesWhatThePolicyDoesNotAllow(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	queueARN := "arn:aws:sqs:us-east-1:" + kumoAccount + ":" + name
	p, operator, tester := iamProxy(t, doc(
		`{"Sid":"Queue","Effect":"Allow","Action":["sqs:CreateQueue","sqs:GetQueueUrl"],"Resource":"`+queueARN+`"}`,
		`{"Sid":"Objects","Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::`+name+`/in/*"}`,
		`{"Sid":"Never","Effect":"Allow","Action":"sqs:PurgeQueue","Resource":"*"}`))

	q := sqs.NewFromConfig(tester)
	if _, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)}); err != nil {
		t.Fatalf("create the queue the policy names: %v", err)
	}
	_, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-other")})
	wantRefused(t, err, http.StatusForbidden, "AccessDenied", "")
	if err != nil && !strings.Contains(err.Error(), "is not authorized to perform: sqs:CreateQueue on resource: "+queueARN+"-other") {
		t.Errorf("denial %v does not say what IAM says", err)
	}
	// The operator is not checked.
	if _, err := sqs.NewFromConfig(operator).CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-other")}); err != nil {
		t.Fatalf("operator: %v", err)
	}

	bucket := name
	createBucket(ctx, t, s3.NewFromConfig(operator, testenv.S3PathStyle), bucket)
	s3c := s3.NewFromConfig(tester, testenv.S3PathStyle)
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("in/a"), Body: strings.NewReader("a")}); err != nil {
		t.Fatalf("put under in/: %v", err)
	}
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("out/a"), Body: strings.NewReader("a")})
	wantRefused(t, err, http.StatusForbidden, "AccessDenied", "")

	_, err = iam.NewFromConfig(tester).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("cp-nothing")})
	wantRefused(t, err, http.StatusForbidden, "AccessDenied", "")
	_, err = lambda.NewFromConfig(tester).GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("cp-nothing")})
	wantRefused(t, err, http.StatusForbidden, "AccessDeniedException", "")
	_, err = ecs.NewFromConfig(tester).DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{"cloudpipe"}})
	wantRefused(t, err, http.StatusBadRequest, "AccessDeniedException", "")

	rep := p.Report()
	got := rep.Principals["tester"]
	if got.Authorized != 2 || len(got.Denied) != 5 {
		t.Errorf("report %+v, want 2 authorized and 5 denied", got)
	}
	// A statement that allowed nothing, and an action of one that did.
	if u := rep.Unused["tester"]; !slices.Equal(u, []string{"Never", "Queue: sqs:GetQueueUrl"}) {
		t.Errorf("unused statements %v, want [Never, Queue: sqs:GetQueueUrl]", u)
	}
}

// TestIAMAuthorizesTheDependentActions: creating with tags needs the tag
// action too, and handing a role to a service needs iam:PassRole.
func TestIAMAuthorizesTheDependentActions(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	queueARN := "arn:aws:sqs:us-east-1:" + kumoAccount + ":" + name
	_, _, tester := iamProxy(t, doc(
		`{"Effect":"Allow","Action":"sqs:CreateQueue","Resource":"`+queueARN+`*"}`,
		`{"Effect":"Allow","Action":"sqs:TagQueue","Resource":"`+queueARN+`-tagged","Condition":{"StringEquals":{"aws:RequestTag/cloudpipe:managed":"true"}}}`,
		`{"Effect":"Allow","Action":"lambda:CreateFunction","Resource":"*"}`))
	q := sqs.NewFromConfig(tester)
	if _, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-tagged"),
		Tags: map[string]string{"cloudpipe:managed": "true"}}); err != nil {
		t.Fatalf("create with the tag the policy allows: %v", err)
	}
	_, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-other"),
		Tags: map[string]string{"cloudpipe:managed": "true"}})
	wantRefused(t, err, http.StatusForbidden, "AccessDenied", "")
	if err != nil && !strings.Contains(err.Error(), "sqs:TagQueue") {
		t.Errorf("denial %v, want it to name sqs:TagQueue", err)
	}

	_, err = lambda.NewFromConfig(tester).CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Role: aws.String("arn:aws:iam::" + kumoAccount + ":role/" + name),
		Runtime: lambdatypes.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
		Code: &lambdatypes.FunctionCode{ZipFile: []byte("PK")},
	})
	wantRefused(t, err, http.StatusForbidden, "AccessDeniedException", "")
	if err != nil && !strings.Contains(err.Error(), "iam:PassRole") {
		t.Errorf("denial %v, want it to name iam:PassRole", err)
	}
}

// TestIAMLambdaCodeFromS3NeedsGetObject: Lambda reads code from S3 with
// the caller's permissions, so creating or updating a function from an
// object needs s3:GetObject on it, and Lambda relays S3's refusal.
func TestIAMLambdaCodeFromS3NeedsGetObject(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	bucket := name + "-code"
	fnARN := "arn:aws:lambda:us-east-1:" + kumoAccount + ":function:" + name
	_, operator, tester := iamProxy(t, doc(
		`{"Effect":"Allow","Action":["lambda:CreateFunction","lambda:UpdateFunctionCode"],"Resource":"`+fnARN+`*"}`,
		`{"Effect":"Allow","Action":"iam:PassRole","Resource":"*"}`,
		`{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::`+bucket+`/allowed/*"}`))
	admin := s3.NewFromConfig(operator, testenv.S3PathStyle)
	if _, err := admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"allowed/a.zip", "other/a.zip"} {
		if _, err := admin.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: strings.NewReader("PK")}); err != nil {
			t.Fatal(err)
		}
	}
	fns := lambda.NewFromConfig(tester)
	create := func(fn, key string) error {
		_, err := fns.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String(fn), Role: aws.String("arn:aws:iam::" + kumoAccount + ":role/" + fn),
			Runtime: lambdatypes.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
			Code: &lambdatypes.FunctionCode{S3Bucket: &bucket, S3Key: aws.String(key)},
		})
		return err
	}
	denied := "Your access has been denied by S3, please make sure your request credentials have permission to GetObject for " +
		bucket + "/other/a.zip. S3 Error Code: AccessDenied. S3 Error Message: Access Denied"
	wantRefused(t, create(name+"-x", "other/a.zip"), http.StatusForbidden, "AccessDeniedException", denied)
	if err := create(name, "allowed/a.zip"); err != nil {
		t.Fatalf("create from an object the policy lets it read: %v", err)
	}
	_, err := fns.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(name), S3Bucket: &bucket, S3Key: aws.String("other/a.zip")})
	wantRefused(t, err, http.StatusForbidden, "AccessDeniedException", denied)
	if _, err := fns.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(name), S3Bucket: &bucket, S3Key: aws.String("allowed/a.zip")}); err != nil {
		t.Errorf("update from an object the policy lets it read: %v", err)
	}
	// Code sent in the request needs no S3 permission.
	if _, err := fns.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(name), ZipFile: []byte("PK")}); err != nil {
		t.Errorf("update with the zip in the request: %v", err)
	}
}

// TestIAMReadsACreatedRolesPolicies: a role made in the emulator is
// authorized by the inline policies it holds there, and a new policy takes
// effect at once.
func TestIAMReadsACreatedRolesPolicies(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	p, operator, _ := iamProxy(t, doc(`{"Effect":"Allow","Action":"sqs:ListQueues","Resource":"*"}`))
	admin := iam.NewFromConfig(operator)
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	if _, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		t.Fatal(err)
	}
	role := operator.Copy()
	role.Credentials = awsrules.RoleCredentials(name)
	q := sqs.NewFromConfig(role)
	_, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	wantRefused(t, err, http.StatusForbidden, "AccessDenied", "")

	policy := `{"Version":"2012-10-17","Statement":[{"Sid":"Create","Effect":"Allow","Action":"sqs:CreateQueue","Resource":"arn:aws:sqs:*:*:` + name + `"}]}`
	if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("p"), PolicyDocument: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)}); err != nil {
		t.Fatalf("after PutRolePolicy: %v", err)
	}

	// A policy rewritten: the report covers the statements of both forms.
	policy = `{"Version":"2012-10-17","Statement":[{"Sid":"Create","Effect":"Allow","Action":["sqs:CreateQueue","sqs:GetQueueUrl"],"Resource":"arn:aws:sqs:*:*:` + name + `"},
		{"Sid":"Later","Effect":"Allow","Action":"sqs:PurgeQueue","Resource":"*"}]}`
	if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("p"), PolicyDocument: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)}); err != nil {
		t.Fatalf("after the second PutRolePolicy: %v", err)
	}
	if u := p.Report().Unused[name]; !slices.Equal(u, []string{"Create: sqs:GetQueueUrl", "Later"}) {
		t.Errorf("unused statements %v, want [Create: sqs:GetQueueUrl, Later]", u)
	}
}

// TestIAMMissingKeyIsAccessDeniedWithoutListBucket: S3 hides whether a key
// exists from a principal that may not list the bucket.
func TestIAMMissingKeyIsAccessDeniedWithoutListBucket(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	get := `{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::` + name + `*/*"}`
	list := `{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::` + name + `-listed"}`
	_, operator, tester := iamProxy(t, doc(get, list))
	for _, b := range []string{name, name + "-listed"} {
		createBucket(ctx, t, s3.NewFromConfig(operator, testenv.S3PathStyle), b)
	}
	c := s3.NewFromConfig(tester, testenv.S3PathStyle)
	_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(name), Key: aws.String("missing")})
	wantRefused(t, err, http.StatusForbidden, "AccessDenied", "")
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(name + "-listed"), Key: aws.String("missing")})
	if !errors.As(err, new(*s3types.NoSuchKey)) {
		t.Errorf("with s3:ListBucket: %v, want NoSuchKey", err)
	}
}

// TestIAMListTasksIsAuthorizedOnStarWithinTheCluster: the exception the
// reference does not show.
func TestIAMListTasksIsAuthorizedOnStarWithinTheCluster(t *testing.T) {
	ctx := t.Context()
	cluster := "arn:aws:ecs:us-east-1:" + kumoAccount + ":cluster/cloudpipe"
	_, _, tester := iamProxy(t, doc(`{"Effect":"Allow","Action":"ecs:ListTasks","Resource":"*","Condition":{"ArnEquals":{"ecs:cluster":"`+cluster+`"}}}`))
	c := ecs.NewFromConfig(tester)
	_, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("cloudpipe"), DesiredStatus: ecstypes.DesiredStatusRunning})
	if errors.As(err, new(*ecstypes.AccessDeniedException)) {
		t.Errorf("ListTasks on the policy's cluster: %v", err)
	}
	_, err = c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("other")})
	wantRefused(t, err, http.StatusBadRequest, "AccessDeniedException", "")
}

// TestIAMGetFunctionShowsTagsOnlyWithListTags: Lambda leaves a function's
// tags out of GetFunction for a principal that may not lambda:ListTags it,
// so an agent without it could not tell its own functions.
func TestIAMGetFunctionShowsTagsOnlyWithListTags(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	fn := "arn:aws:lambda:us-east-1:" + kumoAccount + ":function:" + name
	get := `{"Effect":"Allow","Action":"lambda:GetFunction","Resource":"` + fn + `*"}`
	_, operator, tester := iamProxy(t, doc(get, `{"Effect":"Allow","Action":"lambda:ListTags","Resource":"`+fn+`-listed"}`))
	admin := iam.NewFromConfig(operator)
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	role, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{name, name + "-listed"} {
		if _, err := lambda.NewFromConfig(operator).CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String(f), Role: role.Role.Arn, Runtime: lambdatypes.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
			Code: &lambdatypes.FunctionCode{ZipFile: []byte("PK")}, Tags: map[string]string{"cloudpipe:managed": "true"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	c := lambda.NewFromConfig(tester)
	out, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Tags) != 0 {
		t.Errorf("without lambda:ListTags GetFunction showed tags %v", out.Tags)
	}
	out, err = c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name + "-listed")})
	if err != nil {
		t.Fatal(err)
	}
	if out.Tags["cloudpipe:managed"] != "true" {
		t.Errorf("with lambda:ListTags GetFunction showed tags %v, want cloudpipe:managed", out.Tags)
	}
}

// TestIAMReadsTagsOfResourcesMadeBeforeIt: a resource created before this
// proxy started (by an earlier demo, or through another proxy) is judged by
// the tags the emulator holds, as IAM judges aws:ResourceTag.
func TestIAMReadsTagsOfResourcesMadeBeforeIt(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	// Made through another proxy, which this one never hears of.
	_, earlier := newProxy(t, awsrules.Options{})
	q := sqs.NewFromConfig(earlier)
	tagged, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Tags: map[string]string{"cloudpipe:managed": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	untagged, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-mine")})
	if err != nil {
		t.Fatal(err)
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	if _, err := iam.NewFromConfig(earlier).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust),
		Tags: []iamtypes.Tag{{Key: aws.String("cloudpipe:managed"), Value: aws.String("true")}}}); err != nil {
		t.Fatal(err)
	}

	role, err := iam.NewFromConfig(earlier).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lambda.NewFromConfig(earlier).CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Role: role.Role.Arn, Runtime: lambdatypes.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
		Code: &lambdatypes.FunctionCode{ZipFile: []byte("PK")}, Tags: map[string]string{"cloudpipe:managed": "true"},
	}); err != nil {
		t.Fatal(err)
	}

	onlyManaged := `"Condition":{"StringEquals":{"aws:ResourceTag/cloudpipe:managed":"true"}}`
	_, _, tester := iamProxy(t, doc(
		`{"Effect":"Allow","Action":"sqs:SetQueueAttributes","Resource":"*",`+onlyManaged+`}`,
		`{"Effect":"Allow","Action":"iam:UpdateAssumeRolePolicy","Resource":"*",`+onlyManaged+`}`,
		`{"Effect":"Allow","Action":"lambda:DeleteFunction","Resource":"*",`+onlyManaged+`}`))
	if _, err := lambda.NewFromConfig(tester).DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)}); err != nil {
		t.Errorf("function tagged cloudpipe:managed before the proxy started: %v", err)
	}
	set := func(u *string) error {
		_, err := sqs.NewFromConfig(tester).SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: u,
			Attributes: map[string]string{"VisibilityTimeout": "40"}})
		return err
	}
	if err := set(tagged.QueueUrl); err != nil {
		t.Errorf("queue tagged cloudpipe:managed before the proxy started: %v", err)
	}
	wantRefused(t, set(untagged.QueueUrl), http.StatusForbidden, "AccessDenied", "")
	if _, err := iam.NewFromConfig(tester).UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{
		RoleName: aws.String(name), PolicyDocument: aws.String(trust)}); err != nil {
		t.Errorf("role tagged cloudpipe:managed before the proxy started: %v", err)
	}
}

// TestIAMAbortingAnUploadIsAbortMultipartUpload: IAM authorizes aborting a
// multipart upload (DELETE on the object with its uploadId) as
// s3:AbortMultipartUpload, not s3:DeleteObject.
func TestIAMAbortingAnUploadIsAbortMultipartUpload(t *testing.T) {
	ctx := t.Context()
	bucket := testenv.UniqueName(t)
	for _, tt := range []struct {
		action string
		want   bool
	}{{"s3:AbortMultipartUpload", true}, {"s3:DeleteObject", false}} {
		_, operator, tester := iamProxy(t, doc(`{"Effect":"Allow","Action":"`+tt.action+`","Resource":"arn:aws:s3:::`+bucket+`/*"}`))
		admin := s3.NewFromConfig(operator, testenv.S3PathStyle)
		if tt.want {
			createBucket(ctx, t, admin, bucket)
		}
		up, err := admin.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String("k")})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s3.NewFromConfig(tester, testenv.S3PathStyle).AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: aws.String("k"), UploadId: up.UploadId})
		if got := err == nil; got != tt.want {
			t.Errorf("abort allowed by %s: %v (%v), want %v", tt.action, got, err, tt.want)
		}
	}
}

// TestIAMDescribeInstanceTypesIsAuthorizedOnStarOnly: the action has no
// resource types, so IAM authorizes it on "*" and a statement naming an ARN
// allows nothing; the agent's policy grants it on "*".
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
func TestIAMDescribeInstanceTypesIsAuthorizedOnStarOnly(t *testing.T) {
	ctx := t.Context()
	in := &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{ec2types.InstanceTypeG5Xlarge}}
	_, _, scoped := iamProxy(t, doc(`{"Effect":"Allow","Action":"ec2:DescribeInstanceTypes","Resource":"arn:aws:ec2:*:*:instance/*"}`))
	_, err := ec2.NewFromConfig(scoped).DescribeInstanceTypes(ctx, in)
	wantRefused(t, err, http.StatusForbidden, "UnauthorizedOperation", "")

	p, _, star := iamProxy(t, doc(`{"Effect":"Allow","Action":"ec2:DescribeInstanceTypes","Resource":"*"}`))
	_, err = ec2.NewFromConfig(star).DescribeInstanceTypes(ctx, in)
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "UnauthorizedOperation" {
		t.Errorf("with Resource \"*\": %v, want it authorized", err)
	}
	// kumo itself has no DescribeInstanceTypes (the local ECS answers it):
	// what counts is that IAM allowed it.
	if got := p.Report().Principals["tester"]; got.Authorized != 1 || len(got.Denied) > 0 {
		t.Errorf("with Resource \"*\": report %+v, want 1 authorized", got)
	}
}
