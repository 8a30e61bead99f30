package provision_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// kumoAccount is the account kumo's STS, SQS, S3 and Lambda report.
const kumoAccount = "000000000000"

// env is one test's view of kumo: a Provisioner, a CallCounter on it, and
// plain clients to look at what it did.
type env struct {
	t       *testing.T
	name    string // unique per test: workflow name and bucket prefix
	cfg     aws.Config
	calls   *testenv.CallCounter
	p       *provision.Provisioner
	opts    provision.Options
	s3      *s3.Client
	sqs     *sqs.Client
	iam     *iam.Client
	lambda  *lambda.Client
	ecs     *ecs.Client
	logs    *cloudwatchlogs.Client
	subnets []string
	sgs     []string
}

// newEnv returns a test environment; mods change the Provisioner's config
// only (fault injection), not that of the clients the test looks with.
func newEnv(t *testing.T, mods ...func(*aws.Config)) *env {
	t.Helper()
	cfg := testenv.Kumo(t)
	e := &env{t: t, name: testenv.UniqueName(t), cfg: cfg, calls: &testenv.CallCounter{}}
	e.subnets, e.sgs = testenv.NewNetwork(t, cfg)
	// The provisioner acts as the agent: its requests are authorized by
	// deploy/agent-iam-policy.json, so the names below are the ones that
	// policy scopes (the cluster "cloudpipe", state buckets
	// "cloudpipe-state-*").
	pcfg := testenv.AsRole(cfg, testenv.AgentRole)
	e.calls.Attach(&pcfg)
	for _, mod := range mods {
		mod(&pcfg)
	}
	e.opts = e.options()
	e.p = provision.New(pcfg, e.opts)
	e.s3 = s3.NewFromConfig(cfg, testenv.S3PathStyle)
	// The state bucket, as bootstrap makes it (the stage functions' code
	// is stored there); bootstrap's own tests use another name.
	if _, err := e.s3.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: &e.opts.StateBucket}); err != nil {
		t.Fatalf("create the state bucket: %v", err)
	}
	e.sqs = sqs.NewFromConfig(cfg)
	e.iam = iam.NewFromConfig(cfg)
	e.lambda = lambda.NewFromConfig(cfg)
	e.ecs = ecs.NewFromConfig(cfg)
	e.logs = cloudwatchlogs.NewFromConfig(cfg)
	return e
}

// options are the Provisioner's options in e's network.
func (e *env) options() provision.Options {
	return provision.Options{
		Cluster:               "cloudpipe",
		Network:               provision.Network{Subnets: e.subnets, SecurityGroups: e.sgs},
		StateBucket:           "cloudpipe-state-" + e.name + "-env",
		LambdaCode:            provision.NewLambdaCode(tinyZip(e.t)),
		LambdaArchitecture:    "x86_64",
		RunnerImage:           "ghcr.io/cloudpipe/agent:test",
		S3UsePathStyle:        true,
		IAMPropagationTimeout: 5 * time.Second,
	}
}

// tinyZip is a Lambda package holding a shell script as bootstrap; kumo
// never runs it.
func tinyZip(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho cloudpipe\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	zip, err := provision.LambdaZipFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return zip
}

const (
	testSecretARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-AbCdEf"
	testCredsARN  = "arn:aws:secretsmanager:us-east-1:000000000000:secret:keys-GhIjKl"
)

// spec returns a single_run stage: user-named buckets that do not exist yet,
// one variable, one secret and task credentials.
func (e *env) spec() provision.StageSpec {
	return provision.StageSpec{
		Workflow:      e.name,
		Stage:         0,
		Region:        testenv.Region,
		AccountID:     kumoAccount,
		InputBucket:   e.name + "-in",
		OutputBucket:  e.name + "-out",
		RetainBuckets: true,
		Algorithm: provision.AlgorithmSpec{
			Name:           "change123-s3",
			Image:          "123456789012.dkr.ecr.us-east-1.amazonaws.com/change123:1",
			RunCommand:     "python /app/run.py $input $output",
			InputFilePath:  "/data/in",
			OutputFilePath: "/data/out",
			CPU:            1,
			MemoryMiB:      1024,
			Ports:          []provision.PortSpec{{Port: 8080, Protocol: "tcp"}},
		},
		Variables:             map[string]string{"TEST_ENV": "blah"},
		Secrets:               map[string]string{"DB_PASSWORD": testSecretARN + ":password::"},
		TaskCredentialsSecret: testCredsARN,
	}
}

// ensure runs EnsureStage and fails the test on error.
func (e *env) ensure(spec provision.StageSpec, prev provision.StageResources) provision.StageResources {
	e.t.Helper()
	res, err := e.p.EnsureStage(e.t.Context(), spec, prev)
	if err != nil {
		e.t.Fatalf("EnsureStage: %v", err)
	}
	return res
}

// cancelAfter adds SDK middleware that calls cancel once n calls have been
// made, as a crash would cut a pass short mid-way.
func cancelAfter(n int64, cancel context.CancelFunc) func(*aws.Config) {
	var calls atomic.Int64
	return func(cfg *aws.Config) {
		cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test.CancelAfter",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if calls.Add(1) > n {
						cancel()
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
		})
	}
}

// fault is an error response a faultProxy sends instead of forwarding.
type fault struct {
	status int
	header map[string]string
	body   string
}

// viaFaultProxy puts an httptest proxy in front of the AWS rules (in front
// of kumo) that answers the first n requests matching match with f, to
// provoke what kumo cannot (IAM propagation delays, throttling), and
// forwards everything else. It returns a config mod and the number of
// matching requests seen.
func viaFaultProxy(t *testing.T, match func(*http.Request) bool, n int64, f fault) (func(*aws.Config), *atomic.Int64) {
	t.Helper()
	target, err := url.Parse(testenv.AWSRules(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if match(r) && seen.Add(1) <= n {
			for k, v := range f.header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(f.status)
			_, _ = io.WriteString(w, f.body)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return func(cfg *aws.Config) { cfg.BaseEndpoint = aws.String(srv.URL) }, &seen
}

// newLocalECSEnv is newEnv behind an AWS-rules proxy (without IAM checks;
// it serves what kumo lacks, such as the stage function's event invoke
// config) in front of a local ECS (which serves ListTasks and reports
// task states), whose tasks sleep for a minute unless stopped; the
// cluster exists. It returns the local ECS too, whose Tasks the test reads.
func newLocalECSEnv(t *testing.T) (*env, *localecs.Proxy) {
	t.Helper()
	ecsProxy, err := localecs.Listen(localecs.Options{
		Addr:     "127.0.0.1:0",
		Upstream: testenv.KumoURL(t),
		Start: func(ctx context.Context, _ localecs.TaskSpec) (*exec.Cmd, error) {
			return exec.CommandContext(ctx, "sleep", "60"), nil
		},
		StopTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ecsProxy.Close(); err != nil {
			t.Error(err)
		}
	})
	rules, err := awsrules.New(ecsProxy.URL(), awsrules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rules.Close() })
	e := newEnv(t, func(cfg *aws.Config) { cfg.BaseEndpoint = aws.String(rules.URL()) })
	if _, err := e.ecs.CreateCluster(t.Context(), &ecs.CreateClusterInput{ClusterName: aws.String(e.opts.Cluster)}); err != nil {
		t.Fatal(err)
	}
	return e, ecsProxy
}
