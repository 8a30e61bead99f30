package provision_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// lifecycleRules returns bucket's lifecycle rules by ID, or nil when it has
// no configuration.
func (e *env) lifecycleRules(bucket string) map[string]s3types.LifecycleRule {
	e.t.Helper()
	out, err := e.s3.GetBucketLifecycleConfiguration(context.WithoutCancel(e.t.Context()), &s3.GetBucketLifecycleConfigurationInput{Bucket: &bucket})
	var api smithy.APIError
	if err != nil && (!errors.As(err, &api) || api.ErrorCode() != "NoSuchLifecycleConfiguration") {
		e.t.Fatalf("get lifecycle of %s: %v", bucket, err)
	}
	if err != nil {
		return nil
	}
	rules := map[string]s3types.LifecycleRule{}
	for _, r := range out.Rules {
		rules[aws.ToString(r.ID)] = r
	}
	return rules
}

// wantAbortRule fails the test unless rules abort incomplete uploads of the
// whole bucket after 7 days under cloudpipe's ID.
func wantAbortRule(t *testing.T, bucket string, rules map[string]s3types.LifecycleRule) {
	t.Helper()
	r, ok := rules[provision.AbortUploadsRuleID]
	switch {
	case !ok:
		t.Errorf("%s: no rule %s among %v", bucket, provision.AbortUploadsRuleID, slices.Collect(mapKeys(rules)))
	case r.Status != s3types.ExpirationStatusEnabled || r.AbortIncompleteMultipartUpload == nil ||
		aws.ToInt32(r.AbortIncompleteMultipartUpload.DaysAfterInitiation) != 7 || r.Filter == nil || aws.ToString(r.Filter.Prefix) != "":
		t.Errorf("%s: rule %s = %+v, want incomplete uploads of the whole bucket aborted after 7 days", bucket, provision.AbortUploadsRuleID, r)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestLifecycleRulesOnCreatedBuckets: the buckets a stage creates abort
// incomplete multipart uploads after 7 days, and a second pass writes no
// lifecycle configuration again.
func TestLifecycleRulesOnCreatedBuckets(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	for _, b := range []string{spec.InputBucket, spec.OutputBucket} {
		wantAbortRule(t, b, e.lifecycleRules(b))
	}
	e.calls.Reset()
	e.ensure(spec, res)
	if n := e.calls.Ops()["S3.PutBucketLifecycleConfiguration"]; n != 0 {
		t.Errorf("a second pass wrote %d lifecycle configurations, want 0", n)
	}
}

// TestLifecycleRuleAddedToABucketOfAnOlderAgent: a bucket cloudpipe
// created before it kept lifecycle rules gets the rule on the next pass,
// next to a rule its owner added, which stays.
func TestLifecycleRuleAddedToABucketOfAnOlderAgent(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	userRule := s3types.LifecycleRule{
		ID: aws.String("expire-scratch"), Status: s3types.ExpirationStatusEnabled,
		Filter:     &s3types.LifecycleRuleFilter{Prefix: aws.String("scratch/")},
		Expiration: &s3types.LifecycleExpiration{Days: aws.Int32(3)},
	}
	// As an older agent left it, plus the owner's own rule.
	if _, err := e.s3.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: &spec.InputBucket,
		LifecycleConfiguration: &s3types.BucketLifecycleConfiguration{Rules: []s3types.LifecycleRule{userRule}}}); err != nil {
		t.Fatal(err)
	}
	e.ensure(spec, res)
	rules := e.lifecycleRules(spec.InputBucket)
	wantAbortRule(t, spec.InputBucket, rules)
	if r, ok := rules["expire-scratch"]; !ok || aws.ToInt32(r.Expiration.Days) != 3 || aws.ToString(r.Filter.Prefix) != "scratch/" {
		t.Errorf("the owner's rule is %+v (present %v), want it kept as it was", r, ok)
	}
}

// TestLifecycleNotOnAUsersBucket: a bucket that existed before cloudpipe
// used it gets no lifecycle rule; its configuration is neither read nor
// written.
func TestLifecycleNotOnAUsersBucket(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	spec := e.spec()
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &spec.InputBucket}); err != nil {
		t.Fatal(err)
	}
	e.ensure(spec, provision.StageResources{})
	if rules := e.lifecycleRules(spec.InputBucket); rules != nil {
		t.Errorf("the user's bucket has lifecycle rules %v, want none", slices.Collect(mapKeys(rules)))
	}
	for _, in := range e.calls.Inputs("S3.PutBucketLifecycleConfiguration") {
		if b := aws.ToString(in.(*s3.PutBucketLifecycleConfigurationInput).Bucket); b == spec.InputBucket {
			t.Errorf("lifecycle configuration written to the user's bucket %s", b)
		}
	}
	for _, in := range e.calls.Inputs("S3.GetBucketLifecycleConfiguration") {
		if b := aws.ToString(in.(*s3.GetBucketLifecycleConfigurationInput).Bucket); b == spec.InputBucket {
			t.Errorf("lifecycle configuration read from the user's bucket %s", b)
		}
	}
	wantAbortRule(t, spec.OutputBucket, e.lifecycleRules(spec.OutputBucket))
}

