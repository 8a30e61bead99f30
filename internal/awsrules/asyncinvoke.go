package awsrules

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// Asynchronous invocation as Lambda plays it, where kumo does not. Lambda
// queues an event (an Invoke with InvocationType Event, such as S3's), runs
// the function, and when the function returns an error runs it again, up
// to MaximumRetryAttempts more times (2 by default), then sends the event's
// invocation record to the on-failure destination, as the function's
// execution role; an event older than MaximumEventAgeInSeconds goes there
// too, with condition EventAgeExceeded.
// https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html
// https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
//
// kumo retries a failed event twice on its own and then drops it. So the
// handlers' Runtime API goes through the proxy (AWS_LAMBDA_RUNTIME_API =
// the proxy's address + /_runtime/FUNCTION): the proxy notes each event
// Invoke accepts, sees which a handler takes (invocation/next) and how the
// attempt ends; it answers kumo a failed attempt of an event as a success,
// so kumo retries nothing itself, and retries the event through kumo's
// asynchronous Invoke, as configured, or sends its record to the
// destination. Not played: a handler that never answers (kumo's function
// timeout; kumo retries those itself and drops them), and on-success
// destinations (refused at configuration, see checkDestination).

// DefaultAsyncRetryDelay is the default Options.AsyncRetryDelay.
const DefaultAsyncRetryDelay = 100 * time.Millisecond

// maxPendingEvents bounds the events the proxy remembers, should handlers
// poll kumo directly (their attempts then never reach the proxy); kumo
// queues at most 1024 a function.
const maxPendingEvents = 10000

// asyncEvent is one event Invoke accepted and the proxy has not settled.
type asyncEvent struct {
	function, region string
	payload          []byte
	accepted         time.Time // on the proxy's clock: the event's age
	seen             time.Time // on the wall clock: to forget events no handler took
	attempts         int       // attempts that ended in a function error
	requestID        string    // the first attempt's, which the record names
	running          bool      // a handler holds it
}

// invoke forwards Invoke and, for an asynchronous one, notes the event
// before kumo can hand it to a handler.
func invoke(p *Proxy, c call, out []byte) (*answer, error) {
	if c.r.Header.Get("X-Amz-Invocation-Type") != "Event" {
		return p.forward(c.r, out)
	}
	region := regionOf(c)
	if region == "" {
		region = defaultRegion
	}
	ev := &asyncEvent{function: pathFunction(c.r), region: region, payload: out, accepted: c.now, seen: time.Now()}
	p.acceptEvent(ev)
	a, err := p.forward(c.r, out)
	if err != nil || !ok2xx(a) {
		p.forgetEvent(ev)
	}
	return a, err
}

func (p *Proxy) acceptEvent(ev *asyncEvent) {
	l := &p.lambda
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = slices.DeleteFunc(l.events, func(e *asyncEvent) bool {
		return !e.running && time.Since(e.seen) > maxMaxEventAge
	})
	if len(l.events) >= maxPendingEvents {
		l.events = slices.Delete(l.events, 0, len(l.events)-maxPendingEvents+1)
	}
	l.events = append(l.events, ev)
}

func (p *Proxy) forgetEvent(ev *asyncEvent) {
	l := &p.lambda
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = slices.DeleteFunc(l.events, func(e *asyncEvent) bool { return e == ev })
}

// takeEvent notes that a handler took the invocation id of function with
// payload: an event's attempt, if one waits with that payload (kumo hands
// out a function's events one at a time, in order, so events with equal
// payloads cannot be told apart and need not be).
func (p *Proxy) takeEvent(function, id string, payload []byte) {
	l := &p.lambda
	l.mu.Lock()
	defer l.mu.Unlock()
	i := slices.IndexFunc(l.events, func(e *asyncEvent) bool {
		return !e.running && e.function == function && bytes.Equal(e.payload, payload)
	})
	if i < 0 || id == "" {
		return // a synchronous invocation
	}
	ev := l.events[i]
	ev.running = true
	if ev.requestID == "" {
		ev.requestID = id
	}
	if l.running == nil {
		l.running = map[string]*asyncEvent{}
	}
	l.running[id] = ev
}

// endAttempt returns the event whose attempt id ended, nil for a
// synchronous invocation; ok says the function succeeded, which settles the
// event.
func (p *Proxy) endAttempt(id string, ok bool) *asyncEvent {
	l := &p.lambda
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := l.running[id]
	if ev == nil {
		return nil
	}
	delete(l.running, id)
	ev.running = false
	if ok {
		l.events = slices.DeleteFunc(l.events, func(e *asyncEvent) bool { return e == ev })
	} else {
		ev.attempts++
	}
	return ev
}

// isRuntimeAPI reports a request of a handler to its Runtime API.
func isRuntimeAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/_runtime/") }

