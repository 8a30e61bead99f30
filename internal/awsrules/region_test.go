package awsrules_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

const otherRegion = "eu-west-1"

// inRegion is cfg signing for region.
func inRegion(cfg aws.Config, region string) aws.Config {
	cfg = cfg.Copy()
	cfg.Region = region
	return cfg
}

func TestS3RequestForABucketOfAnotherRegionIsAPermanentRedirect(t *testing.T) {
	ctx := context.Background()
	bucket, untracked := testenv.UniqueName(t), testenv.UniqueName(t)
	_, cfg := newProxy(t, awsrules.Options{})
	eu := s3.NewFromConfig(inRegion(cfg, otherRegion), testenv.S3PathStyle)
	us := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	if _, err := eu.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                    &bucket,
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraintEuWest1},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := eu.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("k"), Body: strings.NewReader("x")}); err != nil {
		t.Fatalf("put in the bucket's region: %v", err)
	}

	_, err := us.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("k2"), Body: strings.NewReader("x")})
	wantRefused(t, err, 301, "PermanentRedirect", "")
	wantBucketRegion(t, err, otherRegion)
	_, err = us.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: &bucket})
	wantRefused(t, err, 301, "PermanentRedirect", "")
	_, err = us.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket})
	wantBucketRegion(t, err, otherRegion)

	// A bucket made behind the proxy's back is taken to be in us-east-1.
	createBucket(ctx, t, s3.NewFromConfig(direct(testenv.KumoURL(t)), testenv.S3PathStyle), untracked)
	_, err = eu.GetObject(ctx, &s3.GetObjectInput{Bucket: &untracked, Key: aws.String("k")})
	wantRefused(t, err, 301, "PermanentRedirect", "")
	wantBucketRegion(t, err, "us-east-1")
	if _, err := us.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &untracked}); err != nil {
		t.Errorf("head in us-east-1: %v", err)
	}

	// Deleted in its region, the name is free in any region again.
	if _, err := eu.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: aws.String("k")}); err != nil {
		t.Fatal(err)
	}
	if _, err := eu.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	createBucket(ctx, t, us, bucket)
	if _, err := us.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket}); err != nil {
		t.Errorf("re-created in us-east-1: %v", err)
	}
}

// wantBucketRegion fails t unless err's answer names region in
// x-amz-bucket-region, as S3's redirect does.
func wantBucketRegion(t *testing.T, err error, region string) {
	t.Helper()
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want an HTTP answer", err)
	}
	if re.HTTPStatusCode() != 301 {
		t.Errorf("status = %d, want 301", re.HTTPStatusCode())
	}
	if got := re.Response.Header.Get("X-Amz-Bucket-Region"); got != region {
		t.Errorf("x-amz-bucket-region = %q, want %q", got, region)
	}
}

func TestSQSCallOnAQueueOfAnotherRegionFindsNoQueue(t *testing.T) {
	ctx := context.Background()
	name := testenv.UniqueName(t)
	_, cfg := newProxy(t, awsrules.Options{})
	eu, us := sqs.NewFromConfig(inRegion(cfg, otherRegion)), sqs.NewFromConfig(cfg)
	created, err := eu.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name})
	if err != nil {
		t.Fatal(err)
	}

	_, err = us.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	wantRefused(t, err, 400, "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.")
	var missing *sqstypes.QueueDoesNotExist
	if !errors.As(err, &missing) {
		t.Errorf("err = %T, want *types.QueueDoesNotExist", err)
	}
	_, err = us.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: created.QueueUrl, MessageBody: aws.String("x")})
	wantRefused(t, err, 400, "AWS.SimpleQueueService.NonExistentQueue", "")

	// In its own region the queue works, and its ARN names that region.
	if _, err := eu.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: created.QueueUrl, MessageBody: aws.String("x")}); err != nil {
		t.Errorf("send in the queue's region: %v", err)
	}
	attrs, err := eu.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: created.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := attrs.Attributes["QueueArn"], "arn:aws:sqs:"+otherRegion+":"; !strings.HasPrefix(got, want) {
		t.Errorf("QueueArn = %q, want it to start with %q", got, want)
	}
}

