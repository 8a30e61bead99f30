package provision_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/cloudpipe/cloudpipe/provision"
)

func TestFunction(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	name := provision.ResourceName(spec.Workflow, spec.Stage)

	fn, err := e.lambda.GetFunction(t.Context(), &lambda.GetFunctionInput{FunctionName: &name})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fn.Configuration
	if aws.ToString(cfg.FunctionArn) != res.FunctionARN || aws.ToString(cfg.Role) != res.LambdaRoleARN ||
		cfg.Runtime != "provided.al2023" || aws.ToString(cfg.Handler) != "bootstrap" {
		t.Errorf("function %s role %s runtime %s handler %s", aws.ToString(cfg.FunctionArn), aws.ToString(cfg.Role), cfg.Runtime, aws.ToString(cfg.Handler))
	}
	// The code is the state bucket's object (kumo computes no CodeSha256
	// for it); its hash is on record.
	key, err := e.opts.LambdaCode.ObjectKey()
	if err != nil {
		t.Fatal(err)
	}
	create, _ := e.calls.LastInput("Lambda.CreateFunction").(*lambda.CreateFunctionInput)
	if create == nil || aws.ToString(create.Code.S3Bucket) != e.opts.StateBucket || aws.ToString(create.Code.S3Key) != key || create.Code.ZipFile != nil {
		t.Errorf("CreateFunction code %+v, want s3://%s/%s", create, e.opts.StateBucket, key)
	}
	if want, _ := e.opts.LambdaCode.SHA256(); res.FunctionCodeSHA256 != want || want == "" {
		t.Errorf("recorded CodeSha256 %q, want the package's %q", res.FunctionCodeSHA256, want)
	}
	if want := map[string]string{provision.TagManaged: "true", provision.TagWorkflow: spec.Workflow, provision.TagStage: "0"}; !maps.Equal(fn.Tags, want) {
		t.Errorf("tags = %v, want %v", fn.Tags, want)
	}
	wantEnv := map[string]string{
		"CLOUDPIPE_QUEUE_URL":        res.QueueURL,
		"CLOUDPIPE_DLQ_URL":          res.DLQURL,
		"CLOUDPIPE_CLUSTER":          e.opts.Cluster,
		"CLOUDPIPE_TASK_DEFINITION":  res.TaskDefinitionARN,
		"CLOUDPIPE_SUBNETS":          strings.Join(e.subnets, ","),
		"CLOUDPIPE_SECURITY_GROUPS":  strings.Join(e.sgs, ","),
		"CLOUDPIPE_ASSIGN_PUBLIC_IP": "false",
		"CLOUDPIPE_MAX_TASKS":        "10",
		"CLOUDPIPE_CONTAINER":        spec.Algorithm.Name,
		"CLOUDPIPE_WORKFLOW":         spec.Workflow,
		"CLOUDPIPE_STAGE":            "0",
	}
	if cfg.Environment == nil || !maps.Equal(cfg.Environment.Variables, wantEnv) {
		t.Errorf("environment\n%v\nwant\n%v", cfg.Environment, wantEnv)
	}

	pol, err := e.lambda.GetPolicy(t.Context(), &lambda.GetPolicyInput{FunctionName: &name})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Statement []struct {
			Sid       string
			Action    string
			Principal map[string]string
			Condition map[string]map[string]string
		}
	}
	if err := json.Unmarshal([]byte(aws.ToString(pol.Policy)), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Statement) != 1 {
		t.Fatalf("policy statements = %+v, want one", doc.Statement)
	}
	st := doc.Statement[0]
	if st.Principal["Service"] != "s3.amazonaws.com" || st.Action != "lambda:InvokeFunction" ||
		st.Condition["ArnLike"]["AWS:SourceArn"] != "arn:aws:s3:::"+spec.InputBucket ||
		st.Condition["StringEquals"]["AWS:SourceAccount"] != kumoAccount {
		t.Errorf("permission = %+v, want S3 invoking for %s in %s only", st, spec.InputBucket, kumoAccount)
	}
}

func TestFunctionCodeUpdatedOnlyWhenItChanges(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})

	// Same binary zipped again (as after an agent restart): same bytes.
	cfg := e.cfg.Copy()
	e.calls.Attach(&cfg)
	again := provision.New(cfg, withZip(e.opts, tinyZip(t)))
	e.calls.Reset()
	if _, err := again.EnsureStage(t.Context(), spec, res); err != nil {
		t.Fatal(err)
	}
	if w := e.calls.WriteOps(); len(w) != 0 || e.calls.Total() == 0 {
		t.Errorf("re-zipped identical binary: writes %v in %d calls, want reads only", w, e.calls.Total())
	}

	e.calls.Reset()
	upgraded := provision.New(cfg, withZip(e.opts, []byte("PK a new agent")))
	res2, err := upgraded.EnsureStage(t.Context(), spec, res)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.calls.WriteOps(), map[string]int{"S3.PutObject": 1, "Lambda.UpdateFunctionCode": 1}; !maps.Equal(got, want) {
		t.Errorf("new agent binary: writes %v, want %v (the new package stored, the function updated)", got, want)
	}
	if res2.FunctionCodeSHA256 == res.FunctionCodeSHA256 {
		t.Error("FunctionCodeSHA256 did not change")
	}
}

