package workflow_test

import (
	"fmt"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestPlacement loads a workflow of one stage for each capacity case and
// checks where Placement puts the stage, and the line a plan shows for it.
func TestPlacement(t *testing.T) {
	tests := []struct {
		name         string
		alg          map[string]any // set on the seed algorithm (CPU 1, suggested 128 MiB)
		wfCapacity   string
		stepCapacity string
		want         workflow.Placement // Why is checked through the line
		wantLine     string
	}{
		{"no instance type", nil, "", "",
			workflow.Placement{Platform: "fargate", Capacity: "fargate", VCPU: 1, MemoryMiB: 2048, Arch: "x86_64"},
			"Fargate 1 vCPU/2 GiB"},
		{"no instance type, small", map[string]any{"CPU": 0.25, "memory": map[string]any{"minimal": 64, "suggested": 512}}, "", "",
			workflow.Placement{Platform: "fargate", Capacity: "fargate", VCPU: 0.25, MemoryMiB: 512, Arch: "x86_64"},
			"Fargate 0.25 vCPU/512 MiB"},
		{"the original default t2.micro", map[string]any{"instance_type": "t2.micro", "CPU": 0.25}, "", "",
			workflow.Placement{Platform: "fargate", Capacity: "fargate", InstanceType: "t2.micro", VCPU: 1, MemoryMiB: 2048, Arch: "x86_64"},
			"Fargate 1 vCPU/2 GiB (t2.micro)"},
		{"a fitting type sizes the task up", map[string]any{"instance_type": "m5.2xlarge"}, "", "",
			workflow.Placement{Platform: "fargate", Capacity: "fargate", InstanceType: "m5.2xlarge", VCPU: 8, MemoryMiB: 32768, Arch: "x86_64"},
			"Fargate 8 vCPU/32 GiB (m5.2xlarge)"},
		{"the algorithm asks more than the type's minimum Fargate size", map[string]any{"instance_type": "t3.medium", "memory": map[string]any{"minimal": 64, "suggested": 3500}}, "", "",
			workflow.Placement{Platform: "fargate", Capacity: "fargate", InstanceType: "t3.medium", VCPU: 2, MemoryMiB: 4096, Arch: "x86_64"},
			"Fargate 2 vCPU/4 GiB (t3.medium)"},
		{"capacity fargate with a fitting type", map[string]any{"instance_type": "c6i.large"}, "fargate", "",
			workflow.Placement{Platform: "fargate", Capacity: "fargate", InstanceType: "c6i.large", VCPU: 2, MemoryMiB: 4096, Arch: "x86_64"},
			"Fargate 2 vCPU/4 GiB (c6i.large)"},
		{"graviton on fargate", map[string]any{"instance_type": "t4g.micro"}, "", "",
			workflow.Placement{Platform: "fargate", Capacity: "fargate", InstanceType: "t4g.micro", VCPU: 2, MemoryMiB: 4096, Arch: "arm64"},
			"Fargate 2 vCPU/4 GiB arm64 (t4g.micro)"},
		{"GPU type", map[string]any{"instance_type": "g5.xlarge", "CPU": 2.5, "memory": map[string]any{"minimal": 64, "suggested": 8192}}, "", "",
			workflow.Placement{Platform: "batch", Capacity: "ec2", InstanceType: "g5.xlarge", VCPU: 3, MemoryMiB: 8192, GPUs: 1, GPUModel: "NVIDIA A10G", Arch: "x86_64"},
			"AWS Batch g5.xlarge on ec2, 3 vCPU/8 GiB, 1 GPU (Fargate has no GPU)"},
		{"GPU type on spot", map[string]any{"instance_type": "g5.12xlarge"}, "spot", "",
			workflow.Placement{Platform: "batch", Capacity: "spot", InstanceType: "g5.12xlarge", VCPU: 1, MemoryMiB: 128, GPUs: 4, GPUModel: "NVIDIA A10G", Arch: "x86_64"},
			"AWS Batch g5.12xlarge on spot, 1 vCPU/128 MiB, 4 GPUs (Fargate has no GPU)"},
		{"accelerator type", map[string]any{"instance_type": "inf2.xlarge"}, "", "",
			workflow.Placement{Platform: "batch", Capacity: "ec2", InstanceType: "inf2.xlarge", VCPU: 1, MemoryMiB: 128, Arch: "x86_64"},
			"AWS Batch inf2.xlarge on ec2, 1 vCPU/128 MiB (Fargate has no AWS Inferentia2)"},
		{"larger than Fargate", map[string]any{"instance_type": "r6i.8xlarge", "CPU": 32, "memory": map[string]any{"minimal": 64, "suggested": 200000}}, "", "",
			workflow.Placement{Platform: "batch", Capacity: "ec2", InstanceType: "r6i.8xlarge", VCPU: 32, MemoryMiB: 200000, Arch: "x86_64"},
			"AWS Batch r6i.8xlarge on ec2, 32 vCPU/200000 MiB (Fargate tasks have at most 16 vCPU and 120 GiB)"},
		{"privileged", map[string]any{"instance_type": "m5.large", "privileged": true}, "", "",
			workflow.Placement{Platform: "batch", Capacity: "ec2", InstanceType: "m5.large", VCPU: 1, MemoryMiB: 128, Arch: "x86_64"},
			"AWS Batch m5.large on ec2, 1 vCPU/128 MiB (Fargate runs no privileged container)"},
		{"capacity ec2 on the workflow", map[string]any{"instance_type": "m5.large"}, "ec2", "",
			workflow.Placement{Platform: "batch", Capacity: "ec2", InstanceType: "m5.large", VCPU: 1, MemoryMiB: 128, Arch: "x86_64"},
			`AWS Batch m5.large on ec2, 1 vCPU/128 MiB (the workflow asks for capacity "ec2")`},
		{"capacity spot on the step", map[string]any{"instance_type": "m5.large"}, "", "spot",
			workflow.Placement{Platform: "batch", Capacity: "spot", InstanceType: "m5.large", VCPU: 1, MemoryMiB: 128, Arch: "x86_64"},
			`AWS Batch m5.large on spot, 1 vCPU/128 MiB (the step asks for capacity "spot")`},
		{"the step's capacity wins", map[string]any{"instance_type": "m5.large"}, "spot", "fargate",
			workflow.Placement{Platform: "fargate", Capacity: "fargate", InstanceType: "m5.large", VCPU: 2, MemoryMiB: 8192, Arch: "x86_64"},
			"Fargate 2 vCPU/8 GiB (m5.large)"},
		{"graviton GPU on spot", map[string]any{"instance_type": "g5g.xlarge"}, "", "spot",
			workflow.Placement{Platform: "batch", Capacity: "spot", InstanceType: "g5g.xlarge", VCPU: 1, MemoryMiB: 128, GPUs: 1, GPUModel: "NVIDIA T4G", Arch: "arm64"},
			"AWS Batch g5g.xlarge on spot, 1 vCPU/128 MiB arm64, 1 GPU (Fargate has no GPU)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := loadOne(t, tt.alg, tt.wfCapacity, tt.stepCapacity)
			got := w.Stages[0].Placement(w)
			line := got.String()
			got.Why = ""
			if got != tt.want {
				t.Errorf("Placement =\n %+v\nwant\n %+v", got, tt.want)
			}
			if line != tt.wantLine {
				t.Errorf("String() = %q, want %q", line, tt.wantLine)
			}
		})
	}
}

