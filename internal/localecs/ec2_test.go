package localecs_test

import (
	"context"
	"errors"
	"net/http"
	"os/exec"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// TestDescribeInstanceTypes: the proxy answers EC2's DescribeInstanceTypes
// from its table, in the shapes the SDK reads, refuses a name it does not
// know as EC2 does, and forwards every other EC2 call to kumo.
func TestDescribeInstanceTypes(t *testing.T) {
	ctx := t.Context()
	p, err := localecs.Listen(localecs.Options{
		Addr: "127.0.0.1:0", Upstream: testenv.KumoURL(t),
		Start: func(context.Context, localecs.TaskSpec) (*exec.Cmd, error) { return nil, errors.New("no tasks") },
		InstanceTypes: []localecs.InstanceType{
			{Name: "g5.xlarge", VCPUs: 4, MemoryMiB: 16384, GPUs: 1, GPUManufacturer: "NVIDIA", GPUName: "A10G"},
			{Name: "inf2.xlarge", VCPUs: 4, MemoryMiB: 16384, NeuronDevices: 1, NeuronName: "Inferentia2"},
			{Name: "t4g.micro", VCPUs: 2, MemoryMiB: 1024, Architecture: "arm64"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	cfg := testenv.KumoConfig(p.URL())
	c := ec2.NewFromConfig(cfg)

	out, err := c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{
		InstanceTypes: []ec2types.InstanceType{"t4g.micro", "g5.xlarge"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.InstanceTypes) != 2 {
		t.Fatalf("%d types, want 2", len(out.InstanceTypes))
	}
	g5, t4g := out.InstanceTypes[0], out.InstanceTypes[1]
	if g5.InstanceType != "g5.xlarge" || aws.ToInt32(g5.VCpuInfo.DefaultVCpus) != 4 || aws.ToInt64(g5.MemoryInfo.SizeInMiB) != 16384 ||
		g5.GpuInfo == nil || len(g5.GpuInfo.Gpus) != 1 || aws.ToInt32(g5.GpuInfo.Gpus[0].Count) != 1 ||
		aws.ToString(g5.GpuInfo.Gpus[0].Manufacturer) != "NVIDIA" || aws.ToString(g5.GpuInfo.Gpus[0].Name) != "A10G" ||
		len(g5.ProcessorInfo.SupportedArchitectures) != 1 || g5.ProcessorInfo.SupportedArchitectures[0] != ec2types.ArchitectureTypeX8664 {
		t.Errorf("g5.xlarge = %+v", g5)
	}
	if t4g.InstanceType != "t4g.micro" || t4g.GpuInfo != nil || t4g.ProcessorInfo.SupportedArchitectures[0] != ec2types.ArchitectureTypeArm64 {
		t.Errorf("t4g.micro = %+v", t4g)
	}

	all, err := c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{})
	if err != nil || len(all.InstanceTypes) != 3 {
		t.Fatalf("without names: %v, %v; want all 3", all, err)
	}
	inf := all.InstanceTypes[1]
	if inf.NeuronInfo == nil || len(inf.NeuronInfo.NeuronDevices) != 1 || aws.ToString(inf.NeuronInfo.NeuronDevices[0].Name) != "Inferentia2" {
		t.Errorf("inf2.xlarge = %+v", inf)
	}

	_, err = c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{"g5.xlarge", "m5.lrage"}})
	var api smithy.APIError
	var re *awshttp.ResponseError
	if !errors.As(err, &api) || api.ErrorCode() != "InvalidInstanceType" ||
		api.ErrorMessage() != "The following supplied instance types do not exist: [m5.lrage]" ||
		!errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadRequest {
		t.Errorf("unknown name: %v, want EC2's InvalidInstanceType", err)
	}
	if n := len(p.Requests("DescribeInstanceTypes")); n != 3 {
		t.Errorf("Requests(DescribeInstanceTypes) = %d, want 3", n)
	}

	// Other EC2 calls still reach kumo, body and all.
	vpc, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.9.0.0/16")})
	if err != nil || aws.ToString(vpc.Vpc.VpcId) == "" {
		t.Fatalf("CreateVpc through the proxy: %v, %v", vpc, err)
	}
	if n := len(p.Requests("DescribeInstanceTypes")); n != 3 {
		t.Errorf("CreateVpc counted as DescribeInstanceTypes: %d", n)
	}
}
