package workflow_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestKnownInstanceTypes checks rows of the table against AWS's published
// figures (https://docs.aws.amazon.com/ec2/latest/instancetypes/gp.html,
// co.html, mo.html, ac.html) and the models given to accelerated families.
func TestKnownInstanceTypes(t *testing.T) {
	tests := []workflow.InstanceType{
		{Name: "t2.micro", VCPU: 1, MemoryMiB: 1024, Arch: "x86_64"},
		{Name: "t4g.micro", VCPU: 2, MemoryMiB: 1024, Arch: "arm64"},
		{Name: "m5.large", VCPU: 2, MemoryMiB: 8192, Arch: "x86_64"},
		{Name: "m7g.xlarge", VCPU: 4, MemoryMiB: 16384, Arch: "arm64"},
		{Name: "c7i.2xlarge", VCPU: 8, MemoryMiB: 16384, Arch: "x86_64"},
		{Name: "r6i.large", VCPU: 2, MemoryMiB: 16384, Arch: "x86_64"},
		{Name: "x2idn.16xlarge", VCPU: 64, MemoryMiB: 1048576, Arch: "x86_64"},
		{Name: "p3.2xlarge", VCPU: 8, MemoryMiB: 62464, GPUs: 1, GPUModel: "NVIDIA V100", Arch: "x86_64"},
		{Name: "p4d.24xlarge", VCPU: 96, MemoryMiB: 1179648, GPUs: 8, GPUModel: "NVIDIA A100", Arch: "x86_64"},
		{Name: "p5.48xlarge", VCPU: 192, MemoryMiB: 2097152, GPUs: 8, GPUModel: "NVIDIA H100", Arch: "x86_64"},
		{Name: "g4dn.xlarge", VCPU: 4, MemoryMiB: 16384, GPUs: 1, GPUModel: "NVIDIA T4", Arch: "x86_64"},
		{Name: "g5.12xlarge", VCPU: 48, MemoryMiB: 196608, GPUs: 4, GPUModel: "NVIDIA A10G", Arch: "x86_64"},
		{Name: "g6.xlarge", VCPU: 4, MemoryMiB: 16384, GPUs: 1, GPUModel: "NVIDIA L4", Arch: "x86_64"},
		{Name: "g5g.xlarge", VCPU: 4, MemoryMiB: 8192, GPUs: 1, GPUModel: "NVIDIA T4G", Arch: "arm64"},
		{Name: "inf2.xlarge", VCPU: 4, MemoryMiB: 16384, Accelerator: "AWS Inferentia2", Arch: "x86_64"},
		{Name: "trn1.2xlarge", VCPU: 8, MemoryMiB: 32768, Accelerator: "AWS Trainium", Arch: "x86_64"},
	}
	for _, want := range tests {
		got, ok := workflow.KnownInstanceType(want.Name)
		if !ok || got != want {
			t.Errorf("KnownInstanceType(%s) = %+v, %v; want %+v", want.Name, got, ok, want)
		}
	}
	for _, name := range []string{"", "m5", "m5.metal", "M5.large", "t1.micro"} {
		if got, ok := workflow.KnownInstanceType(name); ok {
			t.Errorf("KnownInstanceType(%q) = %+v, want unknown", name, got)
		}
	}
}

