package provision

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/backoff"
)

// This file is the only place in cloudpipe that looks at AWS error messages.
// Throttling is retried by the SDK's standard retryer (see New); what is
// retried here are the named, eventually consistent conditions that AWS
// reports as client errors, each quoted below, with backoff, jitter and a cap.

// errorCode returns the AWS error code of err ("NoSuchEntity",
// "AWS.SimpleQueueService.NonExistentQueue", ...), or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// hasCode reports whether err is an AWS error with one of codes.
func hasCode(err error, codes ...string) bool {
	code := errorCode(err)
	if code == "" {
		return false
	}
	for _, c := range codes {
		if code == c {
			return true
		}
	}
	return false
}

// hasCodeAndMessage reports whether err is an AWS error with code whose
// message contains one of the fragments.
func hasCodeAndMessage(err error, code string, fragments ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		return false
	}
	for _, f := range fragments {
		if strings.Contains(ae.ErrorMessage(), f) {
			return true
		}
	}
	return false
}

// isLambdaRoleNotReady reports the error CreateFunction and
// UpdateFunctionConfiguration return while a newly created execution role
// has not yet propagated through IAM:
//
//	InvalidParameterValueException: "The role defined for the function cannot be assumed by Lambda."
func isLambdaRoleNotReady(err error) bool {
	return hasCodeAndMessage(err, "InvalidParameterValueException",
		"The role defined for the function cannot be assumed by Lambda")
}

// isDestinationNotAllowedYet reports PutFunctionEventInvokeConfig's refusal
// of an on-failure queue the function's role may not yet send to, while
// the role policy that allows it propagates through IAM:
//
//	InvalidParameterValueException: "The function's execution role does not have permissions to call SendMessage on ARN"
//
// https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
// https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
func isDestinationNotAllowedYet(err error) bool {
	return hasCodeAndMessage(err, "InvalidParameterValueException",
		"execution role does not have permissions to call SendMessage")
}

// isNotificationDestinationNotReady reports the error
// PutBucketNotificationConfiguration returns when S3 cannot yet invoke the
// function, right after AddPermission granted it:
//
//	InvalidArgument: "Unable to validate the following destination configurations"
func isNotificationDestinationNotReady(err error) bool {
	return hasCodeAndMessage(err, "InvalidArgument",
		"Unable to validate the following destination configurations")
}

// isNotificationOverlap reports S3's refusal of a notification
// configuration whose rules overlap, one of (400 InvalidArgument):
//
//	"Configurations overlap. Configurations on the same bucket cannot share a common event type."
//	"Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are overlapping for the same event type."
//
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-filtering.html
func isNotificationOverlap(err error) bool {
	return hasCodeAndMessage(err, "InvalidArgument", "Configurations overlap", "overlapping")
}

// isAccessDenied reports S3's 403: AccessDenied with a body, or the bare
// 403 of a call that has none (HeadBucket), which the SDK names Forbidden.
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html
func isAccessDenied(err error) bool {
	var re *awshttp.ResponseError
	return hasCode(err, "AccessDenied", "Forbidden") || (errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden)
}

// isServiceLinkedRoleTaken reports IAM's answer to CreateServiceLinkedRole
// when the role is there already (created since it was found missing, by
// ECS itself or by another bootstrap):
//
//	InvalidInput: "Service role name AWSServiceRoleForECS has been taken in this account, please try a different suffix."
func isServiceLinkedRoleTaken(err error) bool {
	return hasCodeAndMessage(err, "InvalidInput", "has been taken in this account")
}

// isTaskDefinitionNotFound reports that DeregisterTaskDefinition was given a
// revision that does not exist. ECS has no dedicated code for it, only
// ClientException with one of these messages:
//
//	"The specified task definition was not found" (kumo)
//	"The specified task definition does not exist." (ECS)
//	"Unable to describe task definition." (ECS)
func isTaskDefinitionNotFound(err error) bool {
	return hasCodeAndMessage(err, "ClientException",
		"task definition was not found",
		"task definition does not exist",
		"Unable to describe task definition")
}

// Bounds of the propagation backoff: 0.5s, 1s, 2s ... 10s, each halved to
// a random point in its upper half (jitter, so parallel stages waiting for
// IAM do not retry in lockstep).
const (
	propagationFirstDelay = 500 * time.Millisecond
	propagationMaxDelay   = 10 * time.Second
)

// retryPropagation calls fn until it succeeds, fails with an error retryable
// does not accept, ctx ends, or the next wait would pass
// Options.IAMPropagationTimeout; then it returns fn's last error.
func (p *Provisioner) retryPropagation(ctx context.Context, op string, retryable func(error) bool, fn func(context.Context) error) error {
	deadline := time.Now().Add(p.opts.IAMPropagationTimeout)
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !retryable(err) {
			return err
		}
		wait := backoff.Exponential(attempt, propagationFirstDelay, propagationMaxDelay)
		if time.Now().Add(wait).After(deadline) {
			return err
		}
		p.log.DebugContext(ctx, "retry after iam propagation error", "action", op, "attempt", attempt, "duration", wait, "err", err)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// isJobDefinitionNotFound reports Batch's answer to a job-definition
// revision that does not exist (ClientException, "JobDefinition NAME does
// not exist" or "... not found").
func isJobDefinitionNotFound(err error) bool {
	return hasCodeAndMessage(err, "ClientException", "does not exist", "not found")
}

// isBatchAlreadyExists reports Batch's answer to creating a compute
// environment or job queue whose name is taken (ClientException, "Compute
// environment NAME already exists", "JobQueue NAME already exists"): made
// meanwhile by another stage on the same capacity.
func isBatchAlreadyExists(err error) bool {
	return hasCodeAndMessage(err, "ClientException", "already exists")
}
