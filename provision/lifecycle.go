package provision

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// InventoryPrefix is the part of the state bucket that holds the inventory
// (package inventory writes under it). It is versioned, so every overwrite
// of the index leaves a noncurrent version behind.
const InventoryPrefix = "inventory/"

// The lifecycle rules cloudpipe keeps on buckets it created, by ID. S3 runs
// them; cloudpipe only writes them.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lifecycle-mgmt.html
const (
	// AbortUploadsRuleID aborts multipart uploads left incomplete (a
	// runner killed mid-upload, a user's interrupted `aws s3 cp`), whose
	// parts S3 keeps, and bills, until they are aborted.
	// https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpu-abort-incomplete-mpu-lifecycle-config.html
	AbortUploadsRuleID = "cloudpipe-abort-incomplete-uploads"
	// RunRecordsRuleID expires the run records runners write to the state
	// bucket, and the versions and delete markers their expiry leaves.
	RunRecordsRuleID = "cloudpipe-expire-run-records"
	// InventoryVersionsRuleID expires old versions of the inventory; the
	// current ones are never expired.
	InventoryVersionsRuleID = "cloudpipe-expire-old-inventory-versions"
)

// Lifecycle defaults, in days.
const (
	AbortIncompleteUploadsAfterDays   = 7
	RunRecordsExpireAfterDays         = 90
	InventoryVersionsExpireAfterDays  = 30
	expiredRunVersionsExpireAfterDays = 1
)

// bucketLifecycleRules are the rules of every bucket cloudpipe creates.
func bucketLifecycleRules() []s3types.LifecycleRule {
	return []s3types.LifecycleRule{{
		ID:     aws.String(AbortUploadsRuleID),
		Status: s3types.ExpirationStatusEnabled,
		Filter: &s3types.LifecycleRuleFilter{Prefix: aws.String("")}, // the whole bucket
		AbortIncompleteMultipartUpload: &s3types.AbortIncompleteMultipartUpload{
			DaysAfterInitiation: aws.Int32(AbortIncompleteUploadsAfterDays),
		},
	}}
}

// stateBucketLifecycleRules are the state bucket's: those of every bucket,
// run records expired, and old inventory versions expired. The bucket is
// versioned, so expiring a record makes it a noncurrent version under a
// delete marker: the noncurrent version goes a day later, and S3 removes
// the delete marker left alone, since the rule gives Days ("When you
// specify the Days tag, Amazon S3 automatically performs
// ExpiredObjectDeleteMarker cleanup").
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-expire-general-considerations.html
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/intro-lifecycle-rules.html
func stateBucketLifecycleRules() []s3types.LifecycleRule {
	return append(bucketLifecycleRules(),
		s3types.LifecycleRule{
			ID:                          aws.String(RunRecordsRuleID),
			Status:                      s3types.ExpirationStatusEnabled,
			Filter:                      &s3types.LifecycleRuleFilter{Prefix: aws.String(contract.RunsPrefix)},
			Expiration:                  &s3types.LifecycleExpiration{Days: aws.Int32(RunRecordsExpireAfterDays)},
			NoncurrentVersionExpiration: &s3types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(expiredRunVersionsExpireAfterDays)},
		},
		s3types.LifecycleRule{
			ID:                          aws.String(InventoryVersionsRuleID),
			Status:                      s3types.ExpirationStatusEnabled,
			Filter:                      &s3types.LifecycleRuleFilter{Prefix: aws.String(InventoryPrefix)},
			NoncurrentVersionExpiration: &s3types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(InventoryVersionsExpireAfterDays)},
		},
	)
}

// lifecycleChange is what ensureLifecycle did.
type lifecycleChange int

const (
	lifecycleFound   lifecycleChange = iota // every rule was there as wanted
	lifecycleCreated                        // none of ours was there
	lifecycleUpdated                        // some were missing or different
)

