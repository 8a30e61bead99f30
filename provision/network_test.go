package provision_test

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

func TestBootstrapWithGivenNetwork(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	o := provision.BootstrapOptions{StateBucket: "cloudpipe-state-" + e.name, Cluster: "cloudpipe", Subnets: e.subnets, SecurityGroups: e.sgs}
	// The agent's policy names one cluster, which kumo's process-wide state
	// may hold from an earlier test: start without it, so bootstrap makes it.
	if _, err := e.ecs.DeleteCluster(ctx, &ecs.DeleteClusterInput{Cluster: aws.String(o.Cluster)}); err != nil && !errors.As(err, new(*ecstypes.ClusterNotFoundException)) {
		t.Fatalf("delete the cluster an earlier test left: %v", err)
	}

	deleteECSServiceLinkedRole(t, e.iam)
	deleteBatchAccountRoles(t, e.iam)
	if _, err := e.p.LoadNetwork(ctx, testenv.Region, o.StateBucket); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("LoadNetwork before bootstrap: %v, want ErrNotFound", err)
	}

	first, err := e.p.Bootstrap(ctx, testenv.Region, o)
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	wantCreated := []string{
		"s3 bucket " + o.StateBucket,
		"s3 lifecycle rules of " + o.StateBucket + " (incomplete uploads aborted after 7 days, run records expired after 90, old inventory versions after 30)",
		slrLabel,
		batchAccountLabels[0], batchAccountLabels[1], batchAccountLabels[2],
		"ecs cluster " + o.Cluster,
		"s3 object s3://" + o.StateBucket + "/config/network.json",
	}
	if !slices.Equal(first.Created, wantCreated) || len(first.Found) != 0 {
		t.Errorf("first Bootstrap created %v, found %v; want created %v", first.Created, first.Found, wantCreated)
	}
	want := provision.Network{Subnets: e.subnets, SecurityGroups: e.sgs, AssignPublicIP: false}
	if !reflect.DeepEqual(first.Network, want) {
		t.Errorf("network = %+v, want %+v", first.Network, want)
	}

	e.calls.Reset()
	second, err := e.p.Bootstrap(ctx, testenv.Region, o)
	if err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}
	if len(second.Created) != 0 || len(second.Updated) != 0 || !slices.Equal(second.Found, wantCreated) {
		t.Errorf("second Bootstrap created %v, updated %v, found %v; want everything found", second.Created, second.Updated, second.Found)
	}
	if w := e.calls.WriteOps(); len(w) != 0 {
		t.Errorf("second Bootstrap wrote %v", w)
	}
	if second.ClusterARN != first.ClusterARN || second.ClusterARN == "" {
		t.Errorf("cluster ARN %s then %s", first.ClusterARN, second.ClusterARN)
	}

	got, err := e.p.LoadNetwork(ctx, testenv.Region, o.StateBucket)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("LoadNetwork = %+v, %v; want %+v", got, err, want)
	}

	// The state bucket: tagged, versioned, encrypted, not public.
	tags, err := e.s3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: &o.StateBucket})
	if err != nil || len(tags.TagSet) != 1 || aws.ToString(tags.TagSet[0].Key) != provision.TagManaged {
		t.Errorf("state bucket tags = %+v, %v", tags, err)
	}
	v, err := e.s3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &o.StateBucket})
	if err != nil || v.Status != s3types.BucketVersioningStatusEnabled {
		t.Errorf("state bucket versioning = %+v, %v", v, err)
	}
	if _, err := e.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: &o.StateBucket}); err != nil {
		t.Errorf("state bucket encryption: %v", err)
	}
	if _, err := e.s3.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: &o.StateBucket}); err != nil {
		t.Errorf("state bucket public access block: %v", err)
	}
	cl, err := e.ecs.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{o.Cluster}})
	if err != nil || len(cl.Clusters) != 1 {
		t.Fatalf("cluster: %+v, %v", cl, err)
	}
	ctags := map[string]string{}
	for _, tag := range cl.Clusters[0].Tags {
		ctags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	if !maps.Equal(ctags, map[string]string{provision.TagManaged: "true"}) {
		t.Errorf("cluster tags = %v", ctags)
	}
}

