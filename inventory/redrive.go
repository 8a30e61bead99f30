package inventory

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cloudpipe/cloudpipe/provision"
)

// The redrive journal: one small object per dead letter that `agent
// redrive` sent back to its work queue, written after the send and before
// the dead letter is deleted, so that a redrive interrupted between the two
// recognises the dead letter when it receives it again and only deletes it
// (docs/design.md, "Redrive"). It lives under the inventory's prefix, which
// the agent may already read, write and delete.
const redrivePrefix = provision.InventoryPrefix + "redrive/"

// RedriveMark records one dead letter moved back to its work queue.
type RedriveMark struct {
	Workflow string `json:"workflow"`
	Stage    int    `json:"stage"`
	// DeadLetter is the dead letter's SQS MessageId, the same at every
	// receive; WorkMessage the id of the work message sent for it.
	DeadLetter  string    `json:"dead_letter"`
	WorkMessage string    `json:"work_message"`
	Object      string    `json:"object"` // s3://bucket/key the message names
	MovedAt     time.Time `json:"moved_at"`
}

// redriveStagePrefix is where the marks of one stage are kept.
func redriveStagePrefix(workflow string, stage int) string {
	return redrivePrefix + workflow + "/" + strconv.Itoa(stage) + "/"
}

// redriveKey is where the mark of one dead letter is kept. SQS message ids
// are UUIDs, safe in a key.
func redriveKey(workflow string, stage int, deadLetter string) string {
	return redriveStagePrefix(workflow, stage) + deadLetter + ".json"
}

// ReadRedriveMark returns the mark of a dead letter, or ErrNotFound when it
// was never moved.
func (inv *Store) ReadRedriveMark(ctx context.Context, workflow string, stage int, deadLetter string) (*RedriveMark, error) {
	var m RedriveMark
	if _, err := inv.get(ctx, redriveKey(workflow, stage, deadLetter), &m); err != nil {
		return nil, fmt.Errorf("read redrive mark of %s: %w", deadLetter, err)
	}
	return &m, nil
}

// WriteRedriveMark records m. It only creates (If-None-Match): a mark that
// exists already says the same thing, so losing that race is success.
func (inv *Store) WriteRedriveMark(ctx context.Context, m RedriveMark) error {
	_, err := inv.put(ctx, redriveKey(m.Workflow, m.Stage, m.DeadLetter), m, "")
	if err != nil && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("write redrive mark of %s: %w", m.DeadLetter, err)
	}
	return nil
}

// PruneRedriveMarks deletes the stage's marks written before before and
// returns how many. A mark is needed only while its dead letter may still
// be received, and SQS keeps a message at most 14 days
// (MessageRetentionPeriod, https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SetQueueAttributes.html).
func (inv *Store) PruneRedriveMarks(ctx context.Context, workflow string, stage int, before time.Time) (int, error) {
	n := 0
	p := s3.NewListObjectsV2Paginator(inv.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(inv.bucket),
		Prefix: aws.String(redriveStagePrefix(workflow, stage)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("list redrive marks of %s stage %d: %w", workflow, stage, err)
		}
		for _, o := range page.Contents {
			if !aws.ToTime(o.LastModified).Before(before) {
				continue
			}
			if _, err := inv.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(inv.bucket), Key: o.Key}); err != nil {
				return n, fmt.Errorf("delete redrive mark %s: %w", aws.ToString(o.Key), err)
			}
			n++
		}
	}
	return n, nil
}
