package awsrules_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// runtimeHandler plays a function's code through the Lambda Runtime API at
// the proxy, as lambda.Start does: it polls for an invocation and answers
// each with fail(attempt) ? an error : a response. It records the payload
// and request ID of every invocation.
type runtimeHandler struct {
	base string // http://PROXY/_runtime/FUNCTION/2018-06-01/runtime/invocation/
	fail func(attempt int) bool
	// before, if set, runs before an invocation is answered.
	before func()

	mu   sync.Mutex
	seen []invocation
}

type invocation struct {
	id      string
	payload string
}

// startHandler starts a handler of function fn polling the Runtime API at
// base (the proxy's, or kumo's) until the test ends, and waits until kumo
// knows it polls.
func startHandler(t testing.TB, base string, cfg aws.Config, fn string, fail func(attempt int) bool) *runtimeHandler {
	t.Helper()
	h := &runtimeHandler{base: base + "/_runtime/" + fn + "/2018-06-01/runtime/invocation/", fail: fail}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			h.once(ctx)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	// kumo hands an event only to a function that has a handler polling:
	// a synchronous invocation answers once it does.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := lambda.NewFromConfig(cfg).Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: []byte(`{"ready":true}`)})
		if err == nil {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler of %s never polled: %v", fn, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// once takes one invocation and answers it.
func (h *runtimeHandler) once(ctx context.Context) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"next", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	payload, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		return
	}
	h.mu.Lock()
	attempt := 0
	for _, s := range h.seen {
		if s.payload == string(payload) {
			attempt++
		}
	}
	h.seen = append(h.seen, invocation{id, string(payload)})
	h.mu.Unlock()
	if h.before != nil {
		h.before()
	}
	url, body := h.base+id+"/response", `{"ok":true}`
	if string(payload) != `{"ready":true}` && h.fail(attempt) {
		url, body = h.base+id+"/error", `{"errorMessage":"send message batch: AccessDenied","errorType":"wrapError"}`
	}
	post, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if resp, err := http.DefaultClient.Do(post); err == nil {
		resp.Body.Close()
	}
}

// attempts returns the request IDs of the invocations with payload.
func (h *runtimeHandler) attempts(payload string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for _, s := range h.seen {
		if s.payload == payload {
			ids = append(ids, s.id)
		}
	}
	return ids
}

// s3Event is an S3 event as S3 invokes a function with.
func s3Event(bucket, key string) string {
	return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-01-02T03:04:05.000Z",`+
		`"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":%q},"object":{"key":%q,"size":3,"eTag":"e1"}}}]}`, bucket, key)
}

// record is the invocation record Lambda sends a destination.
type record struct {
	Version        string
	Timestamp      string
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionARN            string `json:"functionArn"`
		Condition              string
		ApproximateInvokeCount int
	}
	RequestPayload  json.RawMessage
	ResponseContext struct {
		StatusCode      int
		ExecutedVersion string
		FunctionError   string
	}
	ResponsePayload struct{ ErrorMessage string }
}

