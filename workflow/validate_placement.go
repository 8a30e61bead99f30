package workflow

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

var (
	pInstanceType = path{}.key("instance_type")
	pPrivileged   = path{}.key("privileged")
	pCapacity     = path{}.key("capacity")
)

// typeLookup carries LoadOptions.InstanceTypes through one Load, with the
// first error it returned: AWS could not be asked, so the file cannot be
// judged and Load fails instead.
type typeLookup struct {
	fn  InstanceTypeLookup
	err error
}

// checkCapacity checks a capacity value in a workflow or a step.
func checkCapacity(r *report, p path, c string) {
	if c != "" && !slices.Contains(capacities, c) {
		r.value(p, "capacity %s is not known: use \"fargate\" (ECS tasks on Fargate), \"ec2\" (AWS Batch on On-Demand instances of the algorithm's instance_type) or \"spot\" (the same on Spot instances)", quote(c))
	}
}

// checkAlgorithmPlacement checks an algorithm's instance_type, privileged,
// CPU and memory against each other: the type exists (in the table, else
// through lk), the container fits on it, and an algorithm that cannot run on
// Fargate names a type to run on. It records the type's figures in a.itype.
func checkAlgorithmPlacement(r *report, a *Algorithm, lk *typeLookup) {
	var t InstanceType
	if a.InstanceType != "" {
		var ok bool
		if t, ok = resolveInstanceType(r, a.InstanceType, lk); !ok {
			return
		}
		a.itype = &t
	}
	if a.CPU <= 0 || a.Memory.Suggested <= 0 {
		return // reported already; nothing to compare
	}
	vcpu, mem := VCPUs(float64(a.CPU)), a.Memory.Suggested
	if a.InstanceType == "" {
		if _, _, ok := FargateSize(float64(a.CPU), mem); !ok {
			at := pSuggested
			if vcpu > fargateMaxVCPU {
				at = pCPU
			}
			r.value(at, "CPU %s and memory.suggested %d MiB are more than the largest Fargate task (16 vCPU, 120 GiB): name an instance_type that has them%s", cpuString(float64(a.CPU)), mem, example(smallestFitting(defaultSuggestedFamily, vcpu, mem, true)))
		}
		if a.Privileged {
			r.value(pPrivileged, "a privileged container runs on an EC2 instance through AWS Batch (Fargate runs no privileged container): set instance_type to the type to run it on%s", example(smallestFitting(defaultSuggestedFamily, vcpu, mem, true)))
		}
		return
	}
	onEC2 := a.Privileged || fargateRefuses(t) != ""
	if !onEC2 {
		// A type Fargate can serve only sets a floor: the task is sized to
		// the larger of the type and the algorithm's own CPU and memory. So
		// the original wrap's default t2.micro on an algorithm that asks for
		// more is not an error, only worth knowing.
		if vcpu > float64(t.VCPU) || mem > t.MemoryMiB {
			r.note(pInstanceType, "instance type %s (%d vCPU, %d MiB) is smaller than CPU %s and memory.suggested %d MiB: the stage runs on Fargate sized to the algorithm's own figures", t.Name, t.VCPU, t.MemoryMiB, cpuString(float64(a.CPU)), mem)
		}
		return
	}
	if vcpu > float64(t.VCPU) {
		r.value(pCPU, "CPU %s is more than the %d vCPUs of instance type %s: lower CPU, or choose a larger type%s", cpuString(float64(a.CPU)), t.VCPU, t.Name, example(smallestFitting(family(t.Name), vcpu, mem, onEC2)))
	}
	if mem > t.JobMemoryMiB() {
		r.value(pSuggested, "memory.suggested (%d MiB) is more than the %d MiB a container can have on instance type %s (its %d MiB less 5%% kept for the ECS agent and the system): lower it, or choose a larger type%s", mem, t.JobMemoryMiB(), t.Name, t.MemoryMiB, example(smallestFitting(family(t.Name), vcpu, mem, true)))
	}
}

