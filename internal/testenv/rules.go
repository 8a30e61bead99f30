package testenv

import (
	"archive/zip"
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/iamsim"
)

// Account is the AWS account ID kumo answers with.
const Account = awsrules.EmulatorAccount

// AgentRole is the role the agent's requests are signed as in tests: its
// policies are deploy.AgentPolicies, as an operator attaches them.
const AgentRole = awsrules.AgentRole

// The rules proxy is process-wide like kumo: its memory (deleted queues,
// resource tags, task definitions) must see every request of the process.
var (
	rulesOnce sync.Once
	rulesErr  error
	rules     *awsrules.Proxy
	rulesIAM  *awsrules.IAM // rules' IAM, which KumoWith's proxies share
	// clockShift is how far AdvanceAWSClock moved the rules' clock.
	clockShift atomic.Int64
)

// AdvanceAWSClock moves the AWS rules' clock forward by d, for a test that
// stands for time passing between two steps (SQS frees a deleted queue's
// name after 60 s) without waiting it out. The clock is the process's, so
// it only ever moves forward.
func AdvanceAWSClock(d time.Duration) { clockShift.Add(int64(d)) }

// AWSRules returns the test binary's AWS-rules proxy (internal/awsrules) in
// front of its kumo, with IAM on: every request a role signs is authorized
// against that role's policies. It starts the IAM evaluator (Node.js; the
// npm registry once, to install it into CacheDir) on first use, and fails
// the test without it: the AWS rules are not optional.
func AWSRules(tb testing.TB) *awsrules.Proxy {
	tb.Helper()
	target := KumoURL(tb)
	rulesOnce.Do(func() {
		rulesIAM, rulesErr = emulatorIAM(context.Background())
		if rulesErr == nil {
			rules, rulesErr = startAWSRules(target, rulesIAM, awsrules.Options{})
		}
	})
	if rulesErr != nil {
		tb.Fatalf("AWS rules layer: %v", rulesErr)
	}
	return rules
}

// IAMEvaluator returns the IAM evaluator the AWS rules decide with, for a
// test that asks IAM about a policy document directly.
func IAMEvaluator(tb testing.TB) *iamsim.Evaluator {
	tb.Helper()
	AWSRules(tb)
	return rulesIAM.Evaluator
}

// StartAWSRules starts an AWS-rules proxy with IAM in front of the emulator
// at target, the agent's role holding deploy.AgentPolicies. The IAM
// evaluator runs as long as the process.
func StartAWSRules(ctx context.Context, target string) (*awsrules.Proxy, error) {
	iam, err := emulatorIAM(ctx)
	if err != nil {
		return nil, err
	}
	p, err := startAWSRules(target, iam, awsrules.Options{})
	if err != nil {
		_ = iam.Evaluator.Close()
	}
	return p, err
}

// KumoWith is Kumo through a rules proxy of the test's own, in front of the
// same kumo, with opts' rules (such as ForeignBuckets, which the shared
// proxy has none of) under the shared proxy's IAM and clock. Its memory
// (tags seen at creation, regions, deleted queues) is its own: a test uses
// it for the resources it creates through it. It closes at the test's end.
func KumoWith(tb testing.TB, opts awsrules.Options) aws.Config {
	tb.Helper()
	AWSRules(tb) // starts the IAM evaluator the two proxies share
	p, err := startAWSRules(KumoURL(tb), rulesIAM, opts)
	if err != nil {
		tb.Fatalf("AWS rules layer: %v", err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return KumoConfig(p.URL())
}

// RulesInFrontOf starts an AWS-rules proxy of the test's own in front of
// target, a proxy in front of the same kumo (such as a local ECS that
// answers what kumo lacks), under the shared proxy's IAM and clock. Its
// Report covers only the requests sent to it. It closes at the test's end.
func RulesInFrontOf(tb testing.TB, target string) *awsrules.Proxy {
	tb.Helper()
	AWSRules(tb) // starts the IAM evaluator the proxies share
	p, err := startAWSRules(target, rulesIAM, awsrules.Options{})
	if err != nil {
		tb.Fatalf("AWS rules layer: %v", err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

func emulatorIAM(ctx context.Context) (*awsrules.IAM, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	return awsrules.EmulatorIAM(ctx, cache)
}

// startAWSRules starts a rules proxy in front of target with opts, iam and
// the clock AdvanceAWSClock moves.
func startAWSRules(target string, iam *awsrules.IAM, opts awsrules.Options) (*awsrules.Proxy, error) {
	opts.IAM = iam
	opts.Now = func() time.Time { return time.Now().Add(time.Duration(clockShift.Load())) }
	return awsrules.New(target, opts)
}

// AsRole returns a copy of cfg whose requests are signed as the role named
// role, and so authorized by its policies.
func AsRole(cfg aws.Config, role string) aws.Config {
	out := cfg.Copy()
	out.Credentials = awsrules.RoleCredentials(role)
	return out
}

// Agent returns the config the agent's own code uses in tests: through the
// AWS rules, signed as AgentRole.
func Agent(tb testing.TB) aws.Config {
	tb.Helper()
	return AsRole(Kumo(tb), AgentRole)
}

// AsRoleARN is AsRole for a role given by its ARN, as a Lambda function's
// configuration or a task definition names it.
func AsRoleARN(cfg aws.Config, roleARN string) aws.Config {
	return AsRole(cfg, roleARN[strings.LastIndex(roleARN, "/")+1:])
}

// LambdaZip is a stage function's deployment package for tests: a
// bootstrap script kumo never runs (the handler under test runs in the
// test's process).
func LambdaZip(tb testing.TB) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("bootstrap")
	if err == nil {
		_, err = w.Write([]byte("#!/bin/sh\necho not run\n"))
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
