package provision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// objectCreatedEvent is the event a stage's input bucket notifies on.
// No key filter: every object in an input bucket is an input, including the
// Result-<NAME>-<file> objects the previous stage writes into it.
const objectCreatedEvent = s3types.Event("s3:ObjectCreated:*")

// isBucketNotFound reports the errors S3 gives for a missing bucket: HeadBucket
// has no body, so only "NotFound" (HTTP 404); other calls say NoSuchBucket.
func isBucketNotFound(err error) bool {
	var nb *s3types.NoSuchBucket
	var nf *s3types.NotFound
	return errors.As(err, &nb) || errors.As(err, &nf) || hasCode(err, "NoSuchBucket", "NotFound")
}

// findBucketTags returns a bucket's tags (empty when it has none),
// ErrNotFound when the bucket does not exist, or a *ForeignBucketError when
// S3 will not show them: a 403 is another account's bucket (or one this
// agent may not read), never a bucket of ours without tags.
func findBucketTags(ctx context.Context, c *clients, bucket string) (map[string]string, error) {
	out, err := c.s3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: &bucket})
	switch {
	case hasCode(err, "NoSuchTagSet"):
		return map[string]string{}, nil
	case isBucketNotFound(err):
		return nil, fmt.Errorf("get bucket tagging %s: %w", bucket, ErrNotFound)
	case isAccessDenied(err):
		return nil, fmt.Errorf("get bucket tagging %s: %w", bucket, &ForeignBucketError{Bucket: bucket, Err: err})
	case err != nil:
		return nil, fmt.Errorf("get bucket tagging %s: %w", bucket, err)
	}
	tags := make(map[string]string, len(out.TagSet))
	for _, t := range out.TagSet {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return tags, nil
}

// bucketExists reports whether a bucket exists (HeadBucket).
func bucketExists(ctx context.Context, c *clients, bucket string) (bool, error) {
	_, err := c.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket})
	switch {
	case err == nil:
		return true, nil
	case isBucketNotFound(err):
		return false, nil
	case isAccessDenied(err):
		return false, fmt.Errorf("head bucket %s: %w", bucket, &ForeignBucketError{Bucket: bucket, Err: err})
	default:
		return false, fmt.Errorf("head bucket %s: %w", bucket, err)
	}
}

// ensureBucket makes sure bucket exists and reports whether cloudpipe
// created it (it carries the managed and workflow tags). A missing bucket is
// created with tags, public access blocked, default encryption and the
// lifecycle rule that aborts incomplete uploads. An existing bucket with our
// tags gets its protection and that rule checked; an existing
// bucket without them is used as it is (never tagged or changed) unless
// mustOwn says it is an intermediate bucket only cloudpipe may create, which
// gives a *NotOwnedError.
func ensureBucket(ctx context.Context, c *clients, bucket string, tags map[string]string, mustOwn bool) (created bool, err error) {
	have, err := findBucketTags(ctx, c, bucket)
	if errors.Is(err, ErrNotFound) {
		existed, cerr := createBucket(ctx, c, bucket, tags)
		if cerr != nil {
			return false, cerr
		}
		if !existed {
			_, err := ensureLifecycle(ctx, c, bucket, bucketLifecycleRules())
			return true, err
		}
		// Created concurrently (by another pass, or by the user): check it
		// like any bucket that was there.
		have, err = findBucketTags(ctx, c, bucket)
	}
	if err != nil {
		return false, err
	}
	if !ownedBy(have, tags[TagWorkflow]) {
		if mustOwn {
			return false, &NotOwnedError{Kind: "s3 bucket", Name: bucket}
		}
		return false, nil
	}
	// Ours: finish what a crash between CreateBucket and the protection
	// calls may have left undone, and bring the lifecycle rules of a
	// bucket made by an older agent up to date.
	if err := ensureBucketProtection(ctx, c, bucket); err != nil {
		return true, err
	}
	_, err = ensureLifecycle(ctx, c, bucket, bucketLifecycleRules())
	return true, err
}

