package lambda_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/lambda"
	"github.com/cloudpipe/cloudpipe/provision"
)

// stage is one stage as the agent deploys it in kumo, and a handler for it
// that acts as the stage's Lambda role.
type stage struct {
	t     testing.TB
	aws   aws.Config // for the handler: the Lambda role's, counted, maybe behind a fault proxy
	role  string     // the function's execution role (ARN)
	calls *testenv.CallCounter
	cfg   lambda.Config
	// deniable: the test provokes IAM denials itself (see expectDenials).
	deniable bool
	sqs      *sqs.Client // the operator's, uncounted: the test's own view
}

// stageOptions change newStage.
type stageOptions struct {
	maxTasks int         // the workflow's max_tasks; 0: the default
	proxy    *faultProxy // nil: talk to the AWS rules directly
}

// newStage deploys one stage with the agent's provisioner, acting as the
// agent's role: queues, roles, task definition and function exactly as a
// workflow gets them. The handler is configured from the function's
// environment and signs as the function's role, so every call it makes is
// authorized by the policy the agent gave that role; at the end of the test
// the role must have been denied nothing.
func newStage(tb testing.TB, o stageOptions) *stage {
	tb.Helper()
	ctx := tb.Context()
	base := testenv.Kumo(tb)
	name := testenv.UniqueName(tb)
	subnets, sgs := testenv.NewNetwork(tb, base)
	// The names the agent's policy scopes: the cluster "cloudpipe", state
	// buckets "cloudpipe-state-*".
	state := "cloudpipe-state-" + name
	p := provision.New(testenv.Agent(tb), provision.Options{
		Cluster:               "cloudpipe",
		Network:               provision.Network{Subnets: subnets, SecurityGroups: sgs, AssignPublicIP: true},
		StateBucket:           state,
		LambdaCode:            provision.NewLambdaCode(testenv.LambdaZip(tb)),
		LambdaArchitecture:    "x86_64",
		RunnerImage:           "ghcr.io/cloudpipe/agent:test",
		S3UsePathStyle:        true,
		IAMPropagationTimeout: 5 * time.Second,
	})
	if _, err := p.Bootstrap(ctx, testenv.Region, provision.BootstrapOptions{
		StateBucket: state, Cluster: "cloudpipe", Subnets: subnets, SecurityGroups: sgs,
	}); err != nil {
		tb.Fatalf("bootstrap: %v", err)
	}
	if _, err := p.EnsureStage(ctx, provision.StageSpec{
		Workflow: name, Stage: 0, Region: testenv.Region, AccountID: testenv.Account,
		InputBucket: name + "-in", OutputBucket: name + "-out",
		Algorithm: provision.AlgorithmSpec{
			Name: "algo", Image: "docker.io/library/alpine:3.20", RunCommand: "cp $input $output",
			InputFilePath: "/data/in/", OutputFilePath: "/data/out/", CPU: 0.25, MemoryMiB: 512,
		},
		MaxTasks: o.maxTasks,
	}, provision.StageResources{}); err != nil {
		tb.Fatalf("ensure stage: %v", err)
	}
	fn, err := awslambda.NewFromConfig(base).GetFunctionConfiguration(ctx, &awslambda.GetFunctionConfigurationInput{
		FunctionName: aws.String(provision.ResourceName(name, 0)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := lambda.ConfigFromEnv(func(k string) string { return fn.Environment.Variables[k] })
	if err != nil {
		tb.Fatalf("the function's environment: %v", err)
	}
	s := &stage{
		t:     tb,
		aws:   testenv.AsRoleARN(base, aws.ToString(fn.Role)),
		role:  aws.ToString(fn.Role),
		calls: new(testenv.CallCounter),
		sqs:   sqs.NewFromConfig(base),
		cfg:   cfg,
	}
	if o.proxy != nil {
		s.aws.BaseEndpoint = aws.String(o.proxy.URL)
	}
	s.calls.Attach(&s.aws)
	tb.Cleanup(func() {
		if denied := s.denied(); len(denied) > 0 && !s.deniable {
			tb.Errorf("the stage's Lambda role was denied %q", denied)
		}
	})
	return s
}

// expectDenials is for a test that provokes IAM denials and checks them
// itself.
func (s *stage) expectDenials() { s.deniable = true }

// denied lists what IAM refused the stage's Lambda role so far.
func (s *stage) denied() []string {
	return testenv.AWSRules(s.t).Report().Principals[roleName(s.role)].Denied
}

// roleName is the name in a role's ARN, as the AWS rules report it.
func roleName(arn string) string { return arn[strings.LastIndexByte(arn, '/')+1:] }

// handler returns a handler for the stage whose retries wait milliseconds,
// not seconds.
func (s *stage) handler(opts ...lambda.Option) *lambda.Handler {
	return lambda.New(s.aws, s.cfg, append([]lambda.Option{lambda.WithRetryer(fastRetryer)}, opts...)...)
}

func fastRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 5
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
	})
}

