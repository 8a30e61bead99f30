package workflow

import "math"

// fargateSizes lists, for each Fargate task CPU size (CPU units, 1024 = one
// vCPU), the memory sizes (MiB) it may be combined with, smallest first:
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size
// It is the one table of Fargate sizes: validation and placement decide with
// it, and provision sizes task definitions with it (FargateSize).
var fargateSizes = []struct {
	cpu      int
	memories []int
}{
	{256, []int{512, 1024, 2048}},
	{512, steps(1024, 4096, 1024)},
	{1024, steps(2048, 8192, 1024)},
	{2048, steps(4096, 16384, 1024)},
	{4096, steps(8192, 30720, 1024)},
	{8192, steps(16384, 61440, 4096)},
	{16384, steps(32768, 122880, 8192)},
}

func steps(from, to, step int) []int {
	var out []int
	for m := from; m <= to; m += step {
		out = append(out, m)
	}
	return out
}

// The largest Fargate task, for messages.
const (
	fargateMaxVCPU      = 16
	fargateMaxMemoryMiB = 122880 // 120 GiB
)

// VCPUUnitsThreshold separates the two ways algorithm files state CPU: the
// original format gives a count of vCPUs (1, 2, 0.5), ECS gives CPU units
// (256, 1024). No task has 64 vCPUs and none has fewer than 64 units, so a
// value below 64 is read as vCPUs and anything else as units.
const VCPUUnitsThreshold = 64

// VCPUs converts an algorithm's CPU field to vCPUs (see VCPUUnitsThreshold).
func VCPUs(cpu float64) float64 {
	if cpu >= VCPUUnitsThreshold {
		return cpu / 1024
	}
	return cpu
}

// FargateSize returns the smallest valid Fargate (cpu, memory) combination
// that gives at least cpu (vCPUs below 64, else CPU units; see
// VCPUUnitsThreshold) and memoryMiB. Zero values ask for the minimum. ok is
// false when the request exceeds the largest Fargate task (16 vCPU, 120 GiB).
func FargateSize(cpu float64, memoryMiB int) (cpuUnits, memory int, ok bool) {
	wantCPU := int(math.Ceil(VCPUs(cpu) * 1024))
	for _, s := range fargateSizes {
		if s.cpu < wantCPU {
			continue
		}
		for _, m := range s.memories {
			if m >= memoryMiB {
				return s.cpu, m, true
			}
		}
	}
	return 0, 0, false
}