// drain receives the queue's messages until it has been empty for quiet.
func drain(t *testing.T, cfg aws.Config, url string, quiet time.Duration) []string {
	t.Helper()
	q := sqs.NewFromConfig(cfg)
	var bodies []string
	last := time.Now()
	for time.Since(last) < quiet {
		out, err := q.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
			last = time.Now()
			if _, err := q.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return bodies
}

// waitMessages receives from the queue until it has got n messages or 20 s
// passed, then for a further second, so that an extra one shows.
func waitMessages(t *testing.T, cfg aws.Config, url string, n int) []string {
	t.Helper()
	var bodies []string
	deadline := time.Now().Add(20 * time.Second)
	for len(bodies) < n && time.Now().Before(deadline) {
		bodies = append(bodies, drain(t, cfg, url, time.Second)...)
	}
	return append(bodies, drain(t, cfg, url, time.Second)...)
}

// TestAsyncInvocationRetriesThenSendsTheRecordToTheDestination: an event
// the function fails is run again as the configuration says (by default
// twice), and then its invocation record goes to the on-failure queue,
// once, sent as the function's role; an event the function handles on a
// retry sends nothing.
func TestAsyncInvocationRetriesThenSendsTheRecordToTheDestination(t *testing.T) {
	tests := []struct {
		name     string
		retries  *int32 // nil: Lambda's default, 2
		failures int    // attempts that fail; 99: every one
		attempts int
		record   bool
	}{
		{"every attempt fails", nil, 99, 3, true},
		{"no retries", aws.Int32(0), 99, 1, true},
		{"one retry", aws.Int32(1), 99, 2, true},
		{"the second attempt succeeds", nil, 1, 2, false},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			ctx := t.Context()
			name := testenv.UniqueName(t)
			dlqARN := queueARN(name + "-dlq")
			p, cfg := fnRoleProxy(t, awsrules.Options{AsyncRetryDelay: 10 * time.Millisecond},
				map[string]json.RawMessage{name: doc(sendTo(dlqARN))})
			dlq := mustCreateQueue(t, cfg, name+"-dlq")
			createFunction(t, cfg, name, name)
			lc := lambda.NewFromConfig(cfg)
			if _, err := lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(name),
				MaximumRetryAttempts: tt.retries, DestinationConfig: onFailure(dlqARN)}); err != nil {
				t.Fatal(err)
			}
			h := startHandler(t, p.URL(), cfg, name, func(attempt int) bool { return attempt < tt.failures })

			event := s3Event(name+"-in", "in/a+b.txt")
			if _, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), InvocationType: lambdatypes.InvocationTypeEvent,
				Payload: []byte(event)}); err != nil {
				t.Fatal(err)
			}
			want := 0
			if tt.record {
				want = 1
			}
			bodies := waitMessages(t, cfg, dlq, want)
			ids := h.attempts(event)
			if len(ids) != tt.attempts {
				t.Errorf("the function ran the event %d times, want %d", len(ids), tt.attempts)
			}
			if len(bodies) != want {
				t.Fatalf("%d records in the destination, want %d: %q", len(bodies), want, bodies)
			}
			if !tt.record {
				return
			}
			var rec record
			if err := json.Unmarshal([]byte(bodies[0]), &rec); err != nil {
				t.Fatalf("record %s: %v", bodies[0], err)
			}
			rc := rec.RequestContext
			if rec.Version != "1.0" || rc.Condition != "RetriesExhausted" || rc.ApproximateInvokeCount != tt.attempts ||
				rc.RequestID != ids[0] || rc.FunctionARN != "arn:aws:lambda:us-east-1:"+kumoAccount+":function:"+name+":$LATEST" {
				t.Errorf("record %s: want version 1.0, RetriesExhausted after %d attempts, the first attempt's request ID %s and the function's $LATEST", bodies[0], tt.attempts, ids[0])
			}
			if _, err := time.Parse("2006-01-02T15:04:05.000Z", rec.Timestamp); err != nil {
				t.Errorf("timestamp %q: %v", rec.Timestamp, err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, rec.RequestPayload); err != nil || compact.String() != event {
				t.Errorf("requestPayload %s, want the event %s", rec.RequestPayload, event)
			}
			if rec.ResponseContext.StatusCode != 200 || rec.ResponseContext.FunctionError != "Unhandled" || rec.ResponseContext.ExecutedVersion != "$LATEST" ||
				rec.ResponsePayload.ErrorMessage != "send message batch: AccessDenied" {
				t.Errorf("record's response %+v %+v, want the function's error", rec.ResponseContext, rec.ResponsePayload)
			}
			if got := p.Report().Principals[name]; got.Authorized != 2 || len(got.Denied) != 0 {
				t.Errorf("the function's role: %+v; want the configuration's check and the record's SendMessage authorized", got)
			}
		})
	}
}