// resolveInstanceType finds name in the table, else asks lk, and reports a
// name neither knows, with the closest known names.
func resolveInstanceType(r *report, name string, lk *typeLookup) (InstanceType, bool) {
	if t, ok := KnownInstanceType(name); ok {
		return t, true
	}
	hint := ""
	if s := suggestInstanceTypes(name); len(s) > 0 {
		quoted := make([]string, len(s))
		for i, n := range s {
			quoted[i] = strconv.Quote(n)
		}
		hint = " (did you mean " + strings.Join(quoted, " or ") + "?)"
	}
	if lk == nil || lk.fn == nil {
		r.value(pInstanceType, "instance type %s is not one cloudpipe knows offline%s: use a type of the families listed in docs/workflow-reference.md, or leave it empty to run on Fargate; agent plan also asks EC2 about types missing from that list", quote(name), hint)
		return InstanceType{}, false
	}
	if lk.err != nil {
		return InstanceType{}, false // Load fails with it; no verdict on the file
	}
	t, found, err := lk.fn(name)
	switch {
	case err != nil:
		lk.err = fmt.Errorf("check instance type %s with EC2: %w", name, err)
		return InstanceType{}, false
	case !found:
		r.value(pInstanceType, "instance type %s does not exist in EC2%s: name an EC2 instance type such as \"m7i.large\", or leave it empty to run on Fargate", quote(name), hint)
		return InstanceType{}, false
	}
	t.Name = name
	if t.Arch == "" {
		t.Arch = ArchX86
	}
	return t, true
}

// checkStepPlacement checks a step's capacity (or the workflow's, which it
// inherits) against its algorithm: capacity "fargate" for an algorithm
// Fargate cannot run, and "ec2" or "spot" without an instance type to run
// on, or for a container larger than the type leaves it.
func checkStepPlacement(r *report, p path, w *Workflow, st Step, a *Algorithm) {
	c, at := st.Capacity, p.key("capacity")
	if c == "" {
		c, at = w.Capacity, pCapacity
	}
	if !slices.Contains(capacities, c) {
		return // none, or reported by checkCapacity
	}
	t, named := a.instanceType()
	switch c {
	case CapacityFargate:
		if a.Privileged {
			r.value(at, "capacity \"fargate\" cannot run algorithm %s: it is privileged, and Fargate runs no privileged container; use \"ec2\" or \"spot\", or remove \"privileged\" from %s", a.Name, a.File)
		}
		if named {
			if why := fargateRefuses(t); why != "" {
				r.value(at, "capacity \"fargate\" cannot run algorithm %s on instance type %s: %s; use \"ec2\" or \"spot\", or another instance_type in %s", a.Name, t.Name, why, a.File)
			}
		}
	case CapacityEC2, CapacitySpot:
		switch {
		case a.InstanceType == "":
			r.value(at, "capacity %q runs stages on EC2 instances of the algorithm's instance_type, and algorithm %s names none: set instance_type in %s%s, or use capacity \"fargate\"", c, a.Name, a.File, example(smallestFitting(defaultSuggestedFamily, VCPUs(float64(a.CPU)), a.Memory.Suggested, true)))
		case named && a.Memory.Suggested > t.JobMemoryMiB():
			r.value(at, "capacity %q runs algorithm %s on instance type %s, where a container can have %d MiB (its %d MiB less 5%% kept for the ECS agent and the system), and memory.suggested is %d MiB: lower it, or choose a larger type%s", c, a.Name, t.Name, t.JobMemoryMiB(), t.MemoryMiB, a.Memory.Suggested, example(smallestFitting(family(t.Name), VCPUs(float64(a.CPU)), a.Memory.Suggested, true)))
		}
	}
}

// cpuString prints an algorithm's CPU as written, with its vCPUs when it
// is given in CPU units.
func cpuString(cpu float64) string {
	s := strconv.FormatFloat(cpu, 'f', -1, 64)
	if cpu >= VCPUUnitsThreshold {
		s += " (" + formatVCPU(VCPUs(cpu)) + " vCPUs)"
	}
	return s
}

// example is ", e.g. \"name\"", or "" without a name.
func example(name string) string {
	if name == "" {
		return ""
	}
	return ", e.g. " + strconv.Quote(name)
}
