package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Queue settings of a stage.
const (
	maxReceiveCount     = 3                  // deliveries before a message goes to the DLQ
	workRetention       = 4 * 24 * time.Hour // SQS default; the DLQ keeps longer
	dlqRetention        = 14 * 24 * time.Hour
	maxVisibility       = 12 * time.Hour // SQS limit
	visibilityMargin    = 5 * time.Minute
	receiveWaitSeconds  = 20 // long polling, so idle runners do not spin
	attrQueueArn        = "QueueArn"
	attrRedrivePolicy   = "RedrivePolicy"
	attrVisibility      = "VisibilityTimeout"
	attrRetention       = "MessageRetentionPeriod"
	attrReceiveWaitTime = "ReceiveMessageWaitTimeSeconds"
)

// queueIDs identify a queue.
type queueIDs struct{ URL, ARN string }

// visibilityTimeout returns the work queue's visibility timeout: the
// expected run time plus a margin for download and upload, so a message is
// not handed to a second runner while the first still works on it (the
// runner also extends it during long runs), capped at SQS's 12 hours.
func visibilityTimeout(expected time.Duration) time.Duration {
	if expected <= 0 {
		expected = DefaultExpectedRunTime
	}
	return min(expected+visibilityMargin, maxVisibility)
}

func seconds(d time.Duration) string { return strconv.Itoa(int(d.Round(time.Second) / time.Second)) }

// workQueueAttributes returns the attributes of a stage's work queue.
func workQueueAttributes(spec StageSpec, dlqARN string) map[string]string {
	redrive, _ := json.Marshal(redrivePolicy{DeadLetterTargetArn: dlqARN, MaxReceiveCount: maxReceiveCount})
	return map[string]string{
		attrVisibility:      seconds(visibilityTimeout(spec.Algorithm.ExpectedRunTime)),
		attrRetention:       seconds(workRetention),
		attrReceiveWaitTime: strconv.Itoa(receiveWaitSeconds),
		attrRedrivePolicy:   string(redrive),
	}
}

// dlqAttributes returns the attributes of a stage's dead-letter queue.
func dlqAttributes() map[string]string {
	return map[string]string{attrRetention: seconds(dlqRetention)}
}

// redrivePolicy is the RedrivePolicy attribute. AWS answers maxReceiveCount
// as a number or a string depending on how it was set, so reading accepts
// both.
type redrivePolicy struct {
	DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	MaxReceiveCount     int    `json:"maxReceiveCount"`
}

func parseRedrivePolicy(s string) (redrivePolicy, bool) {
	var raw struct {
		DeadLetterTargetArn string      `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.Number `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return redrivePolicy{}, false
	}
	n, err := strconv.Atoi(raw.MaxReceiveCount.String())
	if err != nil {
		return redrivePolicy{}, false
	}
	return redrivePolicy{DeadLetterTargetArn: raw.DeadLetterTargetArn, MaxReceiveCount: n}, true
}

// queueAttributeEqual compares one attribute as SQS means it: RedrivePolicy
// is JSON, compared by value.
func queueAttributeEqual(name, have, want string) bool {
	if name == attrRedrivePolicy {
		h, ok1 := parseRedrivePolicy(have)
		w, ok2 := parseRedrivePolicy(want)
		return ok1 && ok2 && h == w
	}
	return have == want
}

// queueAttributeDiff returns the attributes of want that cur does not have
// as SQS means them: what ensureQueue sets, and what a drift check reports.
func queueAttributeDiff(cur, want map[string]string) map[string]string {
	diff := map[string]string{}
	for k, v := range want {
		if !queueAttributeEqual(k, cur[k], v) {
			diff[k] = v
		}
	}
	return diff
}