// TestStateBucketLifecycle: bootstrap gives the state bucket its three
// rules; a rule of the administrator's survives the next bootstrap, which
// puts back one of ours changed by hand and reports it updated; a third
// bootstrap finds everything and writes nothing.
func TestStateBucketLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	o := provision.BootstrapOptions{StateBucket: "cloudpipe-state-" + e.name, Cluster: "cloudpipe", Subnets: e.subnets, SecurityGroups: e.sgs}
	if _, err := e.p.Bootstrap(ctx, testenv.Region, o); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	rules := e.lifecycleRules(o.StateBucket)
	wantAbortRule(t, o.StateBucket, rules)
	runs, inv := rules[provision.RunRecordsRuleID], rules[provision.InventoryVersionsRuleID]
	if runs.Filter == nil || aws.ToString(runs.Filter.Prefix) != "runs/" || runs.Expiration == nil || aws.ToInt32(runs.Expiration.Days) != 90 ||
		runs.NoncurrentVersionExpiration == nil || aws.ToInt32(runs.NoncurrentVersionExpiration.NoncurrentDays) != 1 {
		t.Errorf("rule %s = %+v, want runs/ expired after 90 days and its old versions a day later", provision.RunRecordsRuleID, runs)
	}
	if inv.Filter == nil || aws.ToString(inv.Filter.Prefix) != "inventory/" || inv.Expiration != nil ||
		inv.NoncurrentVersionExpiration == nil || aws.ToInt32(inv.NoncurrentVersionExpiration.NoncurrentDays) != 30 {
		t.Errorf("rule %s = %+v, want noncurrent versions under inventory/ expired after 30 days, current ones never", provision.InventoryVersionsRuleID, inv)
	}

	// The administrator adds a rule and shortens ours.
	adminRule := s3types.LifecycleRule{
		ID: aws.String("admin-archive"), Status: s3types.ExpirationStatusEnabled,
		Filter:      &s3types.LifecycleRuleFilter{Prefix: aws.String("exports/")},
		Transitions: []s3types.Transition{{Days: aws.Int32(30), StorageClass: s3types.TransitionStorageClassGlacier}},
	}
	changed := runs
	changed.Expiration = &s3types.LifecycleExpiration{Days: aws.Int32(5)}
	all := []s3types.LifecycleRule{adminRule, changed, rules[provision.AbortUploadsRuleID], inv}
	if _, err := e.s3.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: &o.StateBucket,
		LifecycleConfiguration: &s3types.BucketLifecycleConfiguration{Rules: all}}); err != nil {
		t.Fatal(err)
	}
	second, err := e.p.Bootstrap(ctx, testenv.Region, o)
	if err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}
	label := "s3 lifecycle rules of " + o.StateBucket + " (incomplete uploads aborted after 7 days, run records expired after 90, old inventory versions after 30)"
	if !slices.Equal(second.Updated, []string{label}) {
		t.Errorf("second Bootstrap updated %v, want the lifecycle rules", second.Updated)
	}
	rules = e.lifecycleRules(o.StateBucket)
	if got := rules[provision.RunRecordsRuleID]; got.Expiration == nil || aws.ToInt32(got.Expiration.Days) != 90 {
		t.Errorf("rule %s after bootstrap = %+v, want 90 days again", provision.RunRecordsRuleID, got)
	}
	if got, ok := rules["admin-archive"]; !ok || len(got.Transitions) != 1 || aws.ToInt32(got.Transitions[0].Days) != 30 {
		t.Errorf("the administrator's rule is %+v (present %v), want it kept", got, ok)
	}
	if len(rules) != 4 {
		t.Errorf("%d rules %v, want the administrator's and cloudpipe's three", len(rules), slices.Collect(mapKeys(rules)))
	}

	e.calls.Reset()
	third, err := e.p.Bootstrap(ctx, testenv.Region, o)
	if err != nil {
		t.Fatalf("third Bootstrap: %v", err)
	}
	if !slices.Contains(third.Found, label) || len(third.Updated) != 0 {
		t.Errorf("third Bootstrap found %v, updated %v; want the lifecycle rules found", third.Found, third.Updated)
	}
	if n := e.calls.Ops()["S3.PutBucketLifecycleConfiguration"]; n != 0 {
		t.Errorf("third Bootstrap wrote the lifecycle configuration %d times, want 0", n)
	}
}
