package workflow

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Capacities: the values of "capacity" in a workflow or a step.
const (
	CapacityFargate = "fargate" // ECS tasks on Fargate
	CapacityEC2     = "ec2"     // AWS Batch on On-Demand EC2 instances
	CapacitySpot    = "spot"    // AWS Batch on Spot instances
)

// capacities lists the accepted capacity values, for messages.
var capacities = []string{CapacityFargate, CapacityEC2, CapacitySpot}

// Platforms a stage runs on.
const (
	PlatformFargate = "fargate" // an ECS task on Fargate
	PlatformBatch   = "batch"   // an AWS Batch job on EC2 instances of one type
)

// Placement says where a stage's containers run and how big they are. It
// is decided from the workflow file alone (Stage.Placement), so a plan, an
// apply and the provisioning of AWS Batch resources all agree.
type Placement struct {
	Platform string // PlatformFargate or PlatformBatch
	// Capacity is CapacityFargate on Fargate, and CapacityEC2 or
	// CapacitySpot on AWS Batch.
	Capacity string
	// InstanceType is the algorithm's instance_type; "" when it names none
	// (then the platform is Fargate). On Fargate it only sized the task.
	InstanceType string
	// VCPU and MemoryMiB are what the container gets: on Fargate the task
	// size (a valid Fargate combination, at least the algorithm's CPU and
	// memory.suggested and the instance type's vCPUs and memory); on AWS
	// Batch the job's resource requirements (the algorithm's CPU rounded up
	// to whole vCPUs, at least 1, and memory.suggested).
	VCPU      float64
	MemoryMiB int
	// GPUs is the job's GPU requirement on AWS Batch: every GPU of the
	// instance type, so a job never shares an instance's GPUs; GPUModel
	// names them. 0 on Fargate, which has none.
	GPUs     int
	GPUModel string
	// Arch is the processor architecture the containers run on (ArchX86 or
	// ArchARM): the instance type's, x86_64 without one. The algorithm's
	// image and the runner image must exist for it.
	Arch string
	// Why says in a few words why the stage is on this platform, for plans.
	Why string
}

// fargateRefuses says why Fargate cannot serve instance type t, or "".
// Fargate has no GPU or other accelerator and runs at most 16 vCPU and 120
// GiB per task:
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html
// Nor does it run privileged containers ("not supported for ... tasks run
// on Fargate"), which Placement checks on the algorithm:
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html#container_definition_security
func fargateRefuses(t InstanceType) string {
	switch {
	case t.GPUs > 0:
		return "Fargate has no GPU"
	case t.Accelerator != "":
		return "Fargate has no " + t.Accelerator
	case t.VCPU > fargateMaxVCPU || t.MemoryMiB > fargateMaxMemoryMiB:
		return fmt.Sprintf("Fargate tasks have at most %d vCPU and 120 GiB", fargateMaxVCPU)
	}
	return ""
}

// capacity returns the stage's capacity as written: the step's, else the
// workflow's; "" when neither sets one.
func (s Stage) capacity(w *Workflow) string {
	if s.Step.Capacity != "" {
		return s.Step.Capacity
	}
	return w.Capacity
}

// instanceType returns the figures of the algorithm's instance_type, and
// whether it names one it could find.
func (a *Algorithm) instanceType() (InstanceType, bool) {
	if a.InstanceType == "" {
		return InstanceType{}, false
	}
	if a.itype != nil {
		return *a.itype, true
	}
	return KnownInstanceType(a.InstanceType)
}

