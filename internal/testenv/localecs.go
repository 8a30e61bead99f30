package testenv

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/localecs"
)

// LocalECS starts, for one test, the demo's stack in front of the test
// binary's kumo: an AWS-rules proxy (the shared IAM and clock, memory of
// its own, as KumoWith) in front of a local ECS and Batch
// (internal/localecs) with opts, which runs tasks and jobs through
// opts.Start. Unless opts sets them, the local ECS listens on a free port
// of 127.0.0.1 and asks the rules proxy whether an execution role may do
// what ECS does before a container starts. It returns the operator's
// config for the rules proxy (AsRole signs as a role) and the local ECS;
// both close at the test's end.
func LocalECS(tb testing.TB, opts localecs.Options) (aws.Config, *localecs.Proxy) {
	tb.Helper()
	AWSRules(tb) // starts the IAM evaluator the proxies share
	opts.Upstream = KumoURL(tb)
	if opts.Addr == "" && opts.Listener == nil {
		opts.Addr = "127.0.0.1:0"
	}
	// The rules proxy needs the local ECS's address, and the local ECS
	// asks the rules proxy: it is set before the caller can start a task.
	var front atomic.Pointer[awsrules.Proxy]
	if opts.Authorize == nil {
		opts.Authorize = func(ctx context.Context, role, action, resource string) error {
			return front.Load().Authorize(ctx, role, action, resource)
		}
	}
	proxy, err := localecs.Listen(opts)
	if err != nil {
		tb.Fatalf("local ECS: %v", err)
	}
	rules, err := startAWSRules(proxy.URL(), rulesIAM, awsrules.Options{})
	if err != nil {
		_ = proxy.Close()
		tb.Fatalf("AWS rules layer: %v", err)
	}
	front.Store(rules)
	tb.Cleanup(func() {
		_ = rules.Close()
		if err := proxy.Close(); err != nil {
			tb.Errorf("close the local ECS: %v", err)
		}
	})
	return KumoConfig(rules.URL()), proxy
}
