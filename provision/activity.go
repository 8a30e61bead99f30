package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/stagetask"
)

// StageActivity is what a deployed stage is doing: the agent reads it to
// find files left waiting in a work queue that no task will receive.
type StageActivity struct {
	// Waiting is the work queue's ApproximateNumberOfMessages: files queued
	// and not received by any runner.
	Waiting int
	// InFlight is ApproximateNumberOfMessagesNotVisible: files a runner has
	// received and is working on.
	InFlight int
	// Running counts the stage's tasks whose desired status is RUNNING,
	// those still starting included.
	Running int
	// StoppedReason is the stoppedReason of the stage's most recently
	// stopped task (ECS shows stopped tasks for at least an hour), read
	// only when files wait and no task runs; "" when none is known.
	StoppedReason string
}

// Stranded reports files waiting with nothing to receive them: no task of
// the stage runs and no runner holds a message.
func (a StageActivity) Stranded() bool { return a.Waiting > 0 && a.InFlight == 0 && a.Running == 0 }

// StageActivity reads what the stage of spec, deployed as res, is doing:
// its work queue's message counts, its tasks on the cluster (found as the
// stage function finds them, by task-definition family), and when files
// are stranded, why its last task stopped. The counts are approximate
// (SQS's and ListTasks' answers are eventually consistent), so a caller acts
// on what it sees several times, not once.
func (p *Provisioner) StageActivity(ctx context.Context, spec StageSpec, res StageResources) (StageActivity, error) {
	var a StageActivity
	onBatch := spec.Batch != nil
	if res.QueueURL == "" || (!onBatch && res.TaskDefinitionARN == "") || (onBatch && (res.JobQueueARN == "" || res.JobDefinitionARN == "")) {
		return a, fmt.Errorf("activity of %s: no queue or task definition recorded", ResourceName(spec.Workflow, spec.Stage))
	}
	c := p.clients(spec.Region)
	q, err := c.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(res.QueueURL),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return a, fmt.Errorf("activity of %s: queue attributes: %w", ResourceName(spec.Workflow, spec.Stage), err)
	}
	a.Waiting = atoiOrZero(q.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	a.InFlight = atoiOrZero(q.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	if a.Waiting == 0 {
		return a, nil // nothing can be stranded: spare the ECS calls
	}
	if onBatch {
		return p.stageJobActivity(ctx, c, spec, res, a)
	}
	running, err := p.listStageTasks(ctx, c.ecs, res.TaskDefinitionARN, ecstypes.DesiredStatusRunning, 0)
	if err != nil {
		return a, fmt.Errorf("activity of %s: %w", ResourceName(spec.Workflow, spec.Stage), err)
	}
	a.Running = len(running)
	if !a.Stranded() {
		return a, nil
	}
	if a.StoppedReason, err = p.lastStoppedReason(ctx, c.ecs, res.TaskDefinitionARN); err != nil {
		return a, fmt.Errorf("activity of %s: %w", ResourceName(spec.Workflow, spec.Stage), err)
	}
	return a, nil
}

// listStageTasks lists the ARNs of the stage's tasks of desired status on
// the agent's cluster, every page, or only the first when onePage is 1.
func (p *Provisioner) listStageTasks(ctx context.Context, client *ecs.Client, taskDefinition string, desired ecstypes.DesiredStatus, onePage int) ([]string, error) {
	var arns []string
	var next *string
	for page := 1; ; page++ {
		out, err := client.ListTasks(ctx, stagetask.ListTasksInput(p.opts.Cluster, taskDefinition, desired, next))
		if err != nil {
			return arns, fmt.Errorf("list %s tasks of %s: %w", strings.ToLower(string(desired)), stagetask.Family(taskDefinition), err)
		}
		arns = append(arns, out.TaskArns...)
		if out.NextToken == nil || page == onePage {
			return arns, nil
		}
		next = out.NextToken
	}
}

// lastStoppedReason is the stoppedReason of the stage's most recently
// stopped task among the first 100 ListTasks returns (DescribeTasks takes
// at most 100), "" when there is none.
func (p *Provisioner) lastStoppedReason(ctx context.Context, client *ecs.Client, taskDefinition string) (string, error) {
	arns, err := p.listStageTasks(ctx, client, taskDefinition, ecstypes.DesiredStatusStopped, 1)
	if err != nil || len(arns) == 0 {
		return "", err
	}
	out, err := client.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(p.opts.Cluster), Tasks: arns[:min(len(arns), 100)]})
	if err != nil {
		return "", fmt.Errorf("describe stopped tasks of %s: %w", stagetask.Family(taskDefinition), err)
	}
	var last time.Time
	reason := ""
	for _, t := range out.Tasks {
		at := aws.ToTime(t.StoppedAt)
		if aws.ToString(t.StoppedReason) != "" && (reason == "" || at.After(last)) {
			last, reason = at, aws.ToString(t.StoppedReason)
		}
	}
	return reason, nil
}