// createBucket creates a tagged bucket with public access blocked and SSE-S3
// default encryption. It reports existed when the bucket turned out to be
// this account's already (BucketAlreadyOwnedByYou, or in us-east-1 a 200
// for a bucket without our tags): then it changed nothing.
func createBucket(ctx context.Context, c *clients, bucket string, tags map[string]string) (existed bool, err error) {
	conf := &s3types.CreateBucketConfiguration{Tags: s3Tags(tags)}
	// us-east-1 is the default location and AWS rejects it as an explicit
	// constraint.
	if c.region != "us-east-1" {
		conf.LocationConstraint = s3types.BucketLocationConstraint(c.region)
	}
	_, err = c.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket, CreateBucketConfiguration: conf})
	var owned *s3types.BucketAlreadyOwnedByYou
	var taken *s3types.BucketAlreadyExists
	switch {
	case errors.As(err, &owned) || hasCode(err, "BucketAlreadyOwnedByYou"):
		return true, nil
	case errors.As(err, &taken) || hasCode(err, "BucketAlreadyExists"):
		return false, fmt.Errorf("create bucket %s: the name is taken by another AWS account: %w", bucket, err)
	case err != nil:
		return false, fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	if c.region == "us-east-1" {
		// "if you re-create an existing bucket that you already own in the
		// North Virginia Region, Amazon S3 returns 200 OK"
		// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html),
		// so there a 200 does not say we created it: the user may have
		// created it since we found it missing. Our tags do, as CreateBucket
		// sets them only on a bucket it creates.
		have, err := findBucketTags(ctx, c, bucket)
		if err != nil {
			return false, err
		}
		if !ownedBy(have, tags[TagWorkflow]) {
			return true, nil
		}
	}
	return false, ensureBucketProtection(ctx, c, bucket)
}

// ensureBucketProtection blocks public access and turns on SSE-S3 default
// encryption on a bucket of ours, writing only what is not already set
// (AWS sets both on new buckets by default; older buckets or emulators may
// not).
func ensureBucketProtection(ctx context.Context, c *clients, bucket string) error {
	pab, err := c.s3.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: &bucket})
	if err != nil && !hasCode(err, "NoSuchPublicAccessBlockConfiguration") {
		return fmt.Errorf("get public access block %s: %w", bucket, err)
	}
	if err != nil || !allBlocked(pab.PublicAccessBlockConfiguration) {
		_, err := c.s3.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{
			Bucket: &bucket,
			PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{
				BlockPublicAcls: aws.Bool(true), IgnorePublicAcls: aws.Bool(true),
				BlockPublicPolicy: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true),
			},
		})
		if err != nil {
			return fmt.Errorf("put public access block %s: %w", bucket, err)
		}
	}
	enc, err := c.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: &bucket})
	if err != nil && !hasCode(err, "ServerSideEncryptionConfigurationNotFoundError") {
		return fmt.Errorf("get bucket encryption %s: %w", bucket, err)
	}
	if err != nil || !hasDefaultEncryption(enc.ServerSideEncryptionConfiguration) {
		_, err := c.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{
			Bucket: &bucket,
			ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{
				Rules: []s3types.ServerSideEncryptionRule{{
					ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAes256},
				}},
			},
		})
		if err != nil {
			return fmt.Errorf("put bucket encryption %s: %w", bucket, err)
		}
	}
	return nil
}

func allBlocked(c *s3types.PublicAccessBlockConfiguration) bool {
	return c != nil && aws.ToBool(c.BlockPublicAcls) && aws.ToBool(c.IgnorePublicAcls) &&
		aws.ToBool(c.BlockPublicPolicy) && aws.ToBool(c.RestrictPublicBuckets)
}

// hasDefaultEncryption accepts any default encryption (SSE-S3 or a KMS key
// an administrator chose), so cloudpipe never downgrades a stronger setting.
func hasDefaultEncryption(c *s3types.ServerSideEncryptionConfiguration) bool {
	if c == nil {
		return false
	}
	for _, r := range c.Rules {
		if r.ApplyServerSideEncryptionByDefault != nil && r.ApplyServerSideEncryptionByDefault.SSEAlgorithm != "" {
			return true
		}
	}
	return false
}

