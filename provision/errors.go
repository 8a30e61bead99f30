package provision

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned by provision, translated from AWS errors at this boundary so
// callers use errors.Is and never match AWS codes or messages.
var (
	// ErrNotFound: the resource does not exist.
	ErrNotFound = errors.New("not found")
)

// NotOwnedError reports a resource with one of cloudpipe's names that does not
// carry cloudpipe's tags. cloudpipe never changes, adopts or deletes it.
type NotOwnedError struct {
	Kind string // "sqs queue", "iam role", ...
	Name string
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("%s %s exists but was not created by cloudpipe (no %s=true tag): rename or remove it, cloudpipe will not touch it", e.Kind, e.Name, TagManaged)
}

// ErrNotOwned matches any *NotOwnedError with errors.Is.
var ErrNotOwned = errors.New("not owned by cloudpipe")

// Is makes errors.Is(err, ErrNotOwned) true for a *NotOwnedError.
func (e *NotOwnedError) Is(target error) bool { return target == ErrNotOwned }

// ForeignBucketError reports a user-named bucket whose tags S3 refused to
// show the agent (403): it belongs to another AWS account, whose buckets
// answer only their owner ("By default, the bucket owner has this
// permission", https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketTagging.html),
// or a policy denies this agent. Either way it is not an untagged bucket of
// this account's, and cloudpipe writes nothing to it.
type ForeignBucketError struct {
	Bucket string
	Err    error // S3's refusal
}

func (e *ForeignBucketError) Error() string {
	return fmt.Sprintf("bucket %s belongs to another AWS account (or this agent may not read it): "+
		"name a bucket of this account, or let the agent's role read it (s3:GetBucketTagging, s3:ListBucket): %v", e.Bucket, e.Err)
}

func (e *ForeignBucketError) Unwrap() error { return e.Err }

// NotificationOverlapError reports a notification rule on a stage's input
// bucket that S3 refuses next to the stage's own: two rules of one bucket
// may not share an event type with key filters that could both match one
// key (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-filtering.html).
// The stage's rule takes every s3:ObjectCreated:* event with no filter, so
// any rule for an object-created event overlaps it.
type NotificationOverlapError struct {
	Bucket string
	// Rule is the overlapping rule as read from the bucket; its ID is ""
	// when S3 refused the write and the rule could not be found on a second
	// read.
	Rule NotificationRule
	// Err is S3's InvalidArgument when S3 refused the write, nil when
	// cloudpipe found the overlap before writing.
	Err error
}

// NotificationRule is one entry of a bucket's notification configuration.
type NotificationRule struct {
	ID          string
	Destination string // "lambda function <arn>", "sqs queue <arn>", "sns topic <arn>"
	Events      []string
	Prefix      string
	Suffix      string
}

func (e *NotificationOverlapError) Error() string {
	const fix = "remove that rule or narrow it to other events, or give the stage an input bucket of its own " +
		"(S3 refuses rules of one bucket whose events and key filters overlap)"
	r := e.Rule
	if r.ID == "" {
		return fmt.Sprintf("bucket %s: a notification rule overlaps cloudpipe's (every s3:ObjectCreated:* event, no key filter): %s: %v", e.Bucket, fix, e.Err)
	}
	msg := fmt.Sprintf("bucket %s: notification rule %q (%s, events %s, prefix %q, suffix %q) overlaps cloudpipe's (every s3:ObjectCreated:* event, no key filter): %s",
		e.Bucket, r.ID, r.Destination, strings.Join(r.Events, ","), r.Prefix, r.Suffix, fix)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *NotificationOverlapError) Unwrap() error { return e.Err }