// loadOne loads the seed algorithm with alg's fields set and a workflow of
// one step using it with the given capacities, and returns the workflow,
// failing the test on any problem.
func loadOne(t *testing.T, alg map[string]any, wfCapacity, stepCapacity string) *workflow.Workflow {
	t.Helper()
	a := baseAlgorithm(t)
	for k, v := range alg {
		a[k] = v
	}
	w := baseWorkflow()
	if wfCapacity != "" {
		w["capacity"] = wfCapacity
	}
	if stepCapacity != "" {
		step0(w)["capacity"] = stepCapacity
	}
	cfg, ps := workflow.Load(repo(map[string][]byte{"workflows/w.json": mustJSON(t, w), seedAlgorithmFile: mustJSON(t, a)}))
	if len(ps) > 0 || len(cfg.Workflows) != 1 {
		t.Fatalf("load: %v", ps)
	}
	return cfg.Workflows[0]
}

// TestPlacementOfLookedUpType: a type the table lacks, found through
// LoadOptions.InstanceTypes, is placed by the figures EC2 gave.
func TestPlacementOfLookedUpType(t *testing.T) {
	a := baseAlgorithm(t)
	a["instance_type"] = "g9.xlarge"
	lookup := func(name string) (workflow.InstanceType, bool, error) {
		if name != "g9.xlarge" {
			return workflow.InstanceType{}, false, fmt.Errorf("asked about %q", name)
		}
		return workflow.InstanceType{VCPU: 4, MemoryMiB: 16384, GPUs: 2, GPUModel: "NVIDIA X1"}, true, nil
	}
	cfg, ps, err := workflow.LoadWith(repo(map[string][]byte{"workflows/w.json": mustJSON(t, baseWorkflow()), seedAlgorithmFile: mustJSON(t, a)}),
		workflow.LoadOptions{InstanceTypes: lookup})
	if err != nil || len(ps) > 0 || len(cfg.Workflows) != 1 {
		t.Fatalf("LoadWith: %v, %v", ps, err)
	}
	w := cfg.Workflows[0]
	p := w.Stages[0].Placement(w)
	if p.Platform != workflow.PlatformBatch || p.GPUs != 2 || p.GPUModel != "NVIDIA X1" || p.Arch != workflow.ArchX86 {
		t.Errorf("Placement = %+v, want AWS Batch with the 2 GPUs EC2 reported, on x86_64", p)
	}
}
