package stagetask_test

import (
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/stagetask"
)

func TestJobNames(t *testing.T) {
	token := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		def, name string
	}{
		{"arn:aws:batch:us-east-1:123456789012:job-definition/cp-w-0:3", "cp-w-0-" + token},
		{"cp-w-0:3", "cp-w-0-" + token},
		{"cp-w-0", "cp-w-0-" + token},
		{"arn:aws:batch:us-east-1:123456789012:job-definition/cp-" + strings.Repeat("x", 80) + "-12:1", ("cp-" + strings.Repeat("x", 80) + "-12-" + token)[:128]},
	} {
		got := stagetask.JobName(tt.def, token)
		if got != tt.name || len(got) > 128 {
			t.Errorf("JobName(%q) = %q, want %q", tt.def, got, tt.name)
		}
		if !stagetask.IsStageJob(tt.def, got) {
			t.Errorf("IsStageJob(%q, %q) = false", tt.def, got)
		}
	}
	if !stagetask.IsStageJob("cp-w-1:1", "cp-w-1-cloudpipe-agent-0123abcd") {
		t.Error("the agent's own start is not the stage's job")
	}
	// Stage 1 of w is not stage 11's, nor another workflow's.
	def := "arn:aws:batch:us-east-1:123456789012:job-definition/cp-w-1:1"
	// Nor stage 1 of workflow "w-1" (cp-w-1-1-…).
	for _, other := range []string{"cp-w-11-" + token, "cp-w-" + token, "cp-v-1-" + token, "cp-w-1-1-" + token} {
		if stagetask.IsStageJob(def, other) {
			t.Errorf("IsStageJob(%q, %q) = true", def, other)
		}
	}
}