// ensureLifecycle makes bucket's lifecycle configuration hold the rules of
// want, each by its ID, and keeps every other rule as it is. It reads the
// configuration first and writes only when one of ours is missing or
// differs, because PutBucketLifecycleConfiguration replaces the whole
// configuration.
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketLifecycleConfiguration.html
// Call it only on a bucket cloudpipe created.
func ensureLifecycle(ctx context.Context, c *clients, bucket string, want []s3types.LifecycleRule) (lifecycleChange, error) {
	var have []s3types.LifecycleRule
	out, err := c.s3.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: &bucket})
	switch {
	case hasCode(err, "NoSuchLifecycleConfiguration"):
	case err != nil:
		return 0, fmt.Errorf("get bucket lifecycle configuration %s: %w", bucket, err)
	default:
		have = out.Rules
	}
	rules, change := mergeLifecycle(have, want)
	if change == lifecycleFound {
		return change, nil
	}
	_, err = c.s3.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket:                 &bucket,
		LifecycleConfiguration: &s3types.BucketLifecycleConfiguration{Rules: rules},
	})
	if err != nil {
		return 0, fmt.Errorf("put bucket lifecycle configuration %s: %w", bucket, err)
	}
	return change, nil
}

// mergeLifecycle returns have with each rule of want in place of the rule
// of the same ID, or added after the others, and what that changes. Rules
// of other IDs are kept as they are, in their order.
func mergeLifecycle(have, want []s3types.LifecycleRule) ([]s3types.LifecycleRule, lifecycleChange) {
	out := slices.Clone(have)
	found, differ := 0, false
	for _, w := range want {
		i := slices.IndexFunc(out, func(r s3types.LifecycleRule) bool { return aws.ToString(r.ID) == aws.ToString(w.ID) })
		switch {
		case i < 0:
			out = append(out, w)
			differ = true
		case sameRule(out[i], w):
			found++
		default:
			found++
			out[i] = w
			differ = true
		}
	}
	switch {
	case !differ:
		return out, lifecycleFound
	case found == 0:
		return out, lifecycleCreated
	default:
		return out, lifecycleUpdated
	}
}

// ruleShape is what a lifecycle rule of cloudpipe's says, in the terms it
// uses; other is set when the rule says anything more (transitions, a tag
// or size filter, a date), which none of cloudpipe's does.
type ruleShape struct {
	id, status, prefix                  string
	expireDays, noncurrentDays, abortIn int32
	other                               bool
}

// shapeOf reads a rule as S3 answers it: the prefix in Filter (or in the
// legacy top-level Prefix, or in a Filter.And), absent numbers as 0.
func shapeOf(r s3types.LifecycleRule) ruleShape {
	//lint:ignore SA1019 rules written before Filter existed, by others, still say their prefix here
	s := ruleShape{id: aws.ToString(r.ID), status: string(r.Status), prefix: aws.ToString(r.Prefix)}
	s.other = len(r.Transitions) > 0 || len(r.NoncurrentVersionTransitions) > 0
	if f := r.Filter; f != nil {
		s.prefix += aws.ToString(f.Prefix)
		s.other = s.other || f.And != nil || f.Tag != nil || f.ObjectSizeGreaterThan != nil || f.ObjectSizeLessThan != nil
	}
	if e := r.Expiration; e != nil {
		s.expireDays = aws.ToInt32(e.Days)
		s.other = s.other || e.Date != nil || aws.ToBool(e.ExpiredObjectDeleteMarker)
	}
	if n := r.NoncurrentVersionExpiration; n != nil {
		s.noncurrentDays = aws.ToInt32(n.NoncurrentDays)
		s.other = s.other || n.NewerNoncurrentVersions != nil
	}
	if a := r.AbortIncompleteMultipartUpload; a != nil {
		s.abortIn = aws.ToInt32(a.DaysAfterInitiation)
	}
	return s
}

// sameRule reports whether have says what want says.
func sameRule(have, want s3types.LifecycleRule) bool {
	return shapeOf(have) == shapeOf(want)
}
