package workflow

import (
	"cmp"
	"slices"
	"strings"
)

// Processor architectures of instance types (EC2's names).
const (
	ArchX86 = "x86_64"
	ArchARM = "arm64" // AWS Graviton
)

// Short names for the rows of instanceTable.
const (
	x86   = ArchX86
	arm64 = ArchARM
)

// InstanceType is what an EC2 instance type offers a container.
type InstanceType struct {
	Name      string // "g5.xlarge"
	VCPU      int
	MemoryMiB int
	GPUs      int    // 0: none
	GPUModel  string // maker and model, "NVIDIA A10G"; "" without GPUs or when unknown
	// Accelerator names a machine-learning chip that is not a GPU ("AWS
	// Inferentia2"); Fargate has none either.
	Accelerator string
	Arch        string // ArchX86 or ArchARM
}

// Accelerated reports whether the type has GPUs or other accelerators,
// which Fargate does not offer.
func (t InstanceType) Accelerated() bool { return t.GPUs > 0 || t.Accelerator != "" }

// JobMemoryMiB is the memory a container may ask of one instance of the
// type when it runs there (AWS Batch on EC2): less than the installed
// memory, because the kernel and platform keep some before the ECS agent
// registers the instance (an m4.large's 8192 MiB register as 7985) and the
// Batch AMI reserves 32 MiB more for the ECS agent and system processes; AWS
// recommends keeping a 5% buffer for them, which covers both:
// https://docs.aws.amazon.com/batch/latest/userguide/memory-management.html
// https://docs.aws.amazon.com/batch/latest/userguide/ecs-reserved-memory.html
// A job asking more is never placed on the type.
func (t InstanceType) JobMemoryMiB() int { return t.MemoryMiB * 95 / 100 }

// family is the part of an instance type's name before the dot: "g5".
func family(name string) string {
	f, _, _ := strings.Cut(name, ".")
	return f
}

// acceleratorModels names the GPUs or accelerators of each accelerated
// family, from AWS's accelerated computing specifications:
// https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html
var acceleratorModels = map[string]struct{ gpu, accelerator string }{
	"p3":      {gpu: "NVIDIA V100"},
	"p3dn":    {gpu: "NVIDIA V100"},
	"p4d":     {gpu: "NVIDIA A100"},
	"p4de":    {gpu: "NVIDIA A100"},
	"p5":      {gpu: "NVIDIA H100"},
	"p5en":    {gpu: "NVIDIA H200"},
	"p6-b200": {gpu: "NVIDIA B200"},
	"g4dn":    {gpu: "NVIDIA T4"},
	"g4ad":    {gpu: "AMD Radeon Pro V520"},
	"g5":      {gpu: "NVIDIA A10G"},
	"g5g":     {gpu: "NVIDIA T4G"},
	"g6":      {gpu: "NVIDIA L4"},
	"g6e":     {gpu: "NVIDIA L40S"},
	"inf1":    {accelerator: "AWS Inferentia"},
	"inf2":    {accelerator: "AWS Inferentia2"},
	"trn1":    {accelerator: "AWS Trainium"},
	"trn1n":   {accelerator: "AWS Trainium"},
}

// instanceRow is one row of instanceTable.
type instanceRow struct {
	name      string
	vcpu, mem int // vCPUs, MiB
	gpus      int
	arch      string
}

func (r instanceRow) instanceType() InstanceType {
	m := acceleratorModels[family(r.name)]
	t := InstanceType{Name: r.name, VCPU: r.vcpu, MemoryMiB: r.mem, GPUs: r.gpus, Arch: r.arch, Accelerator: m.accelerator}
	if r.gpus > 0 {
		t.GPUModel = m.gpu
	}
	return t
}

// instanceIndex maps each name of instanceTable to its row.
var instanceIndex = func() map[string]int {
	idx := make(map[string]int, len(instanceTable))
	for i, r := range instanceTable {
		idx[r.name] = i
	}
	return idx
}()

// KnownInstanceType returns the figures of an instance type of cloudpipe's
// own table (instancetypes_table.go), which needs no AWS access.
func KnownInstanceType(name string) (InstanceType, bool) {
	i, ok := instanceIndex[name]
	if !ok {
		return InstanceType{}, false
	}
	return instanceTable[i].instanceType(), true
}

// InstanceTypeLookup asks AWS about an instance type the table does not know
// (EC2 DescribeInstanceTypes). found is false when AWS does not know it
// either; err is set when AWS could not be asked, and Load then fails
// rather than call the file wrong.
type InstanceTypeLookup func(name string) (t InstanceType, found bool, err error)

// suggestInstanceTypes returns up to three known types close to an unknown
// name: the same name in another case, names a typo away, or the sizes of
// its family.
func suggestInstanceTypes(name string) []string {
	lower := strings.ToLower(strings.TrimSpace(name))
	if _, ok := instanceIndex[lower]; ok {
		return []string{lower}
	}
	type cand struct {
		name string
		d    int
	}
	var close []cand
	if len(lower) <= 64 { // no typo is that long, and distance is quadratic
		for _, r := range instanceTable {
			if abs(len(r.name)-len(lower)) > 2 {
				continue
			}
			if d := editDistance(lower, r.name); d <= 2 {
				close = append(close, cand{r.name, d})
			}
		}
	}
	slices.SortStableFunc(close, func(a, b cand) int { return cmp.Compare(a.d, b.d) })
	var out []string
	for _, c := range close {
		out = append(out, c.name)
	}
	if len(out) == 0 {
		// A known family with an unknown size: show its sizes.
		fam := family(lower)
		for _, r := range instanceTable {
			if family(r.name) == fam {
				out = append(out, r.name)
			}
		}
	}
	return out[:min(len(out), 3)]
}

// smallestFitting returns the smallest type of family (by vCPUs, then
// memory) that offers vcpu vCPUs and memoryMiB, or "" if none does: the
// suggestion when an algorithm asks more than its type has. onEC2 counts
// only the memory a container can have on an instance (JobMemoryMiB).
func smallestFitting(fam string, vcpu float64, memoryMiB int, onEC2 bool) string {
	best := -1
	for i, r := range instanceTable {
		usable := r.mem
		if onEC2 {
			usable = r.instanceType().JobMemoryMiB()
		}
		if family(r.name) != fam || float64(r.vcpu) < vcpu || usable < memoryMiB {
			continue
		}
		if best < 0 || r.vcpu < instanceTable[best].vcpu || r.vcpu == instanceTable[best].vcpu && r.mem < instanceTable[best].mem {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	return instanceTable[best].name
}

// defaultSuggestedFamily is the family suggested when an algorithm needs an
// instance type and names none: current general purpose x86.
const defaultSuggestedFamily = "m7i"
