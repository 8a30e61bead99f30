package sync_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// TestPlanShowsBatchCapacities: a plan shows the shared compute environment
// and job queue a change brings into use (its first user) or out of use
// (its last user gone), in `agent plan` and in the pull-request comment,
// and nothing for a capacity that keeps a user; a deleted Batch stage
// lists its job definition, not a task definition.
func TestPlanShowsBatchCapacities(t *testing.T) {
	g5 := provision.BatchCapacity{Region: "us-east-1", InstanceType: "g5.xlarge", Capacity: "ec2"}
	spot := provision.BatchCapacity{Region: "us-east-1", InstanceType: "g5.xlarge", Capacity: "spot"}
	const (
		envG5 = "batch compute environment cp-batch-g5-xlarge-ec2 (shared, us-east-1/g5.xlarge/ec2)"
		qG5   = "batch job queue cp-batch-g5-xlarge-ec2 (shared, us-east-1/g5.xlarge/ec2)"
		envSp = "batch compute environment cp-batch-g5-xlarge-spot (shared, us-east-1/g5.xlarge/spot)"
		qSp   = "batch job queue cp-batch-g5-xlarge-spot (shared, us-east-1/g5.xlarge/spot)"
	)
	for _, tc := range []struct {
		name       string
		files      map[string]string
		deployed   map[string]bool                      // workflow -> deployed as its file says (else deployed at an old spec)
		capacities map[provision.BatchCapacity][]string // the index's users
		want       []string                             // lines of `agent plan` after the table
		comment    []string                             // in the comment
		notComment []string
	}{
		{
			name:    "first user creates",
			files:   map[string]string{"a": oneStage("a", "gpu", "")},
			want:    []string{"  + " + envG5, "  + " + qG5},
			comment: []string{"#### Shared AWS Batch capacity", "- + batch compute environment `cp-batch-g5-xlarge-ec2`, batch job queue `cp-batch-g5-xlarge-ec2` (us-east-1/g5.xlarge/ec2): created, for stage `a/0`"},
		},
		{
			name:       "second user shares",
			files:      map[string]string{"a": oneStage("a", "gpu", ""), "b": oneStage("b", "gpu", "")},
			deployed:   map[string]bool{"a": true},
			capacities: map[provision.BatchCapacity][]string{g5: {"a/0"}},
			notComment: []string{"Shared AWS Batch capacity"},
		},
		{
			name:       "last user gone deletes, its stage's job definition listed",
			files:      map[string]string{},
			capacities: map[provision.BatchCapacity][]string{g5: {"a/0"}},
			deployed:   map[string]bool{"a": false},
			want:       []string{"  - " + envG5, "  - " + qG5},
			comment: []string{"- stage 0: sqs queue `cp-a-0`, sqs queue `cp-a-0-dlq`, lambda function `cp-a-0`, batch job definition `cp-a-0`",
				"- - batch compute environment `cp-batch-g5-xlarge-ec2`, batch job queue `cp-batch-g5-xlarge-ec2` (us-east-1/g5.xlarge/ec2): deleted, its last users gone: stage `a/0`"},
			notComment: []string{"task definition"},
		},
		{
			name:       "one user of two gone keeps it",
			files:      map[string]string{"b": oneStage("b", "gpu", "")},
			deployed:   map[string]bool{"a": false, "b": true},
			capacities: map[provision.BatchCapacity][]string{g5: {"a/0", "b/0"}},
			notComment: []string{"Shared AWS Batch capacity"},
		},
		{
			name:       "moving to Spot creates one and deletes the other",
			files:      map[string]string{"a": oneStage("a", "gpu", `"capacity": "spot"`)},
			deployed:   map[string]bool{"a": false},
			capacities: map[provision.BatchCapacity][]string{g5: {"a/0"}},
			want:       []string{"  - " + envG5, "  - " + qG5, "  + " + envSp, "  + " + qSp},
		},
		{
			name:       "a capacity left without users by a crash is deleted",
			files:      map[string]string{"a": oneStage("a", "sorter", "")},
			deployed:   map[string]bool{"a": true},
			capacities: map[provision.BatchCapacity][]string{spot: nil},
			want:       []string{"  - " + envSp, "  - " + qSp},
			comment:    []string{"(us-east-1/g5.xlarge/spot): deleted, no stage uses it"},
		},
		{
			name:       "fargate stages touch no capacity",
			files:      map[string]string{"a": oneStage("a", "sorter", "")},
			notComment: []string{"Shared AWS Batch capacity", "batch"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := pipesync.LoadDesired(placementRepo(tc.files), "c0ffee0000")
			if len(d.Problems) > 0 {
				t.Fatalf("test repository is invalid: %v", d.Problems)
			}
			idx := &inventory.Index{Workflows: map[string]inventory.IndexEntry{}}
			for name, same := range tc.deployed {
				e := inventory.IndexEntry{Region: "us-east-1", Stages: 1, SpecHash: "old", Commit: "abc", State: inventory.StateReady}
				for _, w := range d.Workflows {
					if w.Name == name && same {
						e.SpecHash = w.SpecHash
					}
				}
				idx.Workflows[name] = e
			}
			for k, users := range tc.capacities {
				idx.BatchCapacities = append(idx.BatchCapacities, inventory.BatchCapacityEntry{BatchCapacity: k, Users: users})
			}
			plan := pipesync.ComputePlan(d, idx, "a", "", time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
			var out bytes.Buffer
			if err := plan.WritePlan(&out); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.Contains(l, "(shared, ") {
					got = append(got, l)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("capacity lines of the plan:\n%s\nwant:\n%s\nplan:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), out.String())
			}
			comment := plan.Comment()
			for _, s := range tc.comment {
				if !strings.Contains(comment, s) {
					t.Errorf("comment lacks %q:\n%s", s, comment)
				}
			}
			for _, s := range tc.notComment {
				if strings.Contains(comment, s) {
					t.Errorf("comment has %q:\n%s", s, comment)
				}
			}
		})
	}
}