func s3Tags(tags map[string]string) []s3types.Tag {
	keys := slices.Sorted(maps.Keys(tags))
	out := make([]s3types.Tag, 0, len(keys))
	for _, k := range keys {
		out = append(out, s3types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

// ensureNotification makes the bucket's notification configuration hold our
// entry id (Lambda functionARN on object creation) when want, and no entry
// id when not, leaving every other entry as it is. It reads the document
// first and writes only when it changes, because
// PutBucketNotificationConfiguration replaces the whole document. A missing
// bucket is fine when removing. It reports whether it wrote.
func (p *Provisioner) ensureNotification(ctx context.Context, c *clients, bucket, id, functionARN string, want bool) (bool, error) {
	cur, err := c.s3.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: &bucket})
	if err != nil {
		if !want && isBucketNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("get bucket notification %s: %w", bucket, err)
	}
	var kept, ours []s3types.LambdaFunctionConfiguration
	for _, lc := range cur.LambdaFunctionConfigurations {
		if aws.ToString(lc.Id) == id {
			ours = append(ours, lc)
		} else {
			kept = append(kept, lc)
		}
	}
	upToDate := len(ours) == 0
	if want {
		upToDate = len(ours) == 1 && isOurNotification(ours[0], functionARN)
	}
	if upToDate {
		return false, nil
	}
	if want {
		// S3 would refuse the whole document: say which rule is in the way
		// rather than pass on its InvalidArgument.
		ourRule := NotificationRule{ID: id, Events: []string{string(objectCreatedEvent)}}
		if r, ok := overlappingRule(notificationRules(cur, id), ourRule); ok {
			return false, &NotificationOverlapError{Bucket: bucket, Rule: r}
		}
		kept = append(kept, s3types.LambdaFunctionConfiguration{
			Id:                aws.String(id),
			LambdaFunctionArn: aws.String(functionARN),
			Events:            []s3types.Event{objectCreatedEvent},
		})
	}
	in := &s3.PutBucketNotificationConfigurationInput{
		Bucket: &bucket,
		NotificationConfiguration: &s3types.NotificationConfiguration{
			EventBridgeConfiguration:     cur.EventBridgeConfiguration,
			LambdaFunctionConfigurations: kept,
			QueueConfigurations:          cur.QueueConfigurations,
			TopicConfigurations:          cur.TopicConfigurations,
		},
	}
	err = p.retryPropagation(ctx, "put bucket notification", isNotificationDestinationNotReady, func(ctx context.Context) error {
		_, err := c.s3.PutBucketNotificationConfiguration(ctx, in)
		return err
	})
	if want && isNotificationOverlap(err) {
		// A rule added since we read: name it if a second read finds it.
		return false, p.overlapError(ctx, c, bucket, id, err)
	}
	if err != nil {
		return false, fmt.Errorf("put bucket notification %s: %w", bucket, err)
	}
	return true, nil
}

// overlapError is the *NotificationOverlapError for S3's refusal err of our
// entry id on bucket, naming the rule in the way when the bucket's
// configuration now shows one.
func (p *Provisioner) overlapError(ctx context.Context, c *clients, bucket, id string, err error) error {
	oe := &NotificationOverlapError{Bucket: bucket, Err: err}
	cur, gerr := c.s3.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: &bucket})
	if gerr == nil {
		ourRule := NotificationRule{ID: id, Events: []string{string(objectCreatedEvent)}}
		if r, ok := overlappingRule(notificationRules(cur, id), ourRule); ok {
			oe.Rule = r
		}
	}
	return oe
}

// notificationRules lists the entries of a notification configuration,
// whatever their destination, but for the one with id ours.
func notificationRules(cur *s3.GetBucketNotificationConfigurationOutput, ours string) []NotificationRule {
	var out []NotificationRule
	add := func(id *string, dest string, events []s3types.Event, f *s3types.NotificationConfigurationFilter) {
		if aws.ToString(id) == ours {
			return
		}
		r := NotificationRule{ID: aws.ToString(id), Destination: dest}
		for _, e := range events {
			r.Events = append(r.Events, string(e))
		}
		if f != nil && f.Key != nil {
			for _, fr := range f.Key.FilterRules {
				switch strings.ToLower(string(fr.Name)) {
				case "prefix":
					r.Prefix = aws.ToString(fr.Value)
				case "suffix":
					r.Suffix = aws.ToString(fr.Value)
				}
			}
		}
		out = append(out, r)
	}
	for _, l := range cur.LambdaFunctionConfigurations {
		add(l.Id, "lambda function "+aws.ToString(l.LambdaFunctionArn), l.Events, l.Filter)
	}
	for _, q := range cur.QueueConfigurations {
		add(q.Id, "sqs queue "+aws.ToString(q.QueueArn), q.Events, q.Filter)
	}
	for _, t := range cur.TopicConfigurations {
		add(t.Id, "sns topic "+aws.ToString(t.TopicArn), t.Events, t.Filter)
	}
	return out
}

// overlappingRule returns the first of rules that S3 would refuse next to
// ours: "Notification configurations that use Filter cannot define
// filtering rules with overlapping prefixes, overlapping suffixes, or
// prefix and suffix overlapping" for a common event type, and rules
// without a filter may not share one at all
// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-filtering.html).
// Some key matches two filters when one prefix extends the other and one
// suffix extends the other; an empty prefix or suffix extends to any.
func overlappingRule(rules []NotificationRule, ours NotificationRule) (NotificationRule, bool) {
	for _, r := range rules {
		if !eventsIntersect(r.Events, ours.Events) {
			continue
		}
		prefixes := strings.HasPrefix(r.Prefix, ours.Prefix) || strings.HasPrefix(ours.Prefix, r.Prefix)
		suffixes := strings.HasSuffix(r.Suffix, ours.Suffix) || strings.HasSuffix(ours.Suffix, r.Suffix)
		if prefixes && suffixes {
			return r, true
		}
	}
	return NotificationRule{}, false
}

