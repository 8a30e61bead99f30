package lambda

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/backoff"
)

// SQS batch limits: at most 10 entries, and all bodies and attributes of one
// SendMessageBatch together at most the size of one message.
const (
	maxBatchEntries = 10
	maxBatchBytes   = MaxMessageBytes
)

// Retries of the entries of a batch that SQS failed without blaming the
// sender (an internal error): the SDK retries whole calls, not entries. The
// waits between attempts are 100ms, 200ms and 400ms, each jittered down to
// as little as half; sendMaxDelay bounds them should sendAttempts grow.
const (
	sendAttempts  = 4
	sendBaseDelay = 100 * time.Millisecond
	sendMaxDelay  = time.Second
)

// outgoing is one message to send.
type outgoing struct {
	body  string
	attrs map[string]sqstypes.MessageAttributeValue
}

func (o outgoing) size() int {
	n := len(o.body)
	for k, v := range o.attrs {
		n += len(k) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue))
	}
	return n
}

// refusal is a message SQS refused for good (a sender fault).
type refusal struct {
	index int // into the slice given to send
	err   error
}

// send sends msgs to the queue at url in batches, retrying the entries SQS
// failed through no fault of the sender. It returns the indexes of the
// messages sent and the refusals; err reports messages neither sent nor
// refused (the call itself failed after the SDK's retries, or entries kept
// failing), which a retry of the event may still send.
func (h *Handler) send(ctx context.Context, url string, msgs []outgoing) (sent []int, refused []refusal, err error) {
	pending := make([]int, len(msgs))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 1; ; attempt++ {
		var again []int
		for _, batch := range batches(msgs, pending) {
			entries := make([]sqstypes.SendMessageBatchRequestEntry, len(batch))
			for i, idx := range batch {
				entries[i] = sqstypes.SendMessageBatchRequestEntry{
					Id:                aws.String(strconv.Itoa(i)),
					MessageBody:       aws.String(msgs[idx].body),
					MessageAttributes: msgs[idx].attrs,
				}
			}
			out, err := h.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
			if err != nil {
				// The whole call failed after the SDK's retries; the queue is
				// likely unreachable, so the other batches would fail too.
				return sent, refused, fmt.Errorf("send message batch: %w", err)
			}
			for _, s := range out.Successful {
				if i, ok := entryIndex(s.Id, batch); ok {
					sent = append(sent, batch[i])
				}
			}
			for _, f := range out.Failed {
				i, ok := entryIndex(f.Id, batch)
				if !ok {
					continue
				}
				ferr := fmt.Errorf("%s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
				if f.SenderFault {
					refused = append(refused, refusal{batch[i], ferr})
					continue
				}
				h.log.Debug("message entry failed, will retry", "attempt", attempt, "code", aws.ToString(f.Code))
				again = append(again, batch[i])
			}
		}
		if len(again) == 0 {
			return sent, refused, nil
		}
		if attempt == sendAttempts {
			return sent, refused, fmt.Errorf("send messages: %d still failing after %d attempts", len(again), attempt)
		}
		// Exponential backoff with jitter, so concurrent functions do not
		// retry in step.
		if err := backoff.Sleep(ctx, backoff.Exponential(attempt, sendBaseDelay, sendMaxDelay)); err != nil {
			return sent, refused, fmt.Errorf("send messages: %w", err)
		}
		pending = again
	}
}

// entryIndex maps a batch entry Id back to its position in batch.
func entryIndex(id *string, batch []int) (int, bool) {
	i, err := strconv.Atoi(aws.ToString(id))
	return i, err == nil && i >= 0 && i < len(batch)
}

// batches splits the messages msgs[idx] for idx in pending into batches that
// SendMessageBatch accepts.
func batches(msgs []outgoing, pending []int) [][]int {
	var out [][]int
	var cur []int
	size := 0
	for _, idx := range pending {
		n := msgs[idx].size()
		if len(cur) == maxBatchEntries || (len(cur) > 0 && size+n > maxBatchBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, idx)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// enqueue sends one work message per job. It returns the jobs queued, the
// jobs SQS refused for good (bound for the dead-letter queue) and an error
// for jobs that could not be sent now.
func (h *Handler) enqueue(ctx context.Context, work []job) (queued []job, refused []deadJob, err error) {
	if len(work) == 0 {
		return nil, nil, nil
	}
	msgs := make([]outgoing, len(work))
	for i, j := range work {
		msgs[i] = outgoing{body: j.body}
	}
	sent, refusals, err := h.send(ctx, h.cfg.QueueURL, msgs)
	for _, i := range sent {
		queued = append(queued, work[i])
	}
	for _, r := range refusals {
		refused = append(refused, deadJob{work[r.index], ReasonQueueRejected, r.err})
	}
	if err != nil {
		err = fmt.Errorf("queue %d of %d messages: %w", len(work)-len(queued)-len(refused), len(work), err)
	}
	return queued, refused, err
}

// sendDeadLetters sends each of dead to the dead-letter queue with its reason
// and error as message attributes, so that no record is dropped silently.
// A dead letter that the dead-letter queue itself refuses is logged at Error
// level with its bucket and key: there is nowhere else to put it.
func (h *Handler) sendDeadLetters(ctx context.Context, dead []deadJob) error {
	if len(dead) == 0 {
		return nil
	}
	msgs := make([]outgoing, len(dead))
	for i, d := range dead {
		msgs[i] = outgoing{
			body: deadLetterBody(d.job),
			attrs: map[string]sqstypes.MessageAttributeValue{
				AttrReason:   stringAttr(d.reason),
				AttrError:    stringAttr(errorSummary(d.err)),
				AttrWorkflow: stringAttr(h.cfg.Workflow),
				AttrStage:    {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(h.cfg.Stage))},
			},
		}
		h.log.Warn("record dead-lettered", "reason", d.reason, "err", d.err)
	}
	_, refusals, err := h.send(ctx, h.cfg.DLQURL, msgs)
	for _, r := range refusals {
		d := dead[r.index]
		h.log.Error("dead letter refused", "reason", d.reason, "bucket", d.job.msg.Bucket, "key", d.job.msg.Key, "err", r.err)
	}
	if err != nil {
		return fmt.Errorf("dead-letter %d records: %w", len(dead), err)
	}
	return nil
}

// stringAttr is a String message attribute; SQS refuses empty values, so an
// empty string becomes "-".
func stringAttr(s string) sqstypes.MessageAttributeValue {
	if s == "" {
		s = "-"
	}
	return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(s)}
}