func TestBootstrapCreatesSecurityGroup(t *testing.T) {
	e := newEnv(t)
	o := provision.BootstrapOptions{StateBucket: "cloudpipe-state-" + e.name, Cluster: "cloudpipe", Subnets: e.subnets}
	first, err := e.p.Bootstrap(t.Context(), testenv.Region, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Network.SecurityGroups) != 1 || !slices.Contains(first.Created, "security group "+first.Network.SecurityGroups[0]+" (cloudpipe-tasks)") {
		t.Fatalf("network %+v, created %v: want a cloudpipe-tasks group", first.Network, first.Created)
	}
	// kumo keeps security-group names unique across VPCs (AWS: per VPC), so
	// the group must go for this test to run again in the same process.
	t.Cleanup(func() {
		_, err := ec2.NewFromConfig(e.cfg).DeleteSecurityGroup(context.WithoutCancel(t.Context()), &ec2.DeleteSecurityGroupInput{GroupId: &first.Network.SecurityGroups[0]})
		if err != nil {
			t.Errorf("delete security group: %v", err)
		}
	})
	second, err := e.p.Bootstrap(t.Context(), testenv.Region, o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(second.Network, first.Network) || len(second.Created) != 0 {
		t.Errorf("second run: network %+v, created %v; want the same group found", second.Network, second.Created)
	}
}

func TestBootstrapWithoutNetwork(t *testing.T) {
	e := newEnv(t)
	// kumo has no default VPC, like an account whose default VPC was deleted.
	_, err := e.p.Bootstrap(t.Context(), testenv.Region, provision.BootstrapOptions{StateBucket: "cloudpipe-state-" + e.name, Cluster: "cloudpipe"})
	if !errors.Is(err, provision.ErrNoNetwork) {
		t.Fatalf("Bootstrap without subnets: %v, want ErrNoNetwork", err)
	}
	for _, flag := range []string{"--subnets", "--security-groups"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("error %q does not name %s", err, flag)
		}
	}
}

// TestNetworkFromFlags: --subnets on run or sync get the public-IP choice
// bootstrap would make for them: a public IP only when every subnet maps
// one on launch.
func TestNetworkFromFlags(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	net, err := e.p.NetworkFromFlags(ctx, testenv.Region, e.subnets, e.sgs)
	if err != nil {
		t.Fatal(err)
	}
	if want := (provision.Network{Subnets: e.subnets, SecurityGroups: e.sgs}); !reflect.DeepEqual(net, want) {
		t.Errorf("private subnets: %+v, want %+v", net, want)
	}
	if _, err := ec2.NewFromConfig(e.cfg).ModifySubnetAttribute(ctx, &ec2.ModifySubnetAttributeInput{
		SubnetId: aws.String(e.subnets[0]), MapPublicIpOnLaunch: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}}); err != nil {
		t.Fatal(err)
	}
	net, err = e.p.NetworkFromFlags(ctx, testenv.Region, e.subnets, e.sgs)
	if err != nil || !net.AssignPublicIP {
		t.Errorf("public subnets: %+v, %v; want a public IP", net, err)
	}
	if _, err := e.p.NetworkFromFlags(ctx, testenv.Region, []string{"subnet-0000000000nothere"}, e.sgs); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("an unknown subnet: %v, want ErrNotFound", err)
	}
}

func TestNetworkDiffers(t *testing.T) {
	base := provision.Network{Subnets: []string{"a", "b"}, SecurityGroups: []string{"g"}}
	tests := []struct {
		name string
		o    provision.Network
		want bool
	}{
		{"same", provision.Network{Subnets: []string{"a", "b"}, SecurityGroups: []string{"g"}}, false},
		{"same, other order", provision.Network{Subnets: []string{"b", "a"}, SecurityGroups: []string{"g"}}, false},
		{"other subnet", provision.Network{Subnets: []string{"a", "c"}, SecurityGroups: []string{"g"}}, true},
		{"other group", provision.Network{Subnets: []string{"a", "b"}, SecurityGroups: []string{"h"}}, true},
		{"public IP", provision.Network{Subnets: []string{"a", "b"}, SecurityGroups: []string{"g"}, AssignPublicIP: true}, true},
	}
	for _, tt := range tests {
		if got := base.Differs(tt.o); got != tt.want {
			t.Errorf("%s: Differs = %v, want %v", tt.name, got, tt.want)
		}
	}
}