func withZip(o provision.Options, zip []byte) provision.Options {
	o.LambdaCode = provision.NewLambdaCode(zip)
	return o
}

// TestFunctionRetriedWhileRolePropagates makes Lambda refuse the new role
// twice, as it does for a few seconds after CreateRole.
func TestFunctionRetriedWhileRolePropagates(t *testing.T) {
	mod, seen := viaFaultProxy(t, func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Path == "/2015-03-31/functions"
	}, 2, fault{
		status: http.StatusBadRequest,
		header: map[string]string{"Content-Type": "application/json", "X-Amzn-Errortype": "InvalidParameterValueException"},
		body:   `{"Type":"User","message":"The role defined for the function cannot be assumed by Lambda."}`,
	})
	e := newEnv(t, mod)
	res := e.ensure(e.spec(), provision.StageResources{})
	if got := seen.Load(); got != 3 {
		t.Errorf("%d CreateFunction requests, want 2 refused + 1 accepted", got)
	}
	if res.FunctionARN == "" {
		t.Error("no function ARN recorded")
	}
}

// TestInvokeConfig: the stage function sends the record of an event it
// failed on every attempt to the stage's DLQ, after Lambda's two retries,
// keeping events for the 6 hours Lambda allows; a configuration changed
// behind the agent's back is drift, which the next EnsureStage repairs
// with one write.
func TestInvokeConfig(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	name := provision.ResourceName(spec.Workflow, spec.Stage)

	got, err := e.lambda.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: &name})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(got.MaximumRetryAttempts) != 2 || aws.ToInt32(got.MaximumEventAgeInSeconds) != 21600 ||
		got.DestinationConfig == nil || got.DestinationConfig.OnFailure == nil ||
		aws.ToString(got.DestinationConfig.OnFailure.Destination) != res.DLQARN || res.DLQARN == "" {
		t.Errorf("event invoke config %+v, want 2 retries, 21600 s and failures to %s", got, res.DLQARN)
	}

	for _, tt := range []struct {
		name   string
		tamper func()
	}{
		{"deleted", func() {
			if _, err := e.lambda.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: &name}); err != nil {
				t.Fatal(err)
			}
		}},
		{"no retries", func() {
			if _, err := e.lambda.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: &name,
				MaximumRetryAttempts: aws.Int32(0)}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		tt.tamper()
		missing, err := e.p.MissingResources(ctx, spec, res)
		if err != nil || !slices.Equal(missing, []string{"lambda event invoke config " + name}) {
			t.Errorf("%s: MissingResources = %v, %v; want the event invoke config", tt.name, missing, err)
		}
		e.calls.Reset()
		e.ensure(spec, res)
		if w := e.calls.WriteOps(); !maps.Equal(w, map[string]int{"Lambda.PutFunctionEventInvokeConfig": 1}) {
			t.Errorf("%s: repair wrote %v, want the one PutFunctionEventInvokeConfig", tt.name, w)
		}
		if missing, err := e.p.MissingResources(ctx, spec, res); err != nil || len(missing) != 0 {
			t.Errorf("%s: after the repair MissingResources = %v, %v", tt.name, missing, err)
		}
	}
}

// TestInvokeConfigRetriedWhileRoleGrantPropagates makes Lambda refuse the
// DLQ twice, as it does while the role policy that lets the function send
// there propagates through IAM.
func TestInvokeConfigRetriedWhileRoleGrantPropagates(t *testing.T) {
	mod, seen := viaFaultProxy(t, func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/event-invoke-config")
	}, 2, fault{
		status: http.StatusBadRequest,
		header: map[string]string{"Content-Type": "application/json", "X-Amzn-Errortype": "InvalidParameterValueException"},
		body:   `{"Type":"User","message":"The function's execution role does not have permissions to call SendMessage on arn:aws:sqs:us-east-1:000000000000:x"}`,
	})
	e := newEnv(t, mod)
	e.ensure(e.spec(), provision.StageResources{})
	if got := seen.Load(); got != 3 {
		t.Errorf("%d PutFunctionEventInvokeConfig requests, want 2 refused + 1 accepted", got)
	}
}
