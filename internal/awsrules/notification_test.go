package awsrules_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

const (
	msgOverlap   = "Configurations overlap. Configurations on the same bucket cannot share a common event type."
	msgAmbiguous = "Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are overlapping for the same event type."
)

// lambdaRule is a notification entry as provision writes them, with an
// optional key filter.
func lambdaRule(id string, event s3types.Event, prefix, suffix string) s3types.LambdaFunctionConfiguration {
	lc := s3types.LambdaFunctionConfiguration{
		Id:                aws.String(id),
		LambdaFunctionArn: aws.String("arn:aws:lambda:us-east-1:000000000000:function:" + id),
		Events:            []s3types.Event{event},
	}
	var rules []s3types.FilterRule
	if prefix != "" {
		rules = append(rules, s3types.FilterRule{Name: s3types.FilterRuleNamePrefix, Value: aws.String(prefix)})
	}
	if suffix != "" {
		rules = append(rules, s3types.FilterRule{Name: s3types.FilterRuleNameSuffix, Value: aws.String(suffix)})
	}
	if rules != nil {
		lc.Filter = &s3types.NotificationConfigurationFilter{Key: &s3types.S3KeyFilter{FilterRules: rules}}
	}
	return lc
}

func TestPutBucketNotificationConfigurationRefusesOverlappingRules(t *testing.T) {
	const created, put, removed = s3types.EventS3ObjectCreated, s3types.EventS3ObjectCreatedPut, s3types.EventS3ObjectRemoved
	tests := []struct {
		name    string
		rules   []s3types.LambdaFunctionConfiguration
		wantMsg string // "" when accepted
	}{
		{"same event, no filters", []s3types.LambdaFunctionConfiguration{
			lambdaRule("a", created, "", ""), lambdaRule("b", created, "", "")}, msgOverlap},
		{"wildcard covers the other's event, nested prefixes", []s3types.LambdaFunctionConfiguration{
			lambdaRule("a", created, "in/", ""), lambdaRule("b", put, "in/x", "")}, msgAmbiguous},
		{"one unfiltered, one filtered", []s3types.LambdaFunctionConfiguration{
			lambdaRule("a", created, "", ""), lambdaRule("b", created, "", ".json")}, msgAmbiguous},
		{"disjoint prefixes", []s3types.LambdaFunctionConfiguration{
			lambdaRule("a", created, "in/", ""), lambdaRule("b", created, "out/", "")}, ""},
		{"same prefix, disjoint suffixes", []s3types.LambdaFunctionConfiguration{
			lambdaRule("a", created, "in/", ".json"), lambdaRule("b", created, "in/", ".csv")}, ""},
		{"different events", []s3types.LambdaFunctionConfiguration{
			lambdaRule("a", created, "", ""), lambdaRule("b", removed, "", "")}, ""},
	}
	ctx := context.Background()
	_, cfg := newProxy(t, awsrules.Options{})
	c := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bucket := testenv.UniqueName(t)
			createBucket(ctx, t, c, bucket)
			_, err := c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
				Bucket:                    &bucket,
				NotificationConfiguration: &s3types.NotificationConfiguration{LambdaFunctionConfigurations: tt.rules},
			})
			if tt.wantMsg == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			wantRefused(t, err, 400, "InvalidArgument", tt.wantMsg)
		})
	}
}

// TestPutBucketNotificationConfigurationRefusesARuleOverlappingOneOnTheBucket
// adds a rule the way provision does (read the configuration, append, put
// the whole document back) next to another stage's rule for the same event.
func TestPutBucketNotificationConfigurationRefusesARuleOverlappingOneOnTheBucket(t *testing.T) {
	ctx := context.Background()
	_, cfg := newProxy(t, awsrules.Options{})
	c := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	bucket := testenv.UniqueName(t)
	createBucket(ctx, t, c, bucket)
	put := func(rules []s3types.LambdaFunctionConfiguration) error {
		_, err := c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
			Bucket:                    &bucket,
			NotificationConfiguration: &s3types.NotificationConfiguration{LambdaFunctionConfigurations: rules},
		})
		return err
	}
	if err := put([]s3types.LambdaFunctionConfiguration{lambdaRule("first", s3types.EventS3ObjectCreated, "", "")}); err != nil {
		t.Fatal(err)
	}
	cur, err := c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	second := lambdaRule("second", s3types.EventS3ObjectCreatedPut, "", "")
	wantRefused(t, put(append(cur.LambdaFunctionConfigurations, second)), 400, "InvalidArgument", msgOverlap)

	// A rule for another event type fits next to it.
	third := lambdaRule("third", s3types.EventS3ObjectRemoved, "", "")
	if err := put(append(cur.LambdaFunctionConfigurations, third)); err != nil {
		t.Errorf("a rule for another event was refused: %v", err)
	}
}
