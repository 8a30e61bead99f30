// Package testenv holds the helpers every cloudpipe test uses to talk to real
// servers instead of mocks: an in-process kumo AWS emulator, SDK middleware
// that counts and records API calls, a latency-adding transport and a network
// (VPC, subnet, security group) for tasks.
package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/sivchari/kumo"
)

// Region is the region of every config Kumo returns. kumo answers any region,
// but its ARNs always say us-east-1, so tests use that one.
const Region = "us-east-1"

// The emulator is process-wide on purpose: kumo keeps its state in package
// variables, so every kumo.NewServer() in a process shares buckets, queues and
// roles anyway. One server per test binary saves start-up time; it is never
// closed and ends with the process.
var (
	kumoOnce sync.Once
	kumoSrv  *kumo.Server
)

// KumoURL returns the base URL ("http://127.0.0.1:PORT") of the test binary's
// in-process kumo server, starting it on first use.
//
// kumo's state is shared by every test in the process and never reset: derive
// every resource name from the test (see UniqueName).
func KumoURL(tb testing.TB) string {
	tb.Helper()
	kumoOnce.Do(func() { kumoSrv = kumo.NewServer() })
	return kumoSrv.URL
}

// Kumo returns an aws.Config for the process-wide kumo server behind its
// AWS-rules proxy (see AWSRules): region us-east-1, the operator's static
// credentials (which IAM does not check: use Agent or AsRole for a
// principal's requests), BaseEndpoint set to the proxy's URL and the SDK's
// standard retryer. S3 clients built from it also need path-style
// addressing: pass S3PathStyle to s3.NewFromConfig.
func Kumo(tb testing.TB) aws.Config {
	tb.Helper()
	return KumoConfig(AWSRules(tb).URL())
}

// KumoConfig is Kumo for the emulator at url, such as one KumoProcess
// started.
func KumoConfig(url string) aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(url),
		Retryer:      func() aws.Retryer { return retry.NewStandard() },
	}
}

// S3PathStyle is an s3.Options function for clients of an emulator: bucket
// names go in the path, since "bucket.127.0.0.1" does not resolve.
func S3PathStyle(o *s3.Options) { o.UsePathStyle = true }

// nameSeq makes UniqueName differ between calls in one process, so -count=2
// (which runs a test twice against the same kumo state) gets fresh names.
var nameSeq atomic.Uint64

// UniqueName returns a name for the calling test's resources that is unique in
// the process: lowercase letters, digits and hyphens, at most 24 characters,
// starting with a letter, so it is valid as a workflow name, in S3 bucket
// names and in IAM role names. Each call returns a new name: call it once per
// test and derive the rest from it.
func UniqueName(tb testing.TB) string {
	tb.Helper()
	var b strings.Builder
	for _, r := range strings.ToLower(tb.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	base := strings.TrimPrefix(b.String(), "test")
	base = strings.Trim(base, "-")
	if len(base) > 16 {
		base = strings.TrimRight(base[:16], "-")
	}
	if base == "" || base[0] < 'a' || base[0] > 'z' {
		base = "t" + base
	}
	sum := sha256.Sum256([]byte(tb.Name() + "/" + strconv.FormatUint(nameSeq.Add(1), 10)))
	return base + "-" + hex.EncodeToString(sum[:])[:6]
}

// LatencyTransport returns a RoundTripper that waits d before sending each
// request through rt (http.DefaultTransport when nil), to measure how a code
// path behaves when every AWS call costs a round trip. The wait ends early
// when the request's context is cancelled.
func LatencyTransport(rt http.RoundTripper, d time.Duration) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return latencyTransport{next: rt, delay: d}
}

type latencyTransport struct {
	next  http.RoundTripper
	delay time.Duration
}

func (t latencyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	timer := time.NewTimer(t.delay)
	defer timer.Stop()
	select {
	case <-r.Context().Done():
		return nil, r.Context().Err()
	case <-timer.C:
	}
	return t.next.RoundTrip(r)
}

// NewNetwork creates a VPC, one subnet and one security group in kumo (which
// has no default VPC) and returns the subnet and security-group IDs, as an
// operator would pass them with --subnets and --security-groups. The
// resources are left in place: kumo's state ends with the process.
func NewNetwork(tb testing.TB, cfg aws.Config) (subnets, securityGroups []string) {
	tb.Helper()
	ctx := context.WithoutCancel(tb.Context())
	client := ec2.NewFromConfig(cfg)
	name := UniqueName(tb)
	tag := func(rt ec2types.ResourceType) []ec2types.TagSpecification {
		return []ec2types.TagSpecification{{
			ResourceType: rt,
			Tags:         []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(name)}},
		}}
	}
	vpc, err := client.CreateVpc(ctx, &ec2.CreateVpcInput{
		CidrBlock:         aws.String("10.0.0.0/16"),
		TagSpecifications: tag(ec2types.ResourceTypeVpc),
	})
	if err != nil {
		tb.Fatalf("create vpc: %v", err)
	}
	subnet, err := client.CreateSubnet(ctx, &ec2.CreateSubnetInput{
		VpcId:             vpc.Vpc.VpcId,
		CidrBlock:         aws.String("10.0.1.0/24"),
		TagSpecifications: tag(ec2types.ResourceTypeSubnet),
	})
	if err != nil {
		tb.Fatalf("create subnet: %v", err)
	}
	sg, err := client.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:         aws.String(name),
		Description:       aws.String("cloudpipe test tasks"),
		VpcId:             vpc.Vpc.VpcId,
		TagSpecifications: tag(ec2types.ResourceTypeSecurityGroup),
	})
	if err != nil {
		tb.Fatalf("create security group: %v", err)
	}
	return []string{aws.ToString(subnet.Subnet.SubnetId)}, []string{aws.ToString(sg.GroupId)}
}
