package provision

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestMergeLifecycle: cloudpipe's rules go in by ID, in place of a rule of
// the same ID or after the others; every other rule stays as it is, in its
// place; a configuration that already says what cloudpipe wants is found,
// whichever of S3's forms it is read back in.
func TestMergeLifecycle(t *testing.T) {
	abort := bucketLifecycleRules()[0]
	state := stateBucketLifecycleRules()
	user := s3types.LifecycleRule{ID: aws.String("user"), Status: s3types.ExpirationStatusEnabled,
		Filter: &s3types.LifecycleRuleFilter{Prefix: aws.String("tmp/")}, Expiration: &s3types.LifecycleExpiration{Days: aws.Int32(3)}}
	with := func(r s3types.LifecycleRule, change func(*s3types.LifecycleRule)) s3types.LifecycleRule {
		change(&r)
		return r
	}
	ids := func(rules []s3types.LifecycleRule) []string {
		var out []string
		for _, r := range rules {
			out = append(out, aws.ToString(r.ID))
		}
		return out
	}
	tests := []struct {
		name       string
		have, want []s3types.LifecycleRule
		wantIDs    []string
		change     lifecycleChange
	}{
		{"no configuration", nil, state, ids(state), lifecycleCreated},
		{"only the user's rule", []s3types.LifecycleRule{user}, state, append([]string{"user"}, ids(state)...), lifecycleCreated},
		{"all there", state, state, ids(state), lifecycleFound},
		{"all there after the user's", append([]s3types.LifecycleRule{user}, state...), state, append([]string{"user"}, ids(state)...), lifecycleFound},
		{"one missing", state[:2], state, ids(state), lifecycleUpdated},
		{"days changed by hand", []s3types.LifecycleRule{with(abort, func(r *s3types.LifecycleRule) {
			r.AbortIncompleteMultipartUpload = &s3types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(1)}
		}), user}, []s3types.LifecycleRule{abort}, []string{AbortUploadsRuleID, "user"}, lifecycleUpdated},
		{"disabled by hand", []s3types.LifecycleRule{with(abort, func(r *s3types.LifecycleRule) { r.Status = s3types.ExpirationStatusDisabled })},
			[]s3types.LifecycleRule{abort}, []string{AbortUploadsRuleID}, lifecycleUpdated},
		{"a transition added to ours", []s3types.LifecycleRule{with(abort, func(r *s3types.LifecycleRule) {
			r.Transitions = []s3types.Transition{{Days: aws.Int32(30), StorageClass: s3types.TransitionStorageClassGlacier}}
		})}, []s3types.LifecycleRule{abort}, []string{AbortUploadsRuleID}, lifecycleUpdated},
		{"prefix in the legacy field", []s3types.LifecycleRule{with(state[1], func(r *s3types.LifecycleRule) {
			//lint:ignore SA1019 S3 may answer a rule in the legacy form
			r.Filter, r.Prefix = nil, aws.String("runs/")
		})},
			[]s3types.LifecycleRule{state[1]}, []string{RunRecordsRuleID}, lifecycleFound},
		{"filter without a prefix", []s3types.LifecycleRule{with(abort, func(r *s3types.LifecycleRule) { r.Filter = &s3types.LifecycleRuleFilter{} })},
			[]s3types.LifecycleRule{abort}, []string{AbortUploadsRuleID}, lifecycleFound},
		{"another prefix", []s3types.LifecycleRule{with(state[2], func(r *s3types.LifecycleRule) { r.Filter = &s3types.LifecycleRuleFilter{Prefix: aws.String("inv/")} })},
			[]s3types.LifecycleRule{state[2]}, []string{InventoryVersionsRuleID}, lifecycleUpdated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			have := slices.Clone(tt.have)
			got, change := mergeLifecycle(have, tt.want)
			if change != tt.change || !slices.Equal(ids(got), tt.wantIDs) {
				t.Errorf("merge = %v, change %d; want %v, change %d", ids(got), change, tt.wantIDs, tt.change)
			}
			for _, w := range tt.want {
				i := slices.IndexFunc(got, func(r s3types.LifecycleRule) bool { return aws.ToString(r.ID) == aws.ToString(w.ID) })
				if i < 0 || !sameRule(got[i], w) {
					t.Errorf("rule %s is not as wanted after the merge", aws.ToString(w.ID))
				}
			}
			for i, r := range have {
				if aws.ToString(r.ID) == "user" && !slices.ContainsFunc(got, func(g s3types.LifecycleRule) bool { return shapeOf(g) == shapeOf(tt.have[i]) }) {
					t.Error("the user's rule was changed or dropped")
				}
			}
		})
	}
}
