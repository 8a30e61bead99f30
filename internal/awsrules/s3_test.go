package awsrules_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

func createBucket(ctx context.Context, t *testing.T, c *s3.Client, bucket string) {
	t.Helper()
	in := &s3.CreateBucketInput{
		Bucket:                    &bucket,
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{Tags: []s3types.Tag{{Key: aws.String("owner"), Value: aws.String("cloudpipe")}}},
	}
	if _, err := c.CreateBucket(ctx, in); err != nil {
		t.Fatal(err)
	}
}

func TestGetBucketTaggingOfAnotherAccountsBucketIsAccessDenied(t *testing.T) {
	ctx := context.Background()
	ours, theirs := testenv.UniqueName(t), testenv.UniqueName(t)
	_, cfg := newProxy(t, awsrules.Options{ForeignBuckets: []string{theirs}})
	c := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	createBucket(ctx, t, c, ours)
	// The other account's bucket exists in kumo too, which would answer
	// its tags to anyone.
	createBucket(ctx, t, s3.NewFromConfig(direct(testenv.KumoURL(t)), testenv.S3PathStyle), theirs)

	_, err := c.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: &theirs})
	wantRefused(t, err, 403, "AccessDenied", "Access Denied")

	out, err := c.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: &ours})
	if err != nil {
		t.Fatalf("own bucket: %v", err)
	}
	if len(out.TagSet) != 1 || aws.ToString(out.TagSet[0].Key) != "owner" {
		t.Errorf("own bucket's tags = %+v, want owner", out.TagSet)
	}
}

func TestCreateBucketOfAnOwnedBucketIs200InUSEast1And409Elsewhere(t *testing.T) {
	ctx := context.Background()
	bucket := testenv.UniqueName(t)
	_, cfg := newProxy(t, awsrules.Options{})
	c := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	createBucket(ctx, t, c, bucket)

	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Errorf("us-east-1, bucket already ours: %v, want 200 OK", err)
	}

	// What kumo answers in us-east-1 itself: the error AWS gives only in
	// the other regions.
	kumo := s3.NewFromConfig(direct(testenv.KumoURL(t)), testenv.S3PathStyle)
	_, err := kumo.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket})
	wantRefused(t, err, 409, "BucketAlreadyOwnedByYou", "")

	cfg.Region = "eu-west-1"
	elsewhere := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	_, err = elsewhere.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                    &bucket,
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraintEuWest1},
	})
	wantRefused(t, err, 409, "BucketAlreadyOwnedByYou", "")
	var owned *s3types.BucketAlreadyOwnedByYou
	if !errors.As(err, &owned) {
		t.Errorf("err = %T, want *types.BucketAlreadyOwnedByYou", err)
	}
}