// StartStageTask starts one task of the stage, as its stage function would
// (stagetask.RunTaskInput with the function's own configuration), and
// returns its ARN. Each call starts a task: the clientToken is new, so
// only the SDK's retries of this one call are made idempotent.
func (p *Provisioner) StartStageTask(ctx context.Context, spec StageSpec, res StageResources) (string, error) {
	name := ResourceName(spec.Workflow, spec.Stage)
	if spec.Batch != nil {
		return p.startStageJob(ctx, spec, res)
	}
	if res.TaskDefinitionARN == "" {
		return "", fmt.Errorf("start task of %s: no task definition recorded", name)
	}
	net, err := p.regionNetwork(ctx, spec.Region)
	if err != nil {
		return "", fmt.Errorf("start task of %s: %w", name, err)
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	in := stagetask.RunTaskInput(p.functionEnv(spec, res, net), 1, "cloudpipe-agent-"+hex.EncodeToString(b[:]))
	out, err := p.clients(spec.Region).ecs.RunTask(ctx, in)
	if err != nil {
		return "", fmt.Errorf("start task of %s: %w", name, err)
	}
	if len(out.Tasks) == 0 {
		var reasons []string
		for _, f := range out.Failures {
			reasons = append(reasons, aws.ToString(f.Reason)+" "+aws.ToString(f.Detail))
		}
		return "", fmt.Errorf("start task of %s: not started: %s", name, strings.TrimSpace(strings.Join(reasons, "; ")))
	}
	return aws.ToString(out.Tasks[0].TaskArn), nil
}

// Limits of DeadLetterWaiting.
const (
	// maxDeadLettered bounds one call, so that a queue filling as fast as it
	// is emptied cannot hold a pass forever; the next call moves the rest.
	maxDeadLettered = 1000
	// deadLetterVisibility hides a received message while it is copied: a
	// message whose copy or delete failed comes back after it, never lost.
	deadLetterVisibility = 60
	// maxMessageAttributes is SQS's limit per message:
	// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-message-metadata.html
	maxMessageAttributes = 10
)

// DeadLetterWaiting moves the messages waiting in the stage's work queue to
// its dead-letter queue and returns how many it moved: each is received,
// sent to the dead-letter queue with its body and attributes, plus the
// reason (contract.DeadLetterStranded) and why as cloudpipe.* attributes
// when the message has room for them, and then deleted. A message is sent
// before it is deleted, so a failure leaves it in one queue or, if the
// delete failed, in both (logged, with its key); never in neither.
func (p *Provisioner) DeadLetterWaiting(ctx context.Context, spec StageSpec, res StageResources, why string) (int, error) {
	name := ResourceName(spec.Workflow, spec.Stage)
	if res.QueueURL == "" || res.DLQURL == "" {
		return 0, fmt.Errorf("dead-letter %s: no queue or dead-letter queue recorded", name)
	}
	client := p.clients(spec.Region).sqs
	moved := 0
	for moved < maxDeadLettered {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:              aws.String(res.QueueURL),
			MaxNumberOfMessages:   int32(min(10, maxDeadLettered-moved)),
			MessageAttributeNames: []string{"All"},
			VisibilityTimeout:     deadLetterVisibility,
			// Long polling asks every SQS server, so an empty answer means
			// an empty queue (short polling samples a few); the queue's
			// own wait of 20 s would hold the pass.
			// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html
			WaitTimeSeconds: 1,
		})
		if err != nil {
			return moved, fmt.Errorf("dead-letter %s: receive: %w", name, err)
		}
		if len(out.Messages) == 0 {
			return moved, nil
		}
		for _, m := range out.Messages {
			if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{
				QueueUrl:          aws.String(res.DLQURL),
				MessageBody:       m.Body,
				MessageAttributes: deadLetterAttributes(m.MessageAttributes, spec, why),
			}); err != nil {
				return moved, fmt.Errorf("dead-letter %s: send: %w", name, err)
			}
			moved++
			if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(res.QueueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				key := ""
				if msg, derr := contract.DecodeMessage(aws.ToString(m.Body)); derr == nil {
					key = msg.Key
				}
				p.log.Error("dead-lettered message not deleted from the work queue: it may be dead-lettered or processed again",
					"stage", name, "key", key, "err", err)
				return moved, fmt.Errorf("dead-letter %s: delete: %w", name, err)
			}
		}
	}
	return moved, nil
}

// deadLetterAttributes are a moved message's attributes: its own, and the
// cloudpipe.* ones saying why, which take the four places SQS allows
// beyond six of the message's own (the stage function sends none).
func deadLetterAttributes(have map[string]sqstypes.MessageAttributeValue, spec StageSpec, why string) map[string]sqstypes.MessageAttributeValue {
	attrs := maps.Clone(have)
	if attrs == nil {
		attrs = map[string]sqstypes.MessageAttributeValue{}
	}
	ours := map[string]sqstypes.MessageAttributeValue{
		contract.AttrDeadLetterReason: stringAttribute(contract.DeadLetterStranded),
		contract.AttrDeadLetterError:  stringAttribute(cutRunes(why, 1024)),
		contract.AttrDeadLetterFlow:   stringAttribute(spec.Workflow),
		contract.AttrDeadLetterStage:  {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(spec.Stage))},
	}
	for k := range ours {
		delete(attrs, k)
	}
	if len(attrs)+len(ours) > maxMessageAttributes {
		return attrs
	}
	maps.Copy(attrs, ours)
	return attrs
}

// stringAttribute is a String message attribute; SQS refuses empty values.
func stringAttribute(s string) sqstypes.MessageAttributeValue {
	if s == "" {
		s = "-"
	}
	return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(s)}
}

// cutRunes returns s cut to at most n runes.
func cutRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// atoiOrZero reads a count SQS returns as a string; anything else is 0.
func atoiOrZero(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
