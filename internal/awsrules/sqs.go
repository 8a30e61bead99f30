package awsrules

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// queueNameReuseWait is how long SQS refuses a deleted queue's name:
// "After you delete a queue, you must wait at least 60 seconds before
// creating a queue with the same name."
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteQueue.html
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html
// kumo lets the name be reused at once.
const queueNameReuseWait = 60 * time.Second

// maxVisibility bounds a received message's visibility: "The maximum is 12
// hours ... If you try to extend the visibility timeout beyond the maximum,
// your request is rejected", counted from the ReceiveMessage.
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html
// kumo accepts any timeout at any age.
const maxVisibility = 12 * time.Hour

// sqsRequest holds the fields of the SQS JSON-protocol requests the rules
// read.
type sqsRequest struct {
	QueueName         string
	QueueURL          string `json:"QueueUrl"`
	ReceiptHandle     string
	VisibilityTimeout int64
}

func decodeSQS(body []byte) (sqsRequest, bool) {
	var req sqsRequest
	return req, json.Unmarshal(body, &req) == nil
}

// queueName is the name a queue URL ends with.
func queueName(queueURL string) string { return path.Base(queueURL) }

// checkQueueDeletedRecently refuses CreateQueue of a name DeleteQueue freed
// less than queueNameReuseWait ago, with the error the SQS API reference
// lists for CreateQueue.
func checkQueueDeletedRecently(p *Proxy, c call) *faultproxy.APIError {
	req, ok := decodeSQS(c.body)
	if !ok {
		return nil // kumo answers the malformed request
	}
	p.mu.Lock()
	at, found := p.deleted[req.QueueName]
	p.mu.Unlock()
	if !found || c.now.Sub(at) >= queueNameReuseWait {
		return nil
	}
	return &faultproxy.APIError{
		Status:  http.StatusBadRequest,
		Code:    "AWS.SimpleQueueService.QueueDeletedRecently",
		Type:    "QueueDeletedRecently",
		Message: "You must wait 60 seconds after deleting a queue before you can create another with the same name.",
	}
}

// noteQueueDeleted remembers when a DeleteQueue succeeded.
func noteQueueDeleted(p *Proxy, c call, a *answer) {
	req, ok := decodeSQS(c.body)
	if !ok || a.status != http.StatusOK {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deleted[queueName(req.QueueURL)] = c.now
}

// noteReceived remembers when each receipt handle was received: the 12
// hours of maxVisibility count from then.
func noteReceived(p *Proxy, c call, a *answer) {
	var out struct {
		Messages []struct{ ReceiptHandle string }
	}
	if a.status != http.StatusOK || json.Unmarshal(a.body, &out) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range out.Messages {
		p.received[m.ReceiptHandle] = c.now
	}
}

// forgetReceived drops a deleted message's receipt handle, so a long test
// does not grow the map without bound.
func forgetReceived(p *Proxy, c call, a *answer) {
	req, ok := decodeSQS(c.body)
	if !ok || a.status != http.StatusOK {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.received, req.ReceiptHandle)
}

// checkVisibilityLimit refuses a ChangeMessageVisibility whose new timeout
// would end more than maxVisibility after the message was received, with
// the code and message SQS gives. A receipt handle the proxy did not see
// received passes: it cannot know its age.
func checkVisibilityLimit(p *Proxy, c call) *faultproxy.APIError {
	req, ok := decodeSQS(c.body)
	if !ok {
		return nil
	}
	p.mu.Lock()
	at, found := p.received[req.ReceiptHandle]
	p.mu.Unlock()
	end := c.now.Add(time.Duration(req.VisibilityTimeout) * time.Second)
	if !found || !end.After(at.Add(maxVisibility)) {
		return nil
	}
	limit := int64(maxVisibility / time.Second)
	return &faultproxy.APIError{
		Status: http.StatusBadRequest,
		Code:   "InvalidParameterValue",
		Message: fmt.Sprintf("Value %d for parameter VisibilityTimeout is invalid. Reason: "+
			"Total VisibilityTimeout for the message is beyond the limit [%d seconds]", req.VisibilityTimeout, limit),
	}
}
