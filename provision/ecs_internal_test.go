package provision

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// TestTaskDefinitionArchitecture: a stage placed on a Graviton type runs on
// Fargate's arm64 platform; any other keeps Fargate's default, x86_64, and
// the request (and so its hash) it always had.
func TestTaskDefinitionArchitecture(t *testing.T) {
	p := &Provisioner{opts: Options{RunnerImage: "runner:1"}}
	for _, tt := range []struct {
		arch string
		want *ecstypes.RuntimePlatform
	}{
		{"", nil},
		{"x86_64", nil},
		{"arm64", &ecstypes.RuntimePlatform{CpuArchitecture: ecstypes.CPUArchitectureArm64, OperatingSystemFamily: ecstypes.OSFamilyLinux}},
	} {
		spec := StageSpec{Workflow: "wf", Region: "us-east-1", Algorithm: AlgorithmSpec{Name: "a", Image: "alpine:3.20", CPU: 2, MemoryMiB: 4096, Architecture: tt.arch}}
		in, err := p.taskDefinitionInput(spec, StageResources{ExecutionRoleARN: "arn:exec", TaskRoleARN: "arn:task"})
		if err != nil {
			t.Fatal(err)
		}
		got := in.RuntimePlatform
		if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
			t.Errorf("architecture %q: runtime platform %+v, want %+v", tt.arch, got, tt.want)
		}
		if aws.ToString(in.Cpu) != "2048" || aws.ToString(in.Memory) != "4096" {
			t.Errorf("architecture %q: size %s/%s, want 2048/4096", tt.arch, aws.ToString(in.Cpu), aws.ToString(in.Memory))
		}
	}
}
