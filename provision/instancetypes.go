package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// InstanceType asks EC2 (DescribeInstanceTypes, in the agent's region) for
// the figures of an instance type that workflow's own table lacks, for
// validation (sync.InstanceTypes). found is false when EC2 does not know the
// name; an error means EC2 could not be asked. Answers found are kept for
// the Provisioner's life: a type's figures never change.
//
// The call needs ec2:DescribeInstanceTypes, which IAM authorizes only on
// "*" (the action has no resource types):
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
func (p *Provisioner) InstanceType(ctx context.Context, name string) (workflow.InstanceType, bool, error) {
	p.typesMu.Lock()
	t, ok := p.types[name]
	p.typesMu.Unlock()
	if ok {
		return t, true, nil
	}
	c := p.clients("")
	out, err := c.ec2.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{
		InstanceTypes: []ec2types.InstanceType{ec2types.InstanceType(name)},
	})
	switch {
	case unknownInstanceType(err):
		return workflow.InstanceType{}, false, nil
	case err != nil:
		return workflow.InstanceType{}, false, fmt.Errorf("describe instance type %s: %w", name, err)
	}
	for _, info := range out.InstanceTypes {
		if string(info.InstanceType) != name {
			continue
		}
		t := instanceTypeOf(info)
		p.typesMu.Lock()
		p.types[name] = t
		p.typesMu.Unlock()
		return t, true, nil
	}
	return workflow.InstanceType{}, false, nil
}

// unknownInstanceType reports EC2's answer to a name it does not know:
// InvalidInstanceType ("The following supplied instance types do not
// exist: [m5.lrage]"); some emulators say InvalidInstanceType.NotFound.
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
func unknownInstanceType(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && strings.HasPrefix(api.ErrorCode(), "InvalidInstanceType")
}

// instanceTypeOf converts EC2's description into workflow's figures: the
// GPUs of every model counted (and the first one named), a Neuron device
// (AWS Inferentia, Trainium) or an inference accelerator as the
// accelerator, arm64 when that is what the type runs.
func instanceTypeOf(info ec2types.InstanceTypeInfo) workflow.InstanceType {
	t := workflow.InstanceType{Name: string(info.InstanceType), Arch: workflow.ArchX86}
	if info.VCpuInfo != nil && info.VCpuInfo.DefaultVCpus != nil {
		t.VCPU = int(*info.VCpuInfo.DefaultVCpus)
	}
	if info.MemoryInfo != nil && info.MemoryInfo.SizeInMiB != nil {
		t.MemoryMiB = int(*info.MemoryInfo.SizeInMiB)
	}
	if info.GpuInfo != nil {
		for _, g := range info.GpuInfo.Gpus {
			if g.Count != nil {
				t.GPUs += int(*g.Count)
			}
			if t.GPUModel == "" {
				t.GPUModel = strings.TrimSpace(deref(g.Manufacturer) + " " + deref(g.Name))
			}
		}
	}
	switch {
	case info.NeuronInfo != nil && len(info.NeuronInfo.NeuronDevices) > 0:
		t.Accelerator = "AWS " + deref(info.NeuronInfo.NeuronDevices[0].Name)
	case info.InferenceAcceleratorInfo != nil && len(info.InferenceAcceleratorInfo.Accelerators) > 0:
		a := info.InferenceAcceleratorInfo.Accelerators[0]
		t.Accelerator = strings.TrimSpace(deref(a.Manufacturer) + " " + deref(a.Name))
	}
	if info.ProcessorInfo != nil {
		for _, a := range info.ProcessorInfo.SupportedArchitectures {
			if a == ec2types.ArchitectureTypeArm64 {
				t.Arch = workflow.ArchARM
			}
		}
	}
	return t
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
