package provision_test

import (
	"context"
	"errors"
	"os/exec"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestInstanceTypeLookup asks EC2 about instance types the workflow
// package's table lacks, as the agent's role, through the AWS rules and the
// local ECS, which answers DescribeInstanceTypes (kumo cannot).
func TestInstanceTypeLookup(t *testing.T) {
	ctx := t.Context()
	ecs, err := localecs.Listen(localecs.Options{
		Addr: "127.0.0.1:0", Upstream: testenv.KumoURL(t),
		Start: func(context.Context, localecs.TaskSpec) (*exec.Cmd, error) {
			return nil, errors.New("no tasks in this test")
		},
		InstanceTypes: []localecs.InstanceType{
			{Name: "g9.xlarge", VCPUs: 4, MemoryMiB: 16384, GPUs: 2, GPUManufacturer: "NVIDIA", GPUName: "X1"},
			{Name: "inf9.xlarge", VCPUs: 4, MemoryMiB: 16384, NeuronDevices: 1, NeuronName: "Inferentia9"},
			{Name: "m9g.large", VCPUs: 2, MemoryMiB: 8192, Architecture: "arm64"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ecs.Close() })
	rules := testenv.RulesInFrontOf(t, ecs.URL())
	p := provision.New(testenv.AsRole(testenv.KumoConfig(rules.URL()), testenv.AgentRole), provision.Options{})

	tests := []struct {
		name  string
		want  workflow.InstanceType
		found bool
	}{
		{"g9.xlarge", workflow.InstanceType{Name: "g9.xlarge", VCPU: 4, MemoryMiB: 16384, GPUs: 2, GPUModel: "NVIDIA X1", Arch: "x86_64"}, true},
		{"inf9.xlarge", workflow.InstanceType{Name: "inf9.xlarge", VCPU: 4, MemoryMiB: 16384, Accelerator: "AWS Inferentia9", Arch: "x86_64"}, true},
		{"m9g.large", workflow.InstanceType{Name: "m9g.large", VCPU: 2, MemoryMiB: 8192, Arch: "arm64"}, true},
		{"m5.lrage", workflow.InstanceType{}, false},
	}
	for _, tt := range tests {
		got, found, err := p.InstanceType(ctx, tt.name)
		if err != nil || found != tt.found || got != tt.want {
			t.Errorf("InstanceType(%s) = %+v, %v, %v; want %+v, %v, nil", tt.name, got, found, err, tt.want, tt.found)
		}
	}
	// A type's figures never change: asked once.
	if _, found, err := p.InstanceType(ctx, "g9.xlarge"); !found || err != nil {
		t.Errorf("g9.xlarge again: %v, %v", found, err)
	}
	if n := len(ecs.Requests("DescribeInstanceTypes")); n != len(tests) {
		t.Errorf("%d DescribeInstanceTypes calls, want %d (one per name; found ones kept)", n, len(tests))
	}

	agent := rules.Report().Principals[testenv.AgentRole]
	if agent.Authorized != len(tests) || len(agent.Denied) > 0 {
		t.Errorf("IAM for the agent's role: %d authorized, denied %v; want %d, none", agent.Authorized, agent.Denied, len(tests))
	}
}

// TestInstanceTypeLookupDenied: a principal IAM refuses gets an error, not
// "no such type", so validation does not call a real type unknown.
func TestInstanceTypeLookupDenied(t *testing.T) {
	ecs, err := localecs.Listen(localecs.Options{
		Addr: "127.0.0.1:0", Upstream: testenv.KumoURL(t),
		Start: func(context.Context, localecs.TaskSpec) (*exec.Cmd, error) {
			return nil, errors.New("no tasks in this test")
		},
		InstanceTypes: []localecs.InstanceType{{Name: "g9.xlarge", VCPUs: 4, MemoryMiB: 16384}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ecs.Close() })
	rules := testenv.RulesInFrontOf(t, ecs.URL())
	// A stage's task role: it holds no ec2 statement.
	p := provision.New(testenv.AsRole(testenv.KumoConfig(rules.URL()), "cp-"+testenv.UniqueName(t)+"-0-task"), provision.Options{})
	if _, found, err := p.InstanceType(t.Context(), "g9.xlarge"); err == nil || found {
		t.Errorf("InstanceType as a role without ec2:DescribeInstanceTypes = %v, %v; want an error", found, err)
	}
	if n := len(ecs.Requests("DescribeInstanceTypes")); n != 0 {
		t.Errorf("%d requests reached EC2, want none", n)
	}
}
