package awsrules

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// A function's asynchronous invocation configuration ("event invoke
// config"): how often Lambda retries an event the function failed, how long
// it keeps an event, and where it sends the record of one that failed every
// attempt. kumo has ListFunctionEventInvokeConfigs only, so the proxy serves
// the five operations itself, keyed by region, function and qualifier, in
// Lambda's REST JSON and with its errors, and drops a function's
// configurations with the function, as Lambda does.
// https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionEventInvokeConfig.html
// https://docs.aws.amazon.com/lambda/latest/api/API_FunctionEventInvokeConfig.html

// Lambda's defaults and bounds for asynchronous invocation: "By default,
// Lambda retries an asynchronous invocation twice if the function returns
// an error. It retains events in a queue for up to six hours."
// MaximumRetryAttempts is 0 to 2, MaximumEventAgeInSeconds 60 to 21600.
const (
	defaultRetryAttempts = 2
	maxRetryAttempts     = 2
	defaultMaxEventAge   = 6 * time.Hour
	minMaxEventAge       = 60 * time.Second
	maxMaxEventAge       = 6 * time.Hour
)

// latest is the qualifier of a function's unpublished version, which an
// unqualified request configures and an unqualified Invoke runs.
const latest = "$LATEST"

// lambdaAsync is what the proxy keeps of Lambda's asynchronous invocation:
// the configurations, and the events accepted and not yet settled
// (asyncinvoke.go). Its zero value is ready.
type lambdaAsync struct {
	mu      sync.Mutex
	configs map[configKey]invokeConfig
	events  []*asyncEvent          // accepted events not yet settled, oldest first
	running map[string]*asyncEvent // runtime request ID -> the event a handler took
	// deliveryFailures counts records a destination refused, Lambda's
	// DestinationDeliveryFailures metric.
	deliveryFailures int
}

type configKey struct{ region, function, qualifier string }

// invokeConfig is one function's (or version's) configuration; nil numbers
// are unset (Lambda's defaults apply), "" destinations none.
type invokeConfig struct {
	functionARN          string // qualified: ...:function:NAME:$LATEST
	retries, maxAge      *int
	onSuccess, onFailure string
	modified             time.Time
}

// retryAttempts and eventAge are what asynchronous invocation runs with.
func (c invokeConfig) retryAttempts() int {
	if c.retries == nil {
		return defaultRetryAttempts
	}
	return *c.retries
}

func (c invokeConfig) eventAge() time.Duration {
	if c.maxAge == nil {
		return defaultMaxEventAge
	}
	return time.Duration(*c.maxAge) * time.Second
}

// MarshalJSON writes c as Lambda answers it: LastModified in epoch seconds,
// both destinations present, empty when unset.
func (c invokeConfig) MarshalJSON() ([]byte, error) {
	type dest struct {
		Destination string `json:",omitempty"`
	}
	return json.Marshal(struct {
		LastModified             float64
		FunctionArn              string
		MaximumRetryAttempts     *int `json:",omitempty"`
		MaximumEventAgeInSeconds *int `json:",omitempty"`
		DestinationConfig        struct{ OnSuccess, OnFailure dest }
	}{
		LastModified:             float64(c.modified.UnixMilli()) / 1000,
		FunctionArn:              c.functionARN,
		MaximumRetryAttempts:     c.retries,
		MaximumEventAgeInSeconds: c.maxAge,
		DestinationConfig:        struct{ OnSuccess, OnFailure dest }{dest{c.onSuccess}, dest{c.onFailure}},
	})
}

// invokeConfigInput is the body of Put and Update.
type invokeConfigInput struct {
	MaximumRetryAttempts     *int
	MaximumEventAgeInSeconds *int
	DestinationConfig        *struct {
		OnSuccess, OnFailure *struct{ Destination string }
	}
}

// apply sets what in names on c: everything for Put (replace), only what
// is present for Update.
func (in invokeConfigInput) apply(c *invokeConfig, replace bool) {
	if replace {
		*c = invokeConfig{functionARN: c.functionARN}
	}
	if in.MaximumRetryAttempts != nil {
		c.retries = in.MaximumRetryAttempts
	}
	if in.MaximumEventAgeInSeconds != nil {
		c.maxAge = in.MaximumEventAgeInSeconds
	}
	if d := in.DestinationConfig; d != nil {
		if d.OnSuccess != nil {
			c.onSuccess = d.OnSuccess.Destination
		}
		if d.OnFailure != nil {
			c.onFailure = d.OnFailure.Destination
		}
	}
}

