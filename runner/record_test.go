package runner_test

import (
	"testing"

	"github.com/cloudpipe/cloudpipe/runner"
)

func TestResultKey(t *testing.T) {
	tests := []struct {
		key    string
		zipped bool
		want   string
	}{
		{"in/a b.txt", false, "in/Result-sort-a b.txt"},
		{"a.txt", false, "Result-sort-a.txt"},
		{"x/y/z.csv", true, "x/y/Result-sort-z.csv.zip"},
		{"in/Result-uniq-a.txt", false, "in/Result-sort-Result-uniq-a.txt"},
	}
	for _, tt := range tests {
		if got := runner.ResultKey(tt.key, "sort", tt.zipped); got != tt.want {
			t.Errorf("ResultKey(%q, %v) = %q, want %q", tt.key, tt.zipped, got, tt.want)
		}
	}
}