// Placement decides where the stage runs, for w, the workflow it belongs to:
//
//   - no instance_type: Fargate, sized from CPU and memory.suggested;
//   - an instance type Fargate can serve (no GPU or accelerator, at most 16
//     vCPU and 120 GiB), an algorithm that is not privileged and a capacity
//     that is "fargate" or not set: Fargate, sized to at least the type's
//     vCPUs and memory;
//   - otherwise (a GPU or accelerator type, a larger one, a privileged
//     algorithm, or capacity "ec2" or "spot"): AWS Batch on instances of
//     that type, On-Demand unless the capacity is "spot".
//
// Validation refuses what cannot be placed (capacity "fargate" for a type
// or algorithm Fargate cannot run, capacity "ec2" or "spot" or privileged
// without an instance type), so for a valid workflow's stage the placement
// is always one the stage can run on.
func (s Stage) Placement(w *Workflow) Placement {
	a := s.Algorithm
	capacity := s.capacity(w)
	t, named := a.instanceType()
	p := Placement{InstanceType: a.InstanceType, Arch: ArchX86}
	if named && t.Arch != "" {
		p.Arch = t.Arch
	}
	vcpu, mem := VCPUs(float64(a.CPU)), a.Memory.Suggested

	why := ""
	switch {
	case named && fargateRefuses(t) != "":
		why = fargateRefuses(t)
	case a.Privileged:
		why = "Fargate runs no privileged container"
	case capacity == CapacityEC2 || capacity == CapacitySpot:
		where := "the workflow"
		if s.Step.Capacity != "" {
			where = "the step"
		}
		why = fmt.Sprintf("%s asks for capacity %q", where, capacity)
	case a.InstanceType != "" && !named:
		why = "instance type not known" // validation refuses it; never for a valid workflow
	}
	if why == "" {
		if named {
			vcpu, mem = max(vcpu, float64(t.VCPU)), max(mem, t.MemoryMiB)
		}
		if units, m, ok := FargateSize(vcpu, mem); ok {
			p.Platform, p.Capacity = PlatformFargate, CapacityFargate
			p.VCPU, p.MemoryMiB = float64(units)/1024, m
			p.Why = "no instance_type"
			if named {
				p.Why = t.Name + " fits Fargate"
			}
			return p
		}
		why = fmt.Sprintf("Fargate tasks have at most %d vCPU and 120 GiB", fargateMaxVCPU)
	}
	p.Platform, p.Capacity = PlatformBatch, CapacityEC2
	if capacity == CapacitySpot {
		p.Capacity = CapacitySpot
	}
	p.VCPU = max(1, math.Ceil(VCPUs(float64(a.CPU))))
	p.MemoryMiB = a.Memory.Suggested
	p.GPUs, p.GPUModel = t.GPUs, t.GPUModel
	p.Why = why
	return p
}

// String is the placement in one line, as plans show it:
//
//	Fargate 1 vCPU/2 GiB (t2.micro)
//	AWS Batch g5.xlarge on spot, 4 vCPU/16 GiB, 1 GPU (Fargate has no GPU)
func (p Placement) String() string {
	var b strings.Builder
	size := formatVCPU(p.VCPU) + " vCPU/" + formatMiB(p.MemoryMiB)
	if p.Platform == PlatformFargate {
		b.WriteString("Fargate " + size)
		if p.Arch == ArchARM {
			b.WriteString(" " + ArchARM)
		}
		if p.InstanceType != "" {
			b.WriteString(" (" + p.InstanceType + ")")
		}
		return b.String()
	}
	b.WriteString("AWS Batch " + p.InstanceType + " on " + p.Capacity + ", " + size)
	if p.Arch == ArchARM {
		b.WriteString(" " + ArchARM)
	}
	if p.GPUs > 0 {
		b.WriteString(", " + strconv.Itoa(p.GPUs) + " GPU")
		if p.GPUs > 1 {
			b.WriteString("s")
		}
	}
	b.WriteString(" (" + p.Why + ")")
	return b.String()
}

// formatVCPU prints 0.25, 1, 16.
func formatVCPU(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// formatMiB prints whole GiB as GiB, anything else in MiB.
func formatMiB(m int) string {
	if m >= 1024 && m%1024 == 0 {
		return strconv.Itoa(m/1024) + " GiB"
	}
	return strconv.Itoa(m) + " MiB"
}
