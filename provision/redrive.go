package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/stagetask"
)

// StageQueues is what a stage's two queues hold, as SQS counts it
// (approximately: the counts are eventually consistent).
type StageQueues struct {
	// Waiting is the work queue's ApproximateNumberOfMessages: files queued
	// and not received by any runner.
	Waiting int
	// InFlight is its ApproximateNumberOfMessagesNotVisible: files a runner
	// is working on.
	InFlight int
	// DeadLetters is the dead-letter queue's ApproximateNumberOfMessages
	// plus …NotVisible: a dead letter being redriven is still one.
	DeadLetters int
}

// queueCountAttributes are the attributes StageQueues reads.
var queueCountAttributes = []sqstypes.QueueAttributeName{
	sqstypes.QueueAttributeNameApproximateNumberOfMessages,
	sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
}

// StageQueues counts the messages of the stage's work and dead-letter
// queues: two GetQueueAttributes calls, nothing else, so that `agent
// status` can run with a read-only policy.
func (p *Provisioner) StageQueues(ctx context.Context, spec StageSpec, res StageResources) (StageQueues, error) {
	var q StageQueues
	name := ResourceName(spec.Workflow, spec.Stage)
	if res.QueueURL == "" || res.DLQURL == "" {
		return q, fmt.Errorf("queues of %s: no queue or dead-letter queue recorded", name)
	}
	client := p.clients(spec.Region).sqs
	work, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(res.QueueURL), AttributeNames: queueCountAttributes})
	if err != nil {
		return q, fmt.Errorf("queues of %s: work queue attributes: %w", name, err)
	}
	dead, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(res.DLQURL), AttributeNames: queueCountAttributes})
	if err != nil {
		return q, fmt.Errorf("queues of %s: dead-letter queue attributes: %w", name, err)
	}
	q.Waiting = atoiOrZero(work.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	q.InFlight = atoiOrZero(work.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	q.DeadLetters = atoiOrZero(dead.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)]) +
		atoiOrZero(dead.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return q, nil
}

// DeadLetterMessage is one message received from a stage's dead-letter
// queue.
type DeadLetterMessage struct {
	ID      string // SQS's MessageId: the same at every receive of the message
	Receipt string // the receipt handle of this receive, to delete it
	Body    string
}

// AttrRedriveOf is the message attribute of a work message that `agent
// redrive` sent: the MessageId of the dead letter it replaces, so a run can
// be traced back to it.
const AttrRedriveOf = "cloudpipe.redrive-of"

// ReceiveDeadLetters receives up to 10 messages of the stage's dead-letter
// queue, hiding them from other receivers for visibility (at least 1 s).
// An empty answer means the queue has no message to give now.
func (p *Provisioner) ReceiveDeadLetters(ctx context.Context, spec StageSpec, res StageResources, visibility time.Duration) ([]DeadLetterMessage, error) {
	name := ResourceName(spec.Workflow, spec.Stage)
	if res.DLQURL == "" {
		return nil, fmt.Errorf("redrive %s: no dead-letter queue recorded", name)
	}
	out, err := p.clients(spec.Region).sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(res.DLQURL),
		MaxNumberOfMessages: 10,
		VisibilityTimeout:   int32(max(time.Second, visibility) / time.Second),
		// Long polling asks every SQS server, so an empty answer means an
		// empty queue (short polling samples a few):
		// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html
		WaitTimeSeconds: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("redrive %s: receive dead letters: %w", name, err)
	}
	msgs := make([]DeadLetterMessage, 0, len(out.Messages))
	for _, m := range out.Messages {
		msgs = append(msgs, DeadLetterMessage{ID: aws.ToString(m.MessageId), Receipt: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body)})
	}
	return msgs, nil
}

// SendWork sends body to the stage's work queue as the stage function
// would, with the dead letter it replaces as AttrRedriveOf, and returns
// the new message's id.
func (p *Provisioner) SendWork(ctx context.Context, spec StageSpec, res StageResources, body, redriveOf string) (string, error) {
	name := ResourceName(spec.Workflow, spec.Stage)
	if res.QueueURL == "" {
		return "", fmt.Errorf("redrive %s: no work queue recorded", name)
	}
	out, err := p.clients(spec.Region).sqs.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(res.QueueURL),
		MessageBody:       aws.String(body),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{AttrRedriveOf: stringAttribute(redriveOf)},
	})
	if err != nil {
		return "", fmt.Errorf("redrive %s: send to the work queue: %w", name, err)
	}
	return aws.ToString(out.MessageId), nil
}

// DeleteDeadLetter deletes a received message from the stage's dead-letter
// queue.
func (p *Provisioner) DeleteDeadLetter(ctx context.Context, spec StageSpec, res StageResources, receipt string) error {
	if _, err := p.clients(spec.Region).sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{
		QueueUrl: aws.String(res.DLQURL), ReceiptHandle: aws.String(receipt),
	}); err != nil {
		return fmt.Errorf("redrive %s: delete dead letter: %w", ResourceName(spec.Workflow, spec.Stage), err)
	}
	return nil
}

// StartStageTasks starts tasks for files queued in the stage's work queue
// as its stage function does for uploads: one task per file, at most
// stagetask.MaxRunTaskCount per RunTask call, never more than the stage's
// max_tasks running at once (stagetask.ToStart), counting its running tasks
// by ListTasks; when they cannot be counted, at most one, as the function
// does. token makes a retried call start nothing more (the SDK's retries;
// a call repeated with the same token, as ECS documents clientToken). It
// returns how many tasks started.
func (p *Provisioner) StartStageTasks(ctx context.Context, spec StageSpec, res StageResources, files int, token string) (int, error) {
	name := ResourceName(spec.Workflow, spec.Stage)
	if res.TaskDefinitionARN == "" {
		return 0, fmt.Errorf("start tasks of %s: no task definition recorded", name)
	}
	net, err := p.regionNetwork(ctx, spec.Region)
	if err != nil {
		return 0, fmt.Errorf("start tasks of %s: %w", name, err)
	}
	env := p.functionEnv(spec, res, net)
	client := p.clients(spec.Region).ecs
	limit := env.MaxTasks
	running, err := p.listStageTasks(ctx, client, res.TaskDefinitionARN, ecstypes.DesiredStatusRunning, 0)
	if err != nil {
		p.log.Warn("running tasks not counted, starting at most one", "stage", name, "err", err)
		running, limit = nil, 1
	}
	n := stagetask.ToStart(files, len(running), limit)
	started := 0
	for from := 0; from < n; from += stagetask.MaxRunTaskCount {
		count := min(stagetask.MaxRunTaskCount, n-from)
		out, err := client.RunTask(ctx, stagetask.RunTaskInput(env, count, chunkToken(token, from)))
		if err != nil {
			return started, fmt.Errorf("start tasks of %s: %w", name, err)
		}
		started += len(out.Tasks)
		if len(out.Failures) > 0 {
			return started, fmt.Errorf("start tasks of %s: %d of %d not started: %s %s", name, len(out.Failures), count,
				aws.ToString(out.Failures[0].Reason), aws.ToString(out.Failures[0].Detail))
		}
	}
	return started, nil
}

// chunkToken is the clientToken of the RunTask call starting at task from:
// at most 64 characters, as ECS allows.
func chunkToken(token string, from int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", token, from))
	return "cloudpipe-redrive-" + hex.EncodeToString(sum[:16])
}
