package testenv_test

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

func TestKumoAndCallCounter(t *testing.T) {
	cfg := testenv.Kumo(t)
	// Every test's requests go through the AWS rules in front of kumo.
	if rules := testenv.AWSRules(t).URL(); rules != aws.ToString(cfg.BaseEndpoint) || rules == testenv.KumoURL(t) {
		t.Errorf("AWS rules at %s, kumo at %s, BaseEndpoint %s", rules, testenv.KumoURL(t), aws.ToString(cfg.BaseEndpoint))
	}
	var calls testenv.CallCounter
	calls.Attach(&cfg)
	ctx := t.Context()

	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil || aws.ToString(id.Account) == "" {
		t.Fatalf("GetCallerIdentity = %+v, %v", id, err)
	}
	bucket := testenv.UniqueName(t)
	client := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			_, _ = client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket})
		})
	}
	wg.Wait()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}

	want := map[string]int{"STS.GetCallerIdentity": 1, "S3.HeadBucket": 3, "S3.CreateBucket": 1}
	if got := calls.Ops(); !maps.Equal(got, want) {
		t.Errorf("Ops = %v, want %v", got, want)
	}
	if calls.Total() != 5 || calls.Writes() != 1 {
		t.Errorf("Total, Writes = %d, %d; want 5, 1", calls.Total(), calls.Writes())
	}
	if got := calls.WriteOps(); !maps.Equal(got, map[string]int{"S3.CreateBucket": 1}) {
		t.Errorf("WriteOps = %v", got)
	}
	in, ok := calls.LastInput("S3.CreateBucket").(*s3.CreateBucketInput)
	if !ok || aws.ToString(in.Bucket) != bucket {
		t.Errorf("LastInput = %#v, want the CreateBucket input for %s", calls.LastInput("S3.CreateBucket"), bucket)
	}
	calls.Reset()
	if calls.Total() != 0 || len(calls.Inputs("S3.CreateBucket")) != 0 || calls.LastInput("S3.CreateBucket") != nil {
		t.Error("Reset left calls behind")
	}
}

func TestIsWrite(t *testing.T) {
	for op, want := range map[string]bool{
		"S3.PutObject": true, "SQS.CreateQueue": true, "ECS.RunTask": true, "SQS.DeleteMessage": true,
		"S3.GetObject": false, "IAM.ListRolePolicies": false, "EC2.DescribeVpcs": false,
		"S3.HeadBucket": false, "SQS.ReceiveMessage": false, "GetRole": false,
	} {
		if got := testenv.IsWrite(op); got != want {
			t.Errorf("IsWrite(%s) = %v, want %v", op, got, want)
		}
	}
}

func TestUniqueName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z][a-z0-9-]{1,22}[a-z0-9]$`)
	a, b := testenv.UniqueName(t), testenv.UniqueName(t)
	if a == b {
		t.Errorf("two calls gave %s twice", a)
	}
	for _, n := range []string{a, b} {
		if !valid.MatchString(n) || strings.Contains(n, "--") {
			t.Errorf("%q is not a valid workflow/bucket name stem", n)
		}
	}
	t.Run("9 Weird/Names_ÄÖ", func(t *testing.T) {
		if n := testenv.UniqueName(t); !valid.MatchString(n) {
			t.Errorf("%q is not a valid name", n)
		}
	})
}

func TestLatencyTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	client := &http.Client{Transport: testenv.LatencyTransport(nil, 50*time.Millisecond)}
	start := time.Now()
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("request took %v, want at least 50ms", d)
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	slow := &http.Client{Transport: testenv.LatencyTransport(nil, time.Hour), Timeout: 20 * time.Millisecond}
	if _, err := slow.Do(req); err == nil {
		t.Error("a request that should wait an hour returned before its timeout")
	}
}

func TestNewNetwork(t *testing.T) {
	cfg := testenv.Kumo(t)
	subnets, sgs := testenv.NewNetwork(t, cfg)
	if len(subnets) != 1 || len(sgs) != 1 {
		t.Fatalf("subnets %v, security groups %v", subnets, sgs)
	}
	out, err := ec2.NewFromConfig(cfg).DescribeSubnets(t.Context(), &ec2.DescribeSubnetsInput{SubnetIds: subnets})
	if err != nil || len(out.Subnets) != 1 {
		t.Errorf("DescribeSubnets(%v) = %+v, %v", subnets, out, err)
	}
}
