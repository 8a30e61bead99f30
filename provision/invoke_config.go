package provision

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// S3 invokes the stage function asynchronously. When the function fails an
// event (the work queue refused the message, ECS throttled past the
// handler's retries, the deadline came first), Lambda runs it again and
// then, by default, discards it: the upload would be dropped with no trace
// but a log line. The stage's asynchronous invocation configuration sends
// the event's invocation record to the stage's dead-letter queue instead
// (an on-failure destination), where the S3 key can be read back from the
// record's requestPayload.
// https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
// https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html
const (
	// asyncRetryAttempts is Lambda's default, set explicitly so that a
	// configuration changed by hand is put back: two retries (three
	// attempts, about one and three minutes after the first) outlast a
	// short throttling of SQS or ECS; an event failed three times is
	// unlikely to succeed later, and its file is better seen in the
	// dead-letter queue than retried unseen.
	asyncRetryAttempts = 2
	// asyncMaxEventAgeSec is the longest Lambda keeps an event, 6 hours
	// (also its default). Events wait in Lambda's queue when the function
	// is throttled (a burst of uploads beyond the account's concurrency),
	// not when they fail; a shorter age would send uploads that merely
	// waited to the dead-letter queue, where nothing processes them.
	asyncMaxEventAgeSec = 21600
)

// invokeConfigMatches reports whether have is the configuration cloudpipe
// sets: its retries and age, failures to dlqARN, no on-success destination.
func invokeConfigMatches(have *lambda.GetFunctionEventInvokeConfigOutput, dlqARN string) bool {
	var onSuccess, onFailure string
	if d := have.DestinationConfig; d != nil {
		if d.OnSuccess != nil {
			onSuccess = aws.ToString(d.OnSuccess.Destination)
		}
		if d.OnFailure != nil {
			onFailure = aws.ToString(d.OnFailure.Destination)
		}
	}
	return aws.ToInt32(have.MaximumRetryAttempts) == asyncRetryAttempts &&
		aws.ToInt32(have.MaximumEventAgeInSeconds) == asyncMaxEventAgeSec &&
		onFailure == dlqARN && onSuccess == ""
}

// invokeConfigCurrent reports whether function's asynchronous invocation
// configuration is the one cloudpipe sets (false when it has none, or
// the function is gone).
func invokeConfigCurrent(ctx context.Context, c *clients, function, dlqARN string) (bool, error) {
	out, err := c.lambda.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: &function})
	if isLambdaNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get event invoke config %s: %w", function, err)
	}
	return invokeConfigMatches(out, dlqARN), nil
}

// ensureInvokeConfig makes function send the record of an event it failed
// on every attempt to dlqARN, writing only when the configuration differs.
// Lambda refuses the destination until the function's role may send to it,
// which a role policy written moments ago may not yet let it do: that
// refusal is retried while IAM propagates.
func (p *Provisioner) ensureInvokeConfig(ctx context.Context, c *clients, function, dlqARN string) error {
	current, err := invokeConfigCurrent(ctx, c, function, dlqARN)
	if err != nil || current {
		return err
	}
	in := &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:             &function,
		MaximumRetryAttempts:     aws.Int32(asyncRetryAttempts),
		MaximumEventAgeInSeconds: aws.Int32(asyncMaxEventAgeSec),
		DestinationConfig:        &lambdatypes.DestinationConfig{OnFailure: &lambdatypes.OnFailure{Destination: aws.String(dlqARN)}},
	}
	err = p.retryPropagation(ctx, "put event invoke config", isDestinationNotAllowedYet, func(ctx context.Context) error {
		_, err := c.lambda.PutFunctionEventInvokeConfig(ctx, in)
		return err
	})
	if err != nil {
		return fmt.Errorf("put event invoke config %s: %w", function, err)
	}
	return nil
}

// invokeConfigResource is the function's asynchronous invocation
// configuration, checked for drift against the recorded dead-letter queue
// (not at all when none is recorded). It is part of the function on AWS
// and goes with it, so deleting it deletes nothing.
func invokeConfigResource(c *clients, function, dlqARN string) stageResource {
	r := stageResource{
		kind: kindInvokeConfig, name: function,
		delete: func(context.Context) (outcome, string, error) { return outcomeGone, "", nil },
	}
	if dlqARN != "" {
		r.exists = func(ctx context.Context) (bool, error) { return invokeConfigCurrent(ctx, c, function, dlqARN) }
	}
	return r
}