// queueDrift compares the attributes of the queue name with want, reading
// only; a missing queue is no drift here (MissingResources reports it).
func queueDrift(ctx context.Context, c *clients, name string, want map[string]string) ([]Drift, error) {
	url, err := findQueueURL(ctx, c, name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cur, err := queueAttributes(ctx, c, name, url, string(sqstypes.QueueAttributeNameAll))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	diff := queueAttributeDiff(cur, want)
	var out []Drift
	for _, k := range slices.Sorted(maps.Keys(diff)) {
		out = append(out, Drift{Kind: kindQueue, Name: name, Setting: k, Want: want[k], Have: cur[k]})
	}
	return out, nil
}

// isQueueNotFound reports a missing queue: the typed QueueDoesNotExist, or
// its query-protocol code, which is all kumo sends.
// queueNameReuse is how long SQS refuses the name of a deleted queue: "You
// must wait 60 seconds after deleting a queue before you can create another
// queue with the same name." A second more allows for clocks.
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteQueue.html
const queueNameReuse = 61 * time.Second

// queueDeletions remembers when a provisioner deleted each queue, so that
// creating the name again waits only what is left of SQS's minute.
type queueDeletions struct {
	mu sync.Mutex
	at map[string]time.Time // by region + "/" + name
}

func (d *queueDeletions) note(region, name string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at == nil {
		d.at = map[string]time.Time{}
	}
	d.at[region+"/"+name] = at
}

// freeIn is how long until SQS gives the name back: what is left of the
// minute since this provisioner deleted it, or the whole minute when
// another did (an earlier run, a person).
func (d *queueDeletions) freeIn(region, name string, now time.Time) time.Duration {
	d.mu.Lock()
	at, ok := d.at[region+"/"+name]
	d.mu.Unlock()
	if !ok {
		return queueNameReuse
	}
	return max(at.Add(queueNameReuse).Sub(now), time.Second)
}

// createQueue creates a queue, and when SQS refuses the name because a
// queue of that name was deleted less than a minute ago (a stage replaced
// in the same pass, a workflow removed and added back), waits it out once
// and tries again, so the pass succeeds; the SDK's retryer alone gives up
// after some 25 s.
func createQueue(ctx context.Context, c *clients, in *sqs.CreateQueueInput) (*sqs.CreateQueueOutput, error) {
	out, err := c.sqs.CreateQueue(ctx, in)
	if !isQueueDeletedRecently(err) {
		return out, err
	}
	wait := c.deletedQueues.freeIn(c.region, aws.ToString(in.QueueName), time.Now())
	c.log.InfoContext(ctx, "queue name deleted less than a minute ago: waiting until SQS gives it back",
		"queue", aws.ToString(in.QueueName), "region", c.region, "wait", wait)
	if err := c.sleep(ctx, wait); err != nil {
		return nil, fmt.Errorf("wait for queue name %s: %w", aws.ToString(in.QueueName), err)
	}
	return c.sqs.CreateQueue(ctx, in)
}

func isQueueDeletedRecently(err error) bool {
	var qe *sqstypes.QueueDeletedRecently
	return errors.As(err, &qe) || hasCode(err, "AWS.SimpleQueueService.QueueDeletedRecently", "QueueDeletedRecently")
}

func isQueueNotFound(err error) bool {
	var qe *sqstypes.QueueDoesNotExist
	return errors.As(err, &qe) || hasCode(err, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
}

// findQueueURL returns the URL of the queue named name, or ErrNotFound.
func findQueueURL(ctx context.Context, c *clients, name string) (string, error) {
	out, err := c.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if isQueueNotFound(err) {
		return "", fmt.Errorf("get queue url %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("get queue url %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// findQueueTags returns the tags of the queue at url, or ErrNotFound.
func findQueueTags(ctx context.Context, c *clients, name, url string) (map[string]string, error) {
	out, err := c.sqs.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: &url})
	if isQueueNotFound(err) {
		return nil, fmt.Errorf("list queue tags %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("list queue tags %s: %w", name, err)
	}
	return out.Tags, nil
}

// ensureQueue creates the queue name with attrs and tags, or, if a queue of
// that name exists and is ours, sets the attributes that differ from attrs
// (the queue is never recreated: it may hold messages). A queue without our
// tags gives a *NotOwnedError and is not touched.
func ensureQueue(ctx context.Context, c *clients, name string, attrs, tags map[string]string) (queueIDs, error) {
	url, err := findQueueURL(ctx, c, name)
	if errors.Is(err, ErrNotFound) {
		out, err := createQueue(ctx, c, &sqs.CreateQueueInput{QueueName: &name, Attributes: attrs, Tags: tags})
		if err != nil {
			return queueIDs{}, fmt.Errorf("create queue %s: %w", name, err)
		}
		url = aws.ToString(out.QueueUrl)
		arn, err := queueAttributes(ctx, c, name, url, attrQueueArn)
		if err != nil {
			return queueIDs{URL: url}, err
		}
		return queueIDs{URL: url, ARN: arn[attrQueueArn]}, nil
	}
	if err != nil {
		return queueIDs{}, err
	}
	have, err := findQueueTags(ctx, c, name, url)
	if err != nil {
		return queueIDs{}, err
	}
	if !ownedBy(have, tags[TagWorkflow]) {
		return queueIDs{}, &NotOwnedError{Kind: "sqs queue", Name: name}
	}
	cur, err := queueAttributes(ctx, c, name, url, string(sqstypes.QueueAttributeNameAll))
	if err != nil {
		return queueIDs{}, err
	}
	ids := queueIDs{URL: url, ARN: cur[attrQueueArn]}
	diff := queueAttributeDiff(cur, attrs)
	if len(diff) == 0 {
		return ids, nil
	}
	if _, err := c.sqs.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: diff}); err != nil {
		return ids, fmt.Errorf("set queue attributes %s: %w", name, err)
	}
	return ids, nil
}

func queueAttributes(ctx context.Context, c *clients, name, url string, names ...string) (map[string]string, error) {
	in := &sqs.GetQueueAttributesInput{QueueUrl: &url}
	for _, n := range names {
		in.AttributeNames = append(in.AttributeNames, sqstypes.QueueAttributeName(n))
	}
	out, err := c.sqs.GetQueueAttributes(ctx, in)
	if isQueueNotFound(err) {
		return nil, fmt.Errorf("get queue attributes %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get queue attributes %s: %w", name, err)
	}
	return out.Attributes, nil
}

// deleteQueue deletes the queue name if it is ours.
func deleteQueue(ctx context.Context, c *clients, name, workflow string) (outcome, error) {
	url, err := findQueueURL(ctx, c, name)
	if errors.Is(err, ErrNotFound) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, err
	}
	tags, err := findQueueTags(ctx, c, name, url)
	if errors.Is(err, ErrNotFound) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, err
	}
	if !ownedBy(tags, workflow) {
		return outcomeNotOwned, nil
	}
	_, err = c.sqs.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: &url})
	if isQueueNotFound(err) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, fmt.Errorf("delete queue %s: %w", name, err)
	}
	c.deletedQueues.note(c.region, name, time.Now())
	return outcomeDeleted, nil
}