// receiveAll drains the queue at url (waiting up to a second for stragglers).
func (s *stage) receiveAll(url string) []sqstypes.Message {
	s.t.Helper()
	var all []sqstypes.Message
	for {
		out, err := s.sqs.ReceiveMessage(s.t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			s.t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return all
		}
		all = append(all, out.Messages...)
	}
}

// runTasks returns the RunTask requests the handler sent.
func (s *stage) runTasks() []*ecs.RunTaskInput {
	var out []*ecs.RunTaskInput
	for _, in := range s.calls.Inputs("ECS.RunTask") {
		out = append(out, in.(*ecs.RunTaskInput))
	}
	return out
}

// tasksStarted sums the counts of the RunTask requests.
func (s *stage) tasksStarted() int {
	n := 0
	for _, in := range s.runTasks() {
		n += int(aws.ToInt32(in.Count))
	}
	return n
}

// s3Event builds an event the way S3 (and kumo) send it: JSON with
// URL-encoded keys, decoded by aws-lambda-go, which fills URLDecodedKey.
// Each encoded key is used as given.
func s3Event(tb testing.TB, bucket string, encodedKeys ...string) events.S3Event {
	tb.Helper()
	type obj struct {
		Key       string `json:"key"`
		Size      int64  `json:"size"`
		ETag      string `json:"eTag"`
		Sequencer string `json:"sequencer"`
	}
	type rec struct {
		EventVersion string    `json:"eventVersion"`
		EventSource  string    `json:"eventSource"`
		EventTime    time.Time `json:"eventTime"`
		EventName    string    `json:"eventName"`
		S3           struct {
			Bucket struct {
				Name string `json:"name"`
			} `json:"bucket"`
			Object obj `json:"object"`
		} `json:"s3"`
	}
	var recs []rec
	when := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	for i, k := range encodedKeys {
		var r rec
		r.EventVersion, r.EventSource, r.EventName = "2.1", "aws:s3", "ObjectCreated:Put"
		r.EventTime = when
		r.S3.Bucket.Name = bucket
		r.S3.Object = obj{Key: k, Size: int64(100 + i), ETag: "etag" + k}
		recs = append(recs, r)
	}
	raw, err := json.Marshal(map[string]any{"Records": recs})
	if err != nil {
		tb.Fatal(err)
	}
	var ev events.S3Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		tb.Fatal(err)
	}
	return ev
}

// faultProxy sits in front of the AWS rules and answers chosen operations itself, to
// provoke what kumo cannot: throttling, access denied, ListTasks.
type faultProxy struct {
	*httptest.Server
	mu    sync.Mutex
	rules map[string]func(n int) (status int, body string) // by operation; n counts calls from 1
	calls map[string]int
}

func newFaultProxy(tb testing.TB) *faultProxy {
	tb.Helper()
	// Behind the fault proxy the AWS rules still apply: what the proxy
	// passes on is authorized as the stage's role.
	target, err := url.Parse(testenv.AWSRules(tb).URL())
	if err != nil {
		tb.Fatal(err)
	}
	p := &faultProxy{rules: map[string]func(int) (int, string){}, calls: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.Header.Get("X-Amz-Target")
		op := target[strings.LastIndexByte(target, '.')+1:]
		p.mu.Lock()
		rule := p.rules[op]
		p.calls[op]++
		n := p.calls[op]
		p.mu.Unlock()
		if rule != nil {
			if status, body := rule(n); status != 0 {
				w.Header().Set("Content-Type", "application/x-amz-json-1.1")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(body))
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	tb.Cleanup(p.Close)
	return p
}

// on makes the proxy answer op with rule's status and body; a zero status
// passes the call through.
func (p *faultProxy) on(op string, rule func(n int) (int, string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules[op] = rule
}

// count returns how many calls of op reached the proxy.
func (p *faultProxy) count(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[op]
}

// awsError is a JSON-protocol error body.
func awsError(code, msg string) string {
	b, _ := json.Marshal(map[string]string{"__type": code, "message": msg})
	return string(b)
}