// validate refuses numbers out of Lambda's bounds as its request
// validation does: ValidationException, "1 validation error detected".
func (in invokeConfigInput) validate() error {
	bad := func(v int, field, constraint string) error {
		return refuse(faultproxy.APIError{Status: http.StatusBadRequest, Code: "ValidationException",
			Message: fmt.Sprintf("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value %s", v, field, constraint)})
	}
	if n := in.MaximumRetryAttempts; n != nil && *n < 0 {
		return bad(*n, "maximumRetryAttempts", "greater than or equal to 0")
	}
	if n := in.MaximumRetryAttempts; n != nil && *n > maxRetryAttempts {
		return bad(*n, "maximumRetryAttempts", "less than or equal to "+strconv.Itoa(maxRetryAttempts))
	}
	if n := in.MaximumEventAgeInSeconds; n != nil && *n < int(minMaxEventAge/time.Second) {
		return bad(*n, "maximumEventAgeInSeconds", "greater than or equal to "+strconv.Itoa(int(minMaxEventAge/time.Second)))
	}
	if n := in.MaximumEventAgeInSeconds; n != nil && *n > int(maxMaxEventAge/time.Second) {
		return bad(*n, "maximumEventAgeInSeconds", "less than or equal to "+strconv.Itoa(int(maxMaxEventAge/time.Second)))
	}
	return nil
}

// configRequest is what the five operations read of a call: the function
// (which must exist) and the key of its configuration.
type configRequest struct {
	key configKey
	fn  functionInfo
}

func (p *Proxy) configRequest(c call) (configRequest, error) {
	name, region := pathFunction(c.r), regionOf(c)
	if region == "" {
		region = defaultRegion
	}
	fn, err := p.lookupFunction(c.r.Context(), region, name)
	if err != nil {
		return configRequest{}, err
	}
	q := c.r.URL.Query().Get("Qualifier")
	if q == "" {
		q = latest
	}
	return configRequest{key: configKey{region, name, q}, fn: fn}, nil
}

// qualifiedARN is the configuration's FunctionArn: the function's, in the
// caller's region, with the qualifier.
func (p *Proxy) qualifiedARN(k configKey) string {
	return "arn:aws:lambda:" + k.region + ":" + p.account() + ":function:" + k.function + ":" + k.qualifier
}

// account is the emulated account's ID.
func (p *Proxy) account() string {
	if p.iam != nil {
		return p.iam.cfg.Account
	}
	return kumoAccount
}

func putInvokeConfig(p *Proxy, c call, _ []byte) (*answer, error) {
	return p.writeInvokeConfig(c, true)
}

func updateInvokeConfig(p *Proxy, c call, _ []byte) (*answer, error) {
	return p.writeInvokeConfig(c, false)
}

// writeInvokeConfig is Put (replace) and Update (merge). Lambda checks
// that the function's execution role may send to each destination before
// it accepts it: "The function's execution role does not have permissions
// to call SendMessage on ARN" (InvalidParameterValueException); the proxy
// asks IAM the same of the role's policies.
// https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
func (p *Proxy) writeInvokeConfig(c call, replace bool) (*answer, error) {
	req, err := p.configRequest(c)
	if err != nil {
		return nil, err
	}
	var in invokeConfigInput
	if len(c.body) > 0 {
		if err := json.Unmarshal(c.body, &in); err != nil {
			return nil, refuse(faultproxy.APIError{Status: http.StatusBadRequest, Code: "InvalidRequestContentException",
				Message: "Could not parse request body into json: " + err.Error()})
		}
	}
	if err := in.validate(); err != nil {
		return nil, err
	}
	p.lambda.mu.Lock()
	cur, ok := p.lambda.configs[req.key]
	p.lambda.mu.Unlock()
	if !replace && !ok {
		return nil, noInvokeConfig(p.qualifiedARN(req.key))
	}
	cur.functionARN = p.qualifiedARN(req.key)
	in.apply(&cur, replace)
	if err := p.checkDestination(c, req.fn.role, cur.onFailure, cur.onSuccess); err != nil {
		return nil, err
	}
	cur.modified = c.now
	p.lambda.mu.Lock()
	if p.lambda.configs == nil {
		p.lambda.configs = map[configKey]invokeConfig{}
	}
	p.lambda.configs[req.key] = cur
	p.lambda.mu.Unlock()
	return jsonAnswer(http.StatusOK, cur)
}