func TestRunTaskWithAClusterSubnetOrSecurityGroupOfAnotherRegionIsRefused(t *testing.T) {
	ctx := context.Background()
	name := testenv.UniqueName(t)
	_, cfg := newProxy(t, awsrules.Options{})
	euCfg := inRegion(cfg, otherRegion)
	eu, us := ecs.NewFromConfig(euCfg), ecs.NewFromConfig(cfg)
	euSubnets, euGroups := testenv.NewNetwork(t, euCfg)
	usSubnets, usGroups := testenv.NewNetwork(t, cfg)
	cluster, err := eu.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: &name})
	if err != nil {
		t.Fatal(err)
	}
	if arn := aws.ToString(cluster.Cluster.ClusterArn); !strings.HasPrefix(arn, "arn:aws:ecs:"+otherRegion+":") {
		t.Errorf("cluster ARN = %q, want it in %s", arn, otherRegion)
	}
	td, err := eu.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:      &name,
		NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("main"), Image: aws.String("public.ecr.aws/docker/library/busybox:latest"), Memory: aws.Int32(128),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func(c *ecs.Client, clusterName string, subnets, groups []string) error {
		_, err := c.RunTask(ctx, &ecs.RunTaskInput{
			Cluster:        &clusterName,
			TaskDefinition: td.TaskDefinition.TaskDefinitionArn,
			LaunchType:     ecstypes.LaunchTypeFargate,
			NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
				Subnets: subnets, SecurityGroups: groups,
			}},
		})
		return err
	}

	// The task definition's eu-west-1 ARN reaches kumo as the us-east-1 one
	// it knows.
	if err := run(eu, name, euSubnets, euGroups); err != nil {
		t.Fatalf("RunTask all in %s: %v", otherRegion, err)
	}
	wantRefused(t, run(us, name, usSubnets, usGroups), 400, "ClusterNotFoundException", "Cluster not found.")
	wantRefused(t, run(eu, name, usSubnets, euGroups), 400, "InvalidParameterException",
		"Error retrieving subnet information for ["+usSubnets[0]+"]: The subnet ID '"+usSubnets[0]+"' does not exist (Service: AmazonEC2; Status Code: 400; Error Code: InvalidSubnetID.NotFound)")
	err = run(eu, name, euSubnets, usGroups)
	wantRefused(t, err, 400, "InvalidParameterException", "")
	if !strings.Contains(err.Error(), usGroups[0]) {
		t.Errorf("err = %v, want it to name %s", err, usGroups[0])
	}
	var notFound *ecstypes.ClusterNotFoundException
	_, err = us.ListTasks(ctx, &ecs.ListTasksInput{Cluster: &name})
	if !errors.As(err, &notFound) {
		t.Errorf("ListTasks in us-east-1: err = %v, want ClusterNotFoundException", err)
	}
	_, err = us.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: &name})
	wantRefused(t, err, 400, "ClientException", "Unable to describe task definition.")

	// DescribeClusters in another region reports the cluster missing.
	out, err := us.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Clusters) != 0 || len(out.Failures) != 1 || aws.ToString(out.Failures[0].Reason) != "MISSING" {
		t.Errorf("DescribeClusters in us-east-1 = %d clusters, failures %+v; want none and one MISSING", len(out.Clusters), out.Failures)
	}
	out, err = eu.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{name}})
	if err != nil || len(out.Clusters) != 1 {
		t.Errorf("DescribeClusters in %s = %+v, %v; want the cluster", otherRegion, out, err)
	}
}

