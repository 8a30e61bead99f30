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
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/lambda"
)

// stage is one stage's resources in kumo and a handler for them.
type stage struct {
	t     testing.TB
	aws   aws.Config // for the handler: counted, maybe behind a fault proxy
	calls *testenv.CallCounter
	cfg   lambda.Config
	sqs   *sqs.Client // unproxied, uncounted: the test's own view
}

// stageOptions change newStage.
type stageOptions struct {
	maxTasks int
	proxy    *faultProxy // nil: talk to kumo directly
}

// newStage creates a work queue, a dead-letter queue, a cluster, a task
// definition and a network in kumo, all named for the test.
func newStage(tb testing.TB, o stageOptions) *stage {
	tb.Helper()
	ctx := tb.Context()
	base := testenv.Kumo(tb)
	name := testenv.UniqueName(tb)
	q := sqs.NewFromConfig(base)
	queueURL := createQueue(tb, q, name)
	dlqURL := createQueue(tb, q, name+"-dlq")
	e := ecs.NewFromConfig(base)
	if _, err := e.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(name)}); err != nil {
		tb.Fatal(err)
	}
	td, err := e.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String("cp-" + name + "-0"),
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		NetworkMode:             ecstypes.NetworkModeAwsvpc,
		Cpu:                     aws.String("256"),
		Memory:                  aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("algo"), Image: aws.String("alpine"), Essential: aws.Bool(true),
		}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	subnets, sgs := testenv.NewNetwork(tb, base)
	if o.maxTasks == 0 {
		o.maxTasks = contract.DefaultMaxTasks
	}
	s := &stage{
		t:     tb,
		aws:   base.Copy(),
		calls: new(testenv.CallCounter),
		sqs:   q,
		cfg: lambda.Config{FunctionEnv: contract.FunctionEnv{
			QueueURL:       queueURL,
			DLQURL:         dlqURL,
			Cluster:        name,
			TaskDefinition: aws.ToString(td.TaskDefinition.TaskDefinitionArn),
			Subnets:        subnets,
			SecurityGroups: sgs,
			AssignPublicIP: true,
			MaxTasks:       o.maxTasks,
			Container:      "algo",
			Workflow:       name,
		}},
	}
	if o.proxy != nil {
		s.aws.BaseEndpoint = aws.String(o.proxy.URL)
	}
	s.calls.Attach(&s.aws)
	return s
}

func createQueue(tb testing.TB, q *sqs.Client, name string) string {
	tb.Helper()
	out, err := q.CreateQueue(tb.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		tb.Fatal(err)
	}
	return aws.ToString(out.QueueUrl)
}

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

// faultProxy sits in front of kumo and answers chosen operations itself, to
// provoke what kumo cannot: throttling, access denied, ListTasks.
type faultProxy struct {
	*httptest.Server
	mu    sync.Mutex
	rules map[string]func(n int) (status int, body string) // by operation; n counts calls from 1
	calls map[string]int
}

func newFaultProxy(tb testing.TB) *faultProxy {
	tb.Helper()
	target, err := url.Parse(testenv.KumoURL(tb))
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
// passes the call through to kumo.
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
