package awsrules_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

func createQueue(ctx context.Context, c *sqs.Client, name string) (string, error) {
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("create queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

func TestCreateQueueRefusesANameDeletedLessThan60SecondsAgo(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	_, cfg := newProxy(t, awsrules.Options{Now: clk.Now})
	c := sqs.NewFromConfig(cfg)
	name := testenv.UniqueName(t)

	url, err := createQueue(ctx, c, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: &url}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(59 * time.Second)
	_, err = createQueue(ctx, c, name)
	wantRefused(t, err, 400, "AWS.SimpleQueueService.QueueDeletedRecently", "")
	var typed *sqstypes.QueueDeletedRecently
	if !errors.As(err, &typed) {
		t.Errorf("err = %T %v, want *types.QueueDeletedRecently", err, err)
	}
	if _, err := createQueue(ctx, c, name+"-other"); err != nil {
		t.Errorf("another name was refused: %v", err)
	}

	clk.Advance(time.Second)
	if _, err := createQueue(ctx, c, name); err != nil {
		t.Errorf("60 s after the deletion: %v", err)
	}
}

// TestKumoReusesADeletedQueueNameAtOnce shows why the rule above is in the
// proxy: kumo itself accepts the name again right away.
func TestKumoReusesADeletedQueueNameAtOnce(t *testing.T) {
	ctx := context.Background()
	c := sqs.NewFromConfig(direct(testenv.KumoURL(t)))
	name := testenv.UniqueName(t)
	url, err := createQueue(ctx, c, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: &url}); err != nil {
		t.Fatal(err)
	}
	if _, err := createQueue(ctx, c, name); err != nil {
		t.Errorf("kumo refused the name at once (the proxy's rule may now be redundant): %v", err)
	}
}

// receiveOne sends a message to a new queue and receives it, returning the
// queue URL and receipt handle.
func receiveOne(ctx context.Context, t *testing.T, c *sqs.Client) (string, string) {
	t.Helper()
	url, err := createQueue(ctx, c, testenv.UniqueName(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("run")}); err != nil {
		t.Fatal(err)
	}
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("received %d messages, want 1", len(out.Messages))
	}
	return url, aws.ToString(out.Messages[0].ReceiptHandle)
}

func TestChangeMessageVisibilityRefusesATimeoutEndingPast12HoursAfterReceipt(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	_, cfg := newProxy(t, awsrules.Options{Now: clk.Now})
	c := sqs.NewFromConfig(cfg)
	url, handle := receiveOne(ctx, t, c)

	change := func(seconds int32) error {
		_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: &url, ReceiptHandle: &handle, VisibilityTimeout: seconds,
		})
		return err
	}
	clk.Advance(11 * time.Hour)
	wantRefused(t, change(3601), 400, "InvalidParameterValue",
		"Value 3601 for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]")
	// Ending exactly 12 hours after the receipt is within the limit.
	if err := change(3600); err != nil {
		t.Errorf("a timeout ending at 12 h was refused: %v", err)
	}
	clk.Advance(30 * time.Minute)
	if err := change(1800); err != nil {
		t.Errorf("a timeout ending at 12 h, later, was refused: %v", err)
	}
	wantRefused(t, change(1801), 400, "InvalidParameterValue", "")
}