func TestEC2ResourcesOfAnotherRegionAreNotFoundNorListed(t *testing.T) {
	ctx := context.Background()
	_, cfg := newProxy(t, awsrules.Options{})
	euCfg := inRegion(cfg, otherRegion)
	subnets, groups := testenv.NewNetwork(t, euCfg)
	eu, us := ec2.NewFromConfig(euCfg), ec2.NewFromConfig(cfg)

	_, err := us.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: subnets})
	wantRefused(t, err, 400, "InvalidSubnetID.NotFound", "The subnet ID '"+subnets[0]+"' does not exist")
	_, err = us.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: groups})
	wantRefused(t, err, 400, "InvalidGroup.NotFound", "The security group '"+groups[0]+"' does not exist")

	listed := func(c *ec2.Client) (subnet, group bool) {
		t.Helper()
		sn, err := c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sn.Subnets {
			subnet = subnet || aws.ToString(s.SubnetId) == subnets[0]
		}
		sg, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range sg.SecurityGroups {
			group = group || aws.ToString(g.GroupId) == groups[0]
		}
		return subnet, group
	}
	if s, g := listed(us); s || g {
		t.Errorf("us-east-1 lists subnet %v, group %v of %s", s, g, otherRegion)
	}
	if s, g := listed(eu); !s || !g {
		t.Errorf("%s lists subnet %v, group %v of its own, want both", otherRegion, s, g)
	}
}

func TestLogGroupOfAnotherRegionIsNotFoundNorListed(t *testing.T) {
	ctx := context.Background()
	name := "/cloudpipe/" + testenv.UniqueName(t)
	_, cfg := newProxy(t, awsrules.Options{})
	eu, us := cloudwatchlogs.NewFromConfig(inRegion(cfg, otherRegion)), cloudwatchlogs.NewFromConfig(cfg)
	if _, err := eu.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: &name, Tags: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}

	_, err := us.PutRetentionPolicy(ctx, &cloudwatchlogs.PutRetentionPolicyInput{LogGroupName: &name, RetentionInDays: aws.Int32(30)})
	wantRefused(t, err, 400, "ResourceNotFoundException", "The specified log group does not exist.")
	inUS, err := us.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: &name})
	if err != nil {
		t.Fatal(err)
	}
	if len(inUS.LogGroups) != 0 {
		t.Errorf("us-east-1 lists %d log groups of %s, want none", len(inUS.LogGroups), otherRegion)
	}

	inEU, err := eu.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: &name})
	if err != nil || len(inEU.LogGroups) != 1 {
		t.Fatalf("DescribeLogGroups in %s = %+v, %v; want the group", otherRegion, inEU, err)
	}
	arn := strings.TrimSuffix(aws.ToString(inEU.LogGroups[0].Arn), ":*")
	if !strings.HasPrefix(arn, "arn:aws:logs:"+otherRegion+":") {
		t.Errorf("log group ARN = %q, want it in %s", arn, otherRegion)
	}
	// The ARN as the client sees it finds the group.
	tags, err := eu.ListTagsForResource(ctx, &cloudwatchlogs.ListTagsForResourceInput{ResourceArn: &arn})
	if err != nil || tags.Tags["k"] != "v" {
		t.Errorf("ListTagsForResource(%s) = %+v, %v; want k=v", arn, tags, err)
	}
}

func TestLambdaCallOnAFunctionOfAnotherRegionIsNotFound(t *testing.T) {
	ctx := context.Background()
	name := testenv.UniqueName(t)
	_, cfg := newProxy(t, awsrules.Options{})
	eu, us := lambda.NewFromConfig(inRegion(cfg, otherRegion)), lambda.NewFromConfig(cfg)
	created, err := eu.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: &name,
		Runtime:      lambdatypes.RuntimeProvidedal2023,
		Handler:      aws.String("bootstrap"),
		Role:         aws.String("arn:aws:iam::000000000000:role/" + name),
		Code:         &lambdatypes.FunctionCode{ZipFile: zipOf(t, "bootstrap", "#!/bin/sh\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if arn := aws.ToString(created.FunctionArn); !strings.HasPrefix(arn, "arn:aws:lambda:"+otherRegion+":") {
		t.Errorf("function ARN = %q, want it in %s", arn, otherRegion)
	}

	_, err = us.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: &name})
	wantRefused(t, err, 404, "ResourceNotFoundException", "Function not found: arn:aws:lambda:us-east-1:000000000000:function:"+name)
	var missing *lambdatypes.ResourceNotFoundException
	if !errors.As(err, &missing) {
		t.Errorf("err = %T, want *types.ResourceNotFoundException", err)
	}
	// By its ARN, as the client got it, in its own region.
	if _, err := eu.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: created.FunctionArn}); err != nil {
		t.Errorf("GetFunctionConfiguration(%s): %v", aws.ToString(created.FunctionArn), err)
	}
}