// serveRuntime forwards a handler's Runtime API request
// (/_runtime/FUNCTION/2018-06-01/runtime/invocation/...) to kumo, with the
// handler's context, so that a poll ends with its handler, and plays an
// event's failed attempt as Lambda does.
func (p *Proxy) serveRuntime(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // _runtime FN 2018-06-01 runtime invocation ID|next [response|error]
	var fn, id, verb string
	if len(parts) >= 6 && parts[4] == "invocation" {
		fn, id = parts[1], parts[5]
		if len(parts) >= 7 {
			verb = parts[6]
		}
	}
	var a *answer
	switch {
	case id == "next" && r.Method == http.MethodGet:
		a, err = p.forwardRuntime(r, r.URL.Path, body)
		if err == nil && a.status == http.StatusOK {
			p.takeEvent(fn, a.header.Get("Lambda-Runtime-Aws-Request-Id"), a.body)
		}
	case verb == "error" && r.Method == http.MethodPost:
		ev := p.endAttempt(id, false)
		if ev == nil {
			a, err = p.forwardRuntime(r, r.URL.Path, body)
			break
		}
		// kumo would retry the event on its own schedule and then drop
		// it: to kumo the attempt succeeded, and the proxy goes on.
		a, err = p.forwardRuntime(r, strings.TrimSuffix(r.URL.Path, "/error")+"/response", []byte("null"))
		p.afterFailure(ev, body, r.Header.Get("Lambda-Runtime-Function-Error-Type"))
	case verb == "response" && r.Method == http.MethodPost:
		p.endAttempt(id, true)
		a, err = p.forwardRuntime(r, r.URL.Path, body)
	default:
		a, err = p.forwardRuntime(r, r.URL.Path, body)
	}
	if err != nil {
		if r.Context().Err() == nil {
			http.Error(w, "awsrules: forward: "+err.Error(), http.StatusBadGateway)
		}
		return
	}
	h := w.Header()
	for k, vs := range a.header {
		if !faultproxy.IsHopByHop(http.CanonicalHeaderKey(k)) {
			h[k] = vs
		}
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// forwardRuntime sends a Runtime API request to the target at path, ending
// with the handler's request (a long poll of a handler gone must not take
// the next event).
func (p *Proxy) forwardRuntime(r *http.Request, path string, body []byte) (*answer, error) {
	in := r.Clone(r.Context())
	in.URL.Path, in.URL.RawPath = path, ""
	resp, err := p.opts.Transport.RoundTrip(faultproxy.Outbound(in, p.target, body))
	if err != nil {
		return nil, fmt.Errorf("round trip: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// afterFailure retries ev after a failed attempt, or, its retries spent or
// its age reached, sends its record to the destination. response is what
// the handler reported (its error object).
func (p *Proxy) afterFailure(ev *asyncEvent, response []byte, errorType string) {
	cfg := p.invokeConfigOf(ev.region, ev.function)
	condition := ""
	switch {
	case ev.attempts > cfg.retryAttempts():
		condition = "RetriesExhausted"
	case p.opts.Now().Sub(ev.accepted) >= cfg.eventAge():
		condition = "EventAgeExceeded"
	}
	if condition != "" {
		p.background(func(ctx context.Context) { p.deliverFailure(ctx, ev, condition, response) })
		return
	}
	// Lambda waits about a minute before the second attempt and two
	// before the third; the proxy waits AsyncRetryDelay, then twice that.
	delay := p.opts.AsyncRetryDelay << (ev.attempts - 1)
	p.background(func(ctx context.Context) {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := p.reinvoke(ctx, ev); err != nil {
			// The event cannot be queued again: it must not vanish.
			msg, _ := json.Marshal(map[string]string{"errorMessage": "awsrules: retry not queued: " + err.Error(), "errorType": errorType})
			p.deliverFailure(ctx, ev, "RetriesExhausted", msg)
		}
	})
}

// background runs fn on a goroutine Close waits for, with a context Close
// cancels; after Close it runs nothing.
func (p *Proxy) background(fn func(ctx context.Context)) {
	p.lambda.mu.Lock()
	defer p.lambda.mu.Unlock()
	select {
	case <-p.closing:
		return
	default:
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-p.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		fn(ctx)
	}()
}

// reinvoke queues ev again with kumo's asynchronous Invoke, as the Lambda
// service (not through the proxy's own rules: the event stays the one
// already noted).
func (p *Proxy) reinvoke(ctx context.Context, ev *asyncEvent) error {
	u := *p.target
	u.Path = strings.TrimSuffix(u.Path, "/") + "/2015-03-31/functions/" + url.PathEscape(ev.function) + "/invocations"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(ev.payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	req.Header.Set("Authorization", serviceAuthorization("lambda"))
	resp, err := p.opts.Transport.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("invoke %s: %s: %s", ev.function, resp.Status, b)
	}
	return nil
}

// serviceAuthorization is the Authorization header of a request the proxy
// makes as an AWS service (kumo's own requests look the same): kumo checks
// no signature but routes by the credential scope's service.
func serviceAuthorization(service string) string {
	return "AWS4-HMAC-SHA256 Credential=awsrules/19700101/" + defaultRegion + "/" + service + "/aws4_request, SignedHeaders=host, Signature=0"
}

// invocationRecord is what Lambda sends a destination about an event, in
// the format of "Example invocation record":
// https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
type invocationRecord struct {
	Version        string `json:"version"`
	Timestamp      string `json:"timestamp"`
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionARN            string `json:"functionArn"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError,omitempty"`
	} `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload,omitempty"`
}

// deliverFailure settles ev: it sends ev's record to the function's
// on-failure destination, or drops the event when there is none, as Lambda
// discards it. The record goes as the function's execution role, through
// the proxy, so IAM and the region rules judge it: "Lambda uses the
// function's execution role" to send it. A record the destination refuses
// counts in DestinationDeliveryFailures and is lost, as on AWS.
func (p *Proxy) deliverFailure(ctx context.Context, ev *asyncEvent, condition string, response []byte) {
	p.forgetEvent(ev)
	cfg := p.invokeConfigOf(ev.region, ev.function)
	if cfg.onFailure == "" {
		return
	}
	var rec invocationRecord
	rec.Version = "1.0"
	rec.Timestamp = p.opts.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	rec.RequestContext.RequestID = ev.requestID
	rec.RequestContext.FunctionARN = cfg.functionARN
	rec.RequestContext.Condition = condition
	rec.RequestContext.ApproximateInvokeCount = ev.attempts
	rec.RequestPayload = jsonOrString(ev.payload)
	rec.ResponseContext.StatusCode = http.StatusOK
	rec.ResponseContext.ExecutedVersion = latest
	if len(response) > 0 {
		rec.ResponseContext.FunctionError = "Unhandled"
		rec.ResponsePayload = jsonOrString(response)
	}
	if err := p.sendRecord(ctx, ev, cfg.onFailure, rec); err != nil {
		p.lambda.mu.Lock()
		p.lambda.deliveryFailures++
		p.lambda.mu.Unlock()
	}
}

// sendRecord sends rec to the SQS queue arn as the function's role.
func (p *Proxy) sendRecord(ctx context.Context, ev *asyncEvent, arn string, rec invocationRecord) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	fn, err := p.lookupFunction(ctx, ev.region, ev.function)
	if err != nil {
		return err
	}
	parts := strings.SplitN(arn, ":", 6) // arn:aws:sqs:REGION:ACCOUNT:NAME
	if len(parts) != 6 {
		return fmt.Errorf("destination %q is not a queue ARN", arn)
	}
	client := sqs.New(sqs.Options{
		Region:       parts[3],
		Credentials:  RoleCredentials(roleName(fn.role)),
		BaseEndpoint: aws.String(p.URL()),
		HTTPClient:   &http.Client{Transport: p.opts.Transport},
	})
	_, err = client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String("https://sqs." + parts[3] + ".amazonaws.com/" + parts[4] + "/" + parts[5]),
		MessageBody: aws.String(string(body)),
	})
	return err
}

// DestinationDeliveryFailures counts the invocation records a destination
// refused (Lambda's metric of that name): the role may not send there, the
// queue is gone, the record is too large.
func (p *Proxy) DestinationDeliveryFailures() int {
	p.lambda.mu.Lock()
	defer p.lambda.mu.Unlock()
	return p.lambda.deliveryFailures
}

// jsonOrString is b when it is JSON, else b as a JSON string.
func jsonOrString(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// functionInfo is what the proxy reads of a function from kumo.
type functionInfo struct{ arn, role string }

// lookupFunction reads the function name from kumo, as the operator; a
// missing function is Lambda's ResourceNotFoundException for region.
func (p *Proxy) lookupFunction(ctx context.Context, region, name string) (functionInfo, error) {
	u := *p.target
	u.Path = strings.TrimSuffix(u.Path, "/") + "/2015-03-31/functions/" + url.PathEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return functionInfo{}, err
	}
	req.Header.Set("Authorization", serviceAuthorization("lambda"))
	resp, err := p.opts.Transport.RoundTrip(req)
	if err != nil {
		return functionInfo{}, fmt.Errorf("get function %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return functionInfo{}, fmt.Errorf("get function %s: %w", name, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return functionInfo{}, refuse(faultproxy.APIError{Status: http.StatusNotFound, Code: "ResourceNotFoundException",
			Message: "Function not found: arn:aws:lambda:" + region + ":" + p.account() + ":function:" + name})
	default:
		return functionInfo{}, fmt.Errorf("get function %s: %s: %s", name, resp.Status, b)
	}
	var out struct {
		Configuration struct{ FunctionArn, Role string }
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return functionInfo{}, fmt.Errorf("get function %s: %w", name, err)
	}
	return functionInfo{arn: out.Configuration.FunctionArn, role: out.Configuration.Role}, nil
}
