package provision

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

// These tests are internal: the predicates are unexported, and pure.

func apiErr(code, msg string) error {
	// Wrapped as the SDK does, with an operation error around the API error.
	return &smithy.OperationError{ServiceID: "X", OperationName: "Y", Err: &smithy.GenericAPIError{Code: code, Message: msg}}
}

func TestRetryPredicates(t *testing.T) {
	roleMsg := "The role defined for the function cannot be assumed by Lambda."
	destMsg := "Unable to validate the following destination configurations"
	tests := []struct {
		name string
		pred func(error) bool
		err  error
		want bool
	}{
		{"lambda role: generic", isLambdaRoleNotReady, apiErr("InvalidParameterValueException", roleMsg), true},
		{"lambda role: typed", isLambdaRoleNotReady, &lambdatypes.InvalidParameterValueException{Message: aws.String(roleMsg)}, true},
		{"lambda role: wrapped", isLambdaRoleNotReady, fmt.Errorf("create function x: %w", apiErr("InvalidParameterValueException", roleMsg)), true},
		{"lambda role: other message", isLambdaRoleNotReady, apiErr("InvalidParameterValueException", "Unzipped size must be smaller than 262144000 bytes"), false},
		{"lambda role: other code", isLambdaRoleNotReady, apiErr("AccessDeniedException", roleMsg), false},
		{"lambda role: nil", isLambdaRoleNotReady, nil, false},
		{"lambda role: plain error", isLambdaRoleNotReady, errors.New(roleMsg), false},
		{"notification: match", isNotificationDestinationNotReady, apiErr("InvalidArgument", destMsg+": arn:aws:lambda:...:function:f"), true},
		{"notification: other argument", isNotificationDestinationNotReady, apiErr("InvalidArgument", "Configuration is ambiguously defined."), false},
		{"notification: other code", isNotificationDestinationNotReady, apiErr("AccessDenied", destMsg), false},
		{"overlap: no filters", isNotificationOverlap, apiErr("InvalidArgument", "Configurations overlap. Configurations on the same bucket cannot share a common event type."), true},
		{"overlap: filters", isNotificationOverlap, apiErr("InvalidArgument", "Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are overlapping for the same event type."), true},
		{"overlap: destination not ready", isNotificationOverlap, apiErr("InvalidArgument", destMsg), false},
		{"access denied", isAccessDenied, apiErr("AccessDenied", "Access Denied"), true},
		{"access denied: bare 403 (HeadBucket)", isAccessDenied, apiErr("Forbidden", "Forbidden"), true},
		{"access denied: other code", isAccessDenied, apiErr("NoSuchBucket", "The specified bucket does not exist"), false},
		{"task def: kumo", isTaskDefinitionNotFound, apiErr("ClientException", "The specified task definition was not found"), true},
		{"task def: ecs", isTaskDefinitionNotFound, apiErr("ClientException", "Unable to describe task definition."), true},
		{"task def: other client error", isTaskDefinitionNotFound, apiErr("ClientException", "Invalid revision number."), false},
		{"task def: server error", isTaskDefinitionNotFound, apiErr("ServerException", "task definition was not found"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pred(tt.err); got != tt.want {
				t.Errorf("predicate(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestRetryPropagation(t *testing.T) {
	retryable := apiErr("InvalidArgument", "Unable to validate the following destination configurations")
	p := New(aws.Config{}, Options{IAMPropagationTimeout: 3 * time.Second})

	t.Run("succeeds after retryable errors", func(t *testing.T) {
		calls := 0
		err := p.retryPropagation(t.Context(), "test", isNotificationDestinationNotReady, func(context.Context) error {
			calls++
			if calls < 3 {
				return retryable
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("err = %v after %d calls, want nil after 3", err, calls)
		}
	})
	t.Run("other errors return at once", func(t *testing.T) {
		calls := 0
		other := apiErr("AccessDenied", "no")
		err := p.retryPropagation(t.Context(), "test", isNotificationDestinationNotReady, func(context.Context) error {
			calls++
			return other
		})
		if !errors.Is(err, other) || calls != 1 {
			t.Fatalf("err = %v after %d calls, want %v after 1", err, calls, other)
		}
	})
	t.Run("capped by the timeout", func(t *testing.T) {
		short := New(aws.Config{}, Options{IAMPropagationTimeout: 50 * time.Millisecond})
		start := time.Now()
		err := short.retryPropagation(t.Context(), "test", isNotificationDestinationNotReady, func(context.Context) error { return retryable })
		if !errors.Is(err, retryable) {
			t.Fatalf("err = %v, want the last retryable error", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %v, want about the 50ms cap", d)
		}
	})
	t.Run("stops when ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		err := p.retryPropagation(ctx, "test", isNotificationDestinationNotReady, func(context.Context) error {
			calls++
			cancel()
			return retryable
		})
		if !errors.Is(err, context.Canceled) || calls != 1 {
			t.Fatalf("err = %v after %d calls, want context.Canceled after 1", err, calls)
		}
	})
}

// TestRetryerHasNoQuota: the agent's retryer grants a retry for every
// throttled or timed-out call, however many came before, where the SDK's
// default quota of 500 tokens (5 a retry, 14 a timeout) refuses the 27th
// pair.
func TestRetryerHasNoQuota(t *testing.T) {
	r := NewRetryer()
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException"}
	timeout := retryTimeout{}
	for i := range 1000 {
		for _, err := range []error{throttled, timeout} {
			if !r.IsErrorRetryable(err) {
				t.Fatalf("%T not retryable", err)
			}
			if _, err := r.GetRetryToken(t.Context(), err); err != nil {
				t.Fatalf("retry %d refused: %v", i, err)
			}
		}
	}
}

// retryTimeout is a client-side timeout as net/http reports one.
type retryTimeout struct{}

func (retryTimeout) Error() string   { return "Client.Timeout exceeded while awaiting headers" }
func (retryTimeout) Timeout() bool   { return true }
func (retryTimeout) Temporary() bool { return true }
