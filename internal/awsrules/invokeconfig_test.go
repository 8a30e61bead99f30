package awsrules_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// fnRoleProxy starts a proxy with IAM on whose fixed roles hold policies,
// by role name, and returns it with the operator's config.
func fnRoleProxy(t *testing.T, o awsrules.Options, roles map[string]json.RawMessage) (*awsrules.Proxy, aws.Config) {
	t.Helper()
	fixed := map[string][]json.RawMessage{}
	for role, policy := range roles {
		fixed[role] = []json.RawMessage{policy}
	}
	o.IAM = &awsrules.IAM{Evaluator: evaluator(t), Account: kumoAccount, Fixed: fixed}
	return newProxy(t, o)
}

// createFunction creates function name running as role, as the operator.
func createFunction(t testing.TB, cfg aws.Config, name, role string) {
	t.Helper()
	if _, err := lambda.NewFromConfig(cfg).CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Role: aws.String("arn:aws:iam::" + kumoAccount + ":role/" + role),
		Runtime: lambdatypes.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
		Code: &lambdatypes.FunctionCode{ZipFile: testenv.LambdaZip(t)},
	}); err != nil {
		t.Fatal(err)
	}
}

// mustCreateQueue creates queue name as the operator and returns its URL.
func mustCreateQueue(t *testing.T, cfg aws.Config, name string) string {
	t.Helper()
	url, err := createQueue(t.Context(), sqs.NewFromConfig(cfg), name)
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// queueARN is the ARN of queue name in us-east-1.
func queueARN(name string) string { return "arn:aws:sqs:us-east-1:" + kumoAccount + ":" + name }

func sendTo(queueARN string) string {
	return `{"Effect":"Allow","Action":"sqs:SendMessage","Resource":"` + queueARN + `"}`
}

func onFailure(arn string) *lambdatypes.DestinationConfig {
	return &lambdatypes.DestinationConfig{OnFailure: &lambdatypes.OnFailure{Destination: aws.String(arn)}}
}

// TestEventInvokeConfigAsLambdaServesIt: the five operations, in Lambda's
// format and with its errors, and the configuration going with its
// function.
func TestEventInvokeConfigAsLambdaServesIt(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	dlqARN := queueARN(name + "-dlq")
	_, cfg := fnRoleProxy(t, awsrules.Options{}, map[string]json.RawMessage{name: doc(sendTo(dlqARN))})
	mustCreateQueue(t, cfg, name+"-dlq")
	lc := lambda.NewFromConfig(cfg)
	qualified := "arn:aws:lambda:us-east-1:" + kumoAccount + ":function:" + name + ":$LATEST"

	_, err := lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(name)})
	wantRefused(t, err, http.StatusNotFound, "ResourceNotFoundException",
		"Function not found: arn:aws:lambda:us-east-1:"+kumoAccount+":function:"+name)

	createFunction(t, cfg, name, name)
	_, err = lc.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String(name)})
	wantRefused(t, err, http.StatusNotFound, "ResourceNotFoundException", "The function "+qualified+" doesn't have an EventInvokeConfig")

	put, err := lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(name),
		MaximumRetryAttempts: aws.Int32(2), MaximumEventAgeInSeconds: aws.Int32(21600), DestinationConfig: onFailure(dlqARN)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(put.FunctionArn) != qualified || aws.ToInt32(put.MaximumRetryAttempts) != 2 || aws.ToInt32(put.MaximumEventAgeInSeconds) != 21600 ||
		put.DestinationConfig == nil || aws.ToString(put.DestinationConfig.OnFailure.Destination) != dlqARN || put.LastModified == nil {
		t.Errorf("put answered %+v", put)
	}

	// Update changes what it names and keeps the rest.
	up, err := lc.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: aws.String(name), MaximumRetryAttempts: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := lc.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*lambdatypes.DestinationConfig{up.DestinationConfig, got.DestinationConfig} {
		if c == nil || aws.ToString(c.OnFailure.Destination) != dlqARN {
			t.Errorf("after update the destination is %+v, want %s kept", c, dlqARN)
		}
	}
	if aws.ToInt32(got.MaximumRetryAttempts) != 1 || aws.ToInt32(got.MaximumEventAgeInSeconds) != 21600 {
		t.Errorf("after update: retries %d, age %d; want 1 and 21600", aws.ToInt32(got.MaximumRetryAttempts), aws.ToInt32(got.MaximumEventAgeInSeconds))
	}
	list, err := lc.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String(name)})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 1 || aws.ToString(list.FunctionEventInvokeConfigs[0].FunctionArn) != qualified {
		t.Errorf("list: %+v, %v; want the one configuration", list, err)
	}

	// Lambda's bounds: 0 to 2 retries, 60 s to 6 h.
	_, err = lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(name), MaximumRetryAttempts: aws.Int32(3)})
	wantRefused(t, err, http.StatusBadRequest, "ValidationException",
		"1 validation error detected: Value '3' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value less than or equal to 2")
	_, err = lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(name), MaximumEventAgeInSeconds: aws.Int32(59)})
	wantRefused(t, err, http.StatusBadRequest, "ValidationException", "")

	if _, err := lc.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	_, err = lc.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: aws.String(name)})
	wantRefused(t, err, http.StatusNotFound, "ResourceNotFoundException", "")

	// The configuration is part of the function: a function made again
	// under the name has none.
	if _, err := lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(name), DestinationConfig: onFailure(dlqARN)}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	createFunction(t, cfg, name, name)
	_, err = lc.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String(name)})
	wantRefused(t, err, http.StatusNotFound, "ResourceNotFoundException", "The function "+qualified+" doesn't have an EventInvokeConfig")
}

// TestPutFunctionEventInvokeConfigRefusesADestinationTheRoleCannotSendTo:
// Lambda sends an invocation record as the function's execution role, and
// refuses an on-failure queue that role may not send to.
func TestPutFunctionEventInvokeConfigRefusesADestinationTheRoleCannotSendTo(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	dlqARN, otherARN := queueARN(name+"-dlq"), queueARN(name+"-other")
	p, cfg := fnRoleProxy(t, awsrules.Options{}, map[string]json.RawMessage{
		name + "-none":  doc(`{"Effect":"Allow","Action":"sqs:ReceiveMessage","Resource":"` + dlqARN + `"}`),
		name + "-other": doc(sendTo(otherARN)),
		name + "-dlq":   doc(sendTo(dlqARN)),
	})
	lc := lambda.NewFromConfig(cfg)
	for _, tt := range []struct {
		role string
		ok   bool
	}{{name + "-none", false}, {name + "-other", false}, {name + "-dlq", true}} {
		fn := tt.role + "-fn"
		createFunction(t, cfg, fn, tt.role)
		_, err := lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(fn), DestinationConfig: onFailure(dlqARN)})
		if tt.ok {
			if err != nil {
				t.Errorf("role %s, which may send to the queue: %v", tt.role, err)
			}
			continue
		}
		wantRefused(t, err, http.StatusBadRequest, "InvalidParameterValueException",
			"The function's execution role does not have permissions to call SendMessage on "+dlqARN)
	}
	if rep := p.Report().Principals[name+"-dlq"]; rep.Authorized != 1 {
		t.Errorf("role allowed to send: %+v, want the one authorization counted", rep)
	}
	// What the proxy does not deliver, it refuses rather than ignore.
	_, err := lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(name + "-dlq-fn"),
		DestinationConfig: &lambdatypes.DestinationConfig{OnSuccess: &lambdatypes.OnSuccess{Destination: aws.String(dlqARN)}}})
	wantRefused(t, err, http.StatusInternalServerError, "InternalFailure", "")
}
