package sync_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// env is one test's view of the shared kumo emulator: its own state bucket,
// cluster and name prefix, and clients to look at what the agent built.
type env struct {
	t       testing.TB
	cfg     aws.Config
	prefix  string // unique per test: workflow names and buckets start with it
	state   string
	calls   *testenv.CallCounter
	crash   *crashAfter
	prov    *provision.Provisioner
	inv     *inventory.Store
	s3      *s3.Client
	sqs     *sqs.Client
	iam     *iam.Client
	lambda  *lambda.Client
	logs    *cloudwatchlogs.Client
	network provision.Network
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvOn(t, testenv.Kumo(t))
}

// newEnvOn is newEnv with base the operator's config of the AWS to use
// (the AWS rules in front of kumo, or in front of a local ECS and Batch),
// and more middleware on the agent's calls.
func newEnvOn(t testing.TB, base aws.Config, more ...func(*middleware.Stack) error) *env {
	t.Helper()
	sum := sha256.Sum256([]byte(t.Name()))
	e := &env{t: t, prefix: "t" + hex.EncodeToString(sum[:])[:7]}
	// The agent's code acts as its role, so its names are the ones
	// deploy/agent-iam-policy.json scopes.
	e.state = "cloudpipe-state-" + e.prefix

	cfg := testenv.AsRole(base, testenv.AgentRole)
	e.calls = &testenv.CallCounter{}
	e.calls.Attach(&cfg)
	e.crash = &crashAfter{}
	cfg.APIOptions = append(cfg.APIOptions, e.crash.install)
	cfg.APIOptions = append(cfg.APIOptions, more...)
	e.cfg = cfg

	subnets, sgs := testenv.NewNetwork(t, base)
	e.network = provision.Network{Subnets: subnets, SecurityGroups: sgs}
	e.prov = e.newProvisioner(cfg)
	if _, err := e.prov.Bootstrap(t.Context(), "us-east-1", provision.BootstrapOptions{
		StateBucket: e.state, Cluster: "cloudpipe", Subnets: subnets, SecurityGroups: sgs,
	}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	e.inv = inventory.NewStore(cfg, e.state, true)

	pathStyle := func(o *s3.Options) { o.UsePathStyle = true }
	e.s3 = s3.NewFromConfig(base, pathStyle)
	e.sqs = sqs.NewFromConfig(base)
	e.iam = iam.NewFromConfig(base)
	e.lambda = lambda.NewFromConfig(base)
	e.logs = cloudwatchlogs.NewFromConfig(base)
	return e
}

func (e *env) newProvisioner(cfg aws.Config) *provision.Provisioner {
	return e.newProvisionerWith(cfg, provision.NewLambdaCode(tinyZip(e.t)))
}

// newProvisionerWith is newProvisioner with code as the stage functions'.
func (e *env) newProvisionerWith(cfg aws.Config, code *provision.LambdaCode) *provision.Provisioner {
	return provision.New(cfg, provision.Options{
		// A queue name SQS holds for a minute after DeleteQueue is waited
		// out on the AWS rules' clock, not the test's.
		Sleep:                 advanceAWSClock,
		Cluster:               "cloudpipe",
		Network:               e.network,
		StateBucket:           e.state,
		LambdaCode:            code,
		RunnerImage:           "cloudpipe/agent:test",
		S3UsePathStyle:        true,
		IAMPropagationTimeout: 2 * time.Second,
	})
}

func (e *env) reconciler(agentID string) *pipesync.Reconciler {
	return mustReconciler(pipesync.Options{
		Provisioner: e.prov,
		Inventory:   e.inv,
		AgentID:     agentID,
		Concurrency: 4,
	})
}

// name is a workflow (or bucket) name unique to this test.
func (e *env) name(s string) string { return e.prefix + "-" + s }

// sync runs one pass and fails the test if the pass itself errors.
func (e *env) sync(r *pipesync.Reconciler, repo fstest.MapFS, commit string) *pipesync.Report {
	e.t.Helper()
	rep, err := r.Reconcile(e.t.Context(), pipesync.LoadDesired(repo, commit))
	if err != nil {
		e.t.Fatalf("reconcile %s: %v", commit, err)
	}
	return rep
}

func tinyZip(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	fw, err := zw.Create("bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(fw, "#!/bin/sh\necho not a real handler\n")
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// errCrash stands for the process dying: no AWS call after it reaches AWS.
var errCrash = errors.New("simulated crash")

// crashAfter makes every AWS call after the first n fail before it is sent,
// which is what AWS sees when the agent is killed after n calls.
type crashAfter struct {
	armed atomic.Bool
	left  atomic.Int64
}

func (c *crashAfter) arm(n int64) { c.left.Store(n); c.armed.Store(true) }
func (c *crashAfter) disarm()     { c.armed.Store(false) }

func (c *crashAfter) install(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("crashAfter",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if c.armed.Load() && c.left.Add(-1) < 0 {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, errCrash
			}
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

// repo builds a config repository: the test algorithms plus the given
// workflow files (name -> JSON).
func repo(workflows map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{
		"algorithms/sorter.json": {Data: []byte(algorithmJSON("sorter", "sort -o $output $input"))},
		"algorithms/dedup.json":  {Data: []byte(algorithmJSON("dedup", "uniq $input $output"))},
		"algorithms/copier.json": {Data: []byte(algorithmJSON("copier", "cp $input $output"))},
	}
	for name, data := range workflows {
		fsys["workflows/"+name+".json"] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

func algorithmJSON(name, cmd string) string {
	return fmt.Sprintf(`{
  "container_name": "docker.io/library/alpine:3.20",
  "system": "alpine",
  "input_file_path": "/data/input",
  "output_file_path": "/data/output",
  "executable_path": "",
  "run_command": %q,
  "name": %q,
  "instance_type": "",
  "memory": {"minimal": 128, "suggested": 512},
  "CPU": 0.25,
  "user_specified_environment_variables": [{"name": "MODE", "required": false}],
  "port": []
}`, cmd, name)
}

// singleRun is a workflow file of one stage.
func singleRun(in, out, mode string, extra ...string) string {
	more := ""
	if len(extra) > 0 {
		more = "," + strings.Join(extra, ",")
	}
	return fmt.Sprintf(`{
  "input_s3_name": %q,
  "output_s3_name": %q,
  "region": "us-east-1",
  "process": {"type": "single_run", "algorithms": [{"name": "sorter", "port": [], "variables": {"MODE": %q}}]}%s
}`, in, out, mode, more)
}

// sequenceRun is a workflow file of three stages.
func sequenceRun(in, out string, extra ...string) string {
	more := ""
	if len(extra) > 0 {
		more = "," + strings.Join(extra, ",")
	}
	return fmt.Sprintf(`{
  "input_s3_name": %q,
  "output_s3_name": %q,
  "region": "us-east-1",
  "process": {"type": "sequence_run", "algorithms": [
    {"name": "sorter", "port": [], "variables": {}},
    {"name": "dedup", "port": [], "variables": {}},
    {"name": "copier", "port": [], "variables": {}}]}%s
}`, in, out, more)
}

// mustReconciler is pipesync.New for options a test built whole: a missing
// part is a bug in the test.
func mustReconciler(opts pipesync.Options) *pipesync.Reconciler {
	r, err := pipesync.New(opts)
	if err != nil {
		panic(err)
	}
	return r
}

// advanceAWSClock is a provision.Options.Sleep that moves the AWS rules'
// clock by d instead of waiting d.
func advanceAWSClock(_ context.Context, d time.Duration) error {
	testenv.AdvanceAWSClock(d)
	return nil
}