// TestInstanceTableShape walks every known family's sizes: positive figures,
// sizes growing, accelerated families always named.
func TestInstanceTableShape(t *testing.T) {
	sizes := []string{"nano", "micro", "small", "medium", "large", "xlarge"}
	for _, n := range []int{2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 48} {
		sizes = append(sizes, fmt.Sprintf("%dxlarge", n))
	}
	families := strings.Fields("t2 t3 t3a t4g m5 m6i m6g m7i m7g c5 c6i c6g c7i c7g r5 r6i r7i r7g x2idn p3 p4d p5 g4dn g4ad g5 g5g g6 g6e inf1 inf2 trn1")
	for _, fam := range families {
		var prev workflow.InstanceType
		found := 0
		for _, size := range sizes {
			it, ok := workflow.KnownInstanceType(fam + "." + size)
			if !ok {
				continue
			}
			found++
			if it.VCPU <= 0 || it.MemoryMiB <= 0 || it.VCPU < prev.VCPU || it.MemoryMiB < prev.MemoryMiB {
				t.Errorf("%s: %d vCPU, %d MiB after %s's %d vCPU, %d MiB", it.Name, it.VCPU, it.MemoryMiB, prev.Name, prev.VCPU, prev.MemoryMiB)
			}
			if it.GPUs > 0 && it.GPUModel == "" || it.GPUs == 0 && it.GPUModel != "" {
				t.Errorf("%s: %d GPUs of model %q", it.Name, it.GPUs, it.GPUModel)
			}
			if it.Arch != workflow.ArchX86 && it.Arch != workflow.ArchARM {
				t.Errorf("%s: architecture %q", it.Name, it.Arch)
			}
			prev = it
		}
		if found == 0 {
			t.Errorf("family %s: no type in the table", fam)
		}
		accelerated := strings.HasPrefix(fam, "p") || strings.HasPrefix(fam, "g") || strings.HasPrefix(fam, "inf") || strings.HasPrefix(fam, "trn")
		if prev.Accelerated() != accelerated {
			t.Errorf("family %s: Accelerated() = %v", fam, prev.Accelerated())
		}
	}
}

// TestJobMemory: an instance leaves 95% of its memory to containers (AWS
// Batch memory management; an m4.large's 8192 MiB register as 7985, less 32
// MiB the ECS agent reserves).
func TestJobMemory(t *testing.T) {
	for _, tt := range []struct {
		mem, want int
	}{{1024, 972}, {8192, 7782}, {16384, 15564}, {2097152, 1992294}} {
		if got := (workflow.InstanceType{MemoryMiB: tt.mem}).JobMemoryMiB(); got != tt.want {
			t.Errorf("JobMemoryMiB of %d MiB = %d, want %d", tt.mem, got, tt.want)
		}
		if m4Large := 7985 - 32; tt.mem == 8192 && tt.want > m4Large {
			t.Errorf("%d MiB allowed on an 8 GiB instance, which registers %d for jobs", tt.want, m4Large)
		}
	}
}

// TestFargateSize checks the one table of Fargate sizes.
func TestFargateSize(t *testing.T) {
	tests := []struct {
		cpu              float64
		mem              int
		wantCPU, wantMem int
		ok               bool
	}{
		{0, 0, 256, 512, true},
		{0.25, 512, 256, 512, true},
		{0.25, 600, 256, 1024, true},
		{0.25, 3000, 512, 3072, true}, // 256 tops out at 2 GiB
		{1, 0, 1024, 2048, true},      // vCPUs
		{1, 2048, 1024, 2048, true},
		{1.5, 1000, 2048, 4096, true},
		{256, 512, 256, 512, true},     // CPU units
		{1024, 9000, 2048, 9216, true}, // 1024 units tops out at 8 GiB
		{4, 8192, 4096, 8192, true},
		{8, 20000, 8192, 20480, true},
		{16, 122880, 16384, 122880, true},
		{16, 200000, 0, 0, false},
		{32, 0, 0, 0, false},
		{16384, 122881, 0, 0, false},
	}
	for _, tt := range tests {
		cpu, mem, ok := workflow.FargateSize(tt.cpu, tt.mem)
		if ok != tt.ok || cpu != tt.wantCPU || mem != tt.wantMem {
			t.Errorf("FargateSize(%v, %d) = %d, %d, %v; want %d, %d, %v", tt.cpu, tt.mem, cpu, mem, ok, tt.wantCPU, tt.wantMem, tt.ok)
		}
	}
}