// TestAsyncInvocationOlderThanItsMaximumAgeGoesToTheDestination: an event
// that failed and is past MaximumEventAgeInSeconds is not retried; its
// record says EventAgeExceeded.
func TestAsyncInvocationOlderThanItsMaximumAgeGoesToTheDestination(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	dlqARN := queueARN(name + "-dlq")
	clk := newClock()
	p, cfg := fnRoleProxy(t, awsrules.Options{Now: clk.Now, AsyncRetryDelay: 10 * time.Millisecond},
		map[string]json.RawMessage{name: doc(sendTo(dlqARN))})
	dlq := mustCreateQueue(t, cfg, name+"-dlq")
	createFunction(t, cfg, name, name)
	lc := lambda.NewFromConfig(cfg)
	if _, err := lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(name),
		MaximumEventAgeInSeconds: aws.Int32(60), DestinationConfig: onFailure(dlqARN)}); err != nil {
		t.Fatal(err)
	}
	h := startHandler(t, p.URL(), cfg, name, func(int) bool { return true })
	h.before = func() { clk.Advance(61 * time.Second) } // the first attempt ends past the event's age
	event := s3Event(name+"-in", "old.txt")
	if _, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), InvocationType: lambdatypes.InvocationTypeEvent,
		Payload: []byte(event)}); err != nil {
		t.Fatal(err)
	}
	bodies := waitMessages(t, cfg, dlq, 1)
	if len(bodies) != 1 {
		t.Fatalf("%d records, want 1", len(bodies))
	}
	var rec record
	if err := json.Unmarshal([]byte(bodies[0]), &rec); err != nil || rec.RequestContext.Condition != "EventAgeExceeded" || rec.RequestContext.ApproximateInvokeCount != 1 {
		t.Errorf("record %s (%v), want EventAgeExceeded after 1 attempt", bodies[0], err)
	}
	if n := len(h.attempts(event)); n != 1 {
		t.Errorf("the event ran %d times, want once", n)
	}
}

// TestAsyncInvocationRecordTheRoleMayNotSendIsLost: a role that lost the
// permission after the configuration was accepted cannot send the record;
// Lambda counts a delivery failure and the record is gone.
func TestAsyncInvocationRecordTheRoleMayNotSendIsLost(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	dlqARN := queueARN(name + "-dlq")
	p, cfg := fnRoleProxy(t, awsrules.Options{AsyncRetryDelay: 10 * time.Millisecond}, nil)
	dlq := mustCreateQueue(t, cfg, name+"-dlq")
	admin := iam.NewFromConfig(cfg)
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	if _, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("p"),
		PolicyDocument: aws.String(string(doc(sendTo(dlqARN))))}); err != nil {
		t.Fatal(err)
	}
	createFunction(t, cfg, name, name)
	lc := lambda.NewFromConfig(cfg)
	if _, err := lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(name),
		MaximumRetryAttempts: aws.Int32(0), DestinationConfig: onFailure(dlqARN)}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("p")}); err != nil {
		t.Fatal(err)
	}
	startHandler(t, p.URL(), cfg, name, func(int) bool { return true })
	if _, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), InvocationType: lambdatypes.InvocationTypeEvent,
		Payload: []byte(s3Event(name+"-in", "lost.txt"))}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.DestinationDeliveryFailures() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := p.DestinationDeliveryFailures(); n != 1 {
		t.Errorf("%d delivery failures, want 1", n)
	}
	if bodies := drain(t, cfg, dlq, time.Second); len(bodies) != 0 {
		t.Errorf("the destination got %q, which the role may not send", bodies)
	}
	if denied := p.Report().Principals[name].Denied; len(denied) != 1 || !strings.HasPrefix(denied[0], "sqs:SendMessage on "+dlqARN) {
		t.Errorf("denials of the role %q, want its SendMessage to the destination", denied)
	}
}

// handled is how many invocations the handler has taken.
func (h *runtimeHandler) handled() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// BenchmarkAsyncInvocation measures what playing Lambda's asynchronous path
// costs: events a second that a handler takes and answers, polling kumo's
// Runtime API directly or through the proxy (the invocations go through
// the proxy both times, as S3's do in the demo).
func BenchmarkAsyncInvocation(b *testing.B) {
	for _, via := range []string{"kumo", "rules"} {
		b.Run("runtime="+via, func(b *testing.B) {
			p, err := awsrules.New(testenv.KumoURL(b), awsrules.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			cfg := direct(p.URL())
			name := testenv.UniqueName(b)
			createFunction(b, cfg, name, name)
			base := p.URL()
			if via == "kumo" {
				base = testenv.KumoURL(b)
			}
			h := startHandler(b, base, cfg, name, func(int) bool { return false })
			lc := lambda.NewFromConfig(cfg)
			ready := h.handled()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				// kumo queues at most 1024 events a function.
				for i-(h.handled()-ready) > 500 {
					time.Sleep(time.Millisecond)
				}
				if _, err := lc.Invoke(b.Context(), &lambda.InvokeInput{FunctionName: aws.String(name), InvocationType: lambdatypes.InvocationTypeEvent,
					Payload: []byte(s3Event(name, fmt.Sprint(i)))}); err != nil {
					b.Fatal(err)
				}
			}
			for h.handled()-ready < b.N {
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