// checkDestination refuses a destination the proxy does not deliver to
// (anything but an on-failure SQS queue: a request the proxy cannot play
// fails loudly, never silently), and an SQS queue the function's role may
// not send to.
func (p *Proxy) checkDestination(c call, roleARN, onFailure, onSuccess string) error {
	if onSuccess != "" {
		return notModelled("on-success destinations (" + onSuccess + ")")
	}
	if onFailure == "" {
		return nil
	}
	if !strings.HasPrefix(onFailure, "arn:aws:sqs:") {
		return notModelled("destinations other than SQS queues (" + onFailure + ")")
	}
	err := p.Authorize(c.r.Context(), roleName(roleARN), "sqs:SendMessage", onFailure)
	if _, denied := err.(*Denied); denied {
		return refuse(faultproxy.APIError{Status: http.StatusBadRequest, Code: "InvalidParameterValueException",
			Message: "The function's execution role does not have permissions to call SendMessage on " + onFailure})
	}
	if err != nil {
		return refuse(faultproxy.APIError{Status: http.StatusInternalServerError, Code: "InternalFailure", Message: err.Error()})
	}
	return nil
}

func getInvokeConfig(p *Proxy, c call, _ []byte) (*answer, error) {
	req, err := p.configRequest(c)
	if err != nil {
		return nil, err
	}
	p.lambda.mu.Lock()
	cur, ok := p.lambda.configs[req.key]
	p.lambda.mu.Unlock()
	if !ok {
		return nil, noInvokeConfig(p.qualifiedARN(req.key))
	}
	return jsonAnswer(http.StatusOK, cur)
}

// deleteInvokeConfig answers 204 with no body, as Lambda does.
func deleteInvokeConfig(p *Proxy, c call, _ []byte) (*answer, error) {
	req, err := p.configRequest(c)
	if err != nil {
		return nil, err
	}
	p.lambda.mu.Lock()
	_, ok := p.lambda.configs[req.key]
	delete(p.lambda.configs, req.key)
	p.lambda.mu.Unlock()
	if !ok {
		return nil, noInvokeConfig(p.qualifiedARN(req.key))
	}
	return &answer{status: http.StatusNoContent, header: http.Header{}}, nil
}

// listInvokeConfigs lists every qualifier's configuration of the function,
// in one page.
func listInvokeConfigs(p *Proxy, c call, _ []byte) (*answer, error) {
	req, err := p.configRequest(c)
	if err != nil {
		return nil, err
	}
	p.lambda.mu.Lock()
	list := []invokeConfig{}
	for _, k := range slices.SortedFunc(maps.Keys(p.lambda.configs), func(a, b configKey) int { return strings.Compare(a.qualifier, b.qualifier) }) {
		if k.region == req.key.region && k.function == req.key.function {
			list = append(list, p.lambda.configs[k])
		}
	}
	p.lambda.mu.Unlock()
	return jsonAnswer(http.StatusOK, struct{ FunctionEventInvokeConfigs []invokeConfig }{list})
}

// forgetInvokeConfigs drops a deleted function's configurations: they are
// part of the function on AWS and go with it.
func forgetInvokeConfigs(p *Proxy, c call, a *answer) {
	if !ok2xx(a) {
		return
	}
	name, region := pathFunction(c.r), regionOf(c)
	if region == "" {
		region = defaultRegion
	}
	p.lambda.mu.Lock()
	defer p.lambda.mu.Unlock()
	for k := range p.lambda.configs {
		if k.region == region && k.function == name {
			delete(p.lambda.configs, k)
		}
	}
}

// invokeConfigOf is the configuration an unqualified asynchronous
// invocation of function in region runs with: $LATEST's, else the
// defaults.
func (p *Proxy) invokeConfigOf(region, function string) invokeConfig {
	p.lambda.mu.Lock()
	defer p.lambda.mu.Unlock()
	if c, ok := p.lambda.configs[configKey{region, function, latest}]; ok {
		return c
	}
	return invokeConfig{functionARN: p.qualifiedARN(configKey{region, function, latest})}
}

// noInvokeConfig is Lambda's answer for a function without a configuration.
func noInvokeConfig(functionARN string) error {
	return refuse(faultproxy.APIError{Status: http.StatusNotFound, Code: "ResourceNotFoundException",
		Message: "The function " + functionARN + " doesn't have an EventInvokeConfig"})
}

// notModelled refuses what the proxy does not play, as it refuses a request
// it cannot map to IAM.
func notModelled(what string) error {
	return refuse(faultproxy.APIError{Status: http.StatusInternalServerError, Code: "InternalFailure",
		Message: "awsrules: " + what + " are not modelled"})
}

// jsonAnswer is a 2xx answer with v as its JSON body.
func jsonAnswer(status int, v any) (*answer, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode answer: %w", err)
	}
	return &answer{status: status, header: http.Header{"Content-Type": {"application/json"}}, body: b}, nil
}

// roleName is the name at the end of a role ARN.
func roleName(roleARN string) string { return roleARN[strings.LastIndex(roleARN, "/")+1:] }