func zipOf(t *testing.T, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestClusterMadeBeforeTheProxyStaysInUSEast1: a cluster the proxy never
// saw created is us-east-1's; creating its name in another region (kumo
// answers with the one cluster it keeps per name) adds that region and
// leaves us-east-1's in place, as AWS would hold two clusters.
func TestClusterMadeBeforeTheProxyStaysInUSEast1(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	_, earlier := newProxy(t, awsrules.Options{}) // another proxy, which this one never hears of
	if _, err := ecs.NewFromConfig(earlier).CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	_, cfg := newProxy(t, awsrules.Options{})
	if _, err := ecs.NewFromConfig(inRegion(cfg, otherRegion)).CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	for _, region := range []string{"us-east-1", otherRegion} {
		out, err := ecs.NewFromConfig(inRegion(cfg, region)).DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{name}})
		if err != nil || len(out.Clusters) != 1 || aws.ToString(out.Clusters[0].Status) != "ACTIVE" {
			t.Errorf("cluster %s in %s: %+v, %v; want it there", name, region, out, err)
		}
	}
}

// TestLambdaCodeFromS3MustBeAnObjectOfTheFunctionsRegion: Lambda reads a
// function's code from a bucket of the function's region only, and refuses
// a bucket or key that does not exist; kumo takes any S3Bucket and S3Key.
func TestLambdaCodeFromS3MustBeAnObjectOfTheFunctionsRegion(t *testing.T) {
	ctx := context.Background()
	name := testenv.UniqueName(t)
	bucket := name + "-code"
	_, cfg := newProxy(t, awsrules.Options{})
	createBucket(ctx, t, s3.NewFromConfig(cfg, testenv.S3PathStyle), bucket)
	if _, err := s3.NewFromConfig(cfg, testenv.S3PathStyle).PutObject(ctx, &s3.PutObjectInput{
		Bucket: &bucket, Key: aws.String("lambda/a.zip"), Body: bytes.NewReader(zipOf(t, "bootstrap", "#!/bin/sh\n")),
	}); err != nil {
		t.Fatal(err)
	}
	create := func(c *lambda.Client, fn, bucket, key string) error {
		_, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String(fn), Runtime: lambdatypes.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
			Role: aws.String("arn:aws:iam::000000000000:role/" + fn),
			Code: &lambdatypes.FunctionCode{S3Bucket: &bucket, S3Key: &key},
		})
		return err
	}
	eu, us := lambda.NewFromConfig(inRegion(cfg, otherRegion)), lambda.NewFromConfig(cfg)

	err := create(eu, name+"-eu", bucket, "lambda/a.zip")
	wantRefused(t, err, 400, "InvalidParameterValueException",
		"Error occurred while GetObject. S3 Error Code: PermanentRedirect. S3 Error Message: The bucket is in this region: us-east-1. Please use this region to retry the request")
	err = create(us, name+"-nokey", bucket, "lambda/missing.zip")
	wantRefused(t, err, 400, "InvalidParameterValueException",
		"Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The specified key does not exist.")
	err = create(us, name+"-nobucket", name+"-nowhere", "lambda/a.zip")
	wantRefused(t, err, 400, "InvalidParameterValueException",
		"Error occurred while GetObject. S3 Error Code: NoSuchBucket. S3 Error Message: The specified bucket does not exist")

	if err := create(us, name, bucket, "lambda/a.zip"); err != nil {
		t.Fatalf("code from an object of the function's region: %v", err)
	}
	_, err = us.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: &name, S3Bucket: &bucket, S3Key: aws.String("lambda/b.zip")})
	wantRefused(t, err, 400, "InvalidParameterValueException",
		"Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The specified key does not exist.")
	if _, err := us.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: &name, S3Bucket: &bucket, S3Key: aws.String("lambda/a.zip")}); err != nil {
		t.Errorf("update from an object of the function's region: %v", err)
	}
}