// eventsIntersect reports whether two event lists share an event type;
// a type ending in "*" ("s3:ObjectCreated:*") covers every type it starts
// ("s3:ObjectCreated:Put").
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-event-types-and-destinations.html
func eventsIntersect(a, b []string) bool {
	covers := func(x, y string) bool {
		return x == y || (strings.HasSuffix(x, "*") && strings.HasPrefix(y, strings.TrimSuffix(x, "*")))
	}
	for _, x := range a {
		for _, y := range b {
			if covers(x, y) || covers(y, x) {
				return true
			}
		}
	}
	return false
}

func hasID(cs []s3types.LambdaFunctionConfiguration, id string) bool {
	return slices.ContainsFunc(cs, func(c s3types.LambdaFunctionConfiguration) bool { return aws.ToString(c.Id) == id })
}

// isOurNotification reports whether an entry invokes functionARN on object
// creation with no key filter.
func isOurNotification(lc s3types.LambdaFunctionConfiguration, functionARN string) bool {
	return aws.ToString(lc.LambdaFunctionArn) == functionARN &&
		len(lc.Events) == 1 && lc.Events[0] == objectCreatedEvent &&
		(lc.Filter == nil || lc.Filter.Key == nil || len(lc.Filter.Key.FilterRules) == 0)
}

// findNotification reports whether the bucket's notification configuration
// holds an entry with id.
func findNotification(ctx context.Context, c *clients, bucket, id string) (bool, error) {
	cur, err := c.s3.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: &bucket})
	if isBucketNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get bucket notification %s: %w", bucket, err)
	}
	return hasID(cur.LambdaFunctionConfigurations, id), nil
}

// Reasons a bucket is kept by DeleteStage.
const (
	keptNotOurs  = "not created by cloudpipe"
	keptRetained = "retain_buckets is set"
	keptNotEmpty = "not empty"
	keptForeign  = "of another AWS account, or not readable by this agent"
)

// deleteBucket deletes a bucket of a deleted stage if the rules allow:
// cloudpipe created it (it has our tags), it is an intermediate bucket or
// retain is false, and it is empty (buckets are never emptied). When it is
// kept, the reason says why.
func deleteBucket(ctx context.Context, c *clients, bucket, workflow string, intermediate, retain bool) (result outcome, reason string, err error) {
	tags, err := findBucketTags(ctx, c, bucket)
	var foreign *ForeignBucketError
	switch {
	case errors.Is(err, ErrNotFound):
		return outcomeGone, "", nil
	case errors.As(err, &foreign):
		// Not ours to delete, and no reason to stop deleting the rest.
		return outcomeKept, keptForeign, nil
	case err != nil:
		return 0, "", err
	}
	switch {
	case !ownedBy(tags, workflow):
		return outcomeKept, keptNotOurs, nil
	case !intermediate && retain:
		return outcomeKept, keptRetained, nil
	}
	_, err = c.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket})
	switch {
	case hasCode(err, "BucketNotEmpty"):
		return outcomeKept, keptNotEmpty, nil
	case isBucketNotFound(err):
		return outcomeGone, "", nil
	case err != nil:
		return 0, "", fmt.Errorf("delete bucket %s: %w", bucket, err)
	}
	return outcomeDeleted, "", nil
}

// sortedKept orders kept buckets by name for stable reports.
func sortedKept(k []KeptBucket) []KeptBucket {
	sort.Slice(k, func(i, j int) bool { return k[i].Name < k[j].Name })
	return k
}

// notificationDrift reports our entry id in bucket's notification
// configuration when it no longer invokes functionARN on object creation
// with no filter (ensureNotification's test), reading only; a missing entry
// is no drift here (MissingResources reports it).
func notificationDrift(ctx context.Context, c *clients, bucket, id, functionARN string) ([]Drift, error) {
	cur, err := c.s3.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: &bucket})
	if isBucketNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get bucket notification %s: %w", bucket, err)
	}
	for _, lc := range cur.LambdaFunctionConfigurations {
		if aws.ToString(lc.Id) != id || isOurNotification(lc, functionARN) {
			continue
		}
		var events []string
		for _, e := range lc.Events {
			events = append(events, string(e))
		}
		return []Drift{{Kind: kindNotification, Name: id + " on " + bucket, Setting: "rule",
			Want: string(objectCreatedEvent) + " to " + functionARN,
			Have: strings.Join(events, ",") + " to " + aws.ToString(lc.LambdaFunctionArn) + filtered(lc)}}, nil
	}
	return nil, nil
}

// filtered notes a key filter on a notification entry, which ours has not.
func filtered(lc s3types.LambdaFunctionConfiguration) string {
	if lc.Filter != nil && lc.Filter.Key != nil && len(lc.Filter.Key.FilterRules) > 0 {
		return " with a key filter"
	}
	return ""
}
