package sync_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/status"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// Secret-looking values a workflow file or an AWS error may carry into a
// plan: none of them may reach the pull request.
const (
	ghToken   = "ghp_0123456789abcdefghijABCDEFGHIJklmn"
	accessKey = "AKIAIOSFODNN7EXAMPLE"
	secretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	password  = "hunter2-correct-horse"
)

func TestPlanComment(t *testing.T) {
	fsys := repo(map[string]string{
		"alpha": singleRun("alpha-in", "alpha-out", "x"),
		"gamma": sequenceRun("gamma-in", "gamma-out"),
		// Broken twice: a bucket name that is a token, and a variable
		// whose value is a secret key in a field that does not exist.
		"broken": singleRun(ghToken, "broken-out", secretKey, `"bogus_field": "`+accessKey+`"`),
		"same":   singleRun("same-in", "same-out", "x"),
	})
	d := pipesync.LoadDesired(fsys, "0123456789abcdef0123456789abcdef01234567")
	now := time.Now()
	idx := &inventory.Index{Workflows: map[string]inventory.IndexEntry{
		// Deployed and failed since, with an AWS error that quotes a
		// credential.
		"gamma": {Region: "us-east-1", Stages: 3, SpecHash: "old", Commit: "abc", State: inventory.StateFailed,
			Error: "api error: password=" + password + " secret_access_key " + secretKey},
		// Its file is gone: deleted.
		"old": {Region: "us-east-1", Stages: 2, SpecHash: "h", Commit: "abc", State: inventory.StateReady, UpdatedAt: now},
	}}
	for _, w := range d.Workflows {
		if w.Name == "same" {
			idx.Workflows["same"] = inventory.IndexEntry{Region: w.Region, Stages: 1, SpecHash: w.SpecHash, Commit: "abc", State: inventory.StateReady}
		}
	}
	plan := pipesync.ComputePlan(d, idx, "agent-a", "", now)
	body := status.CommentBody(plan.Comment())
	t.Log(body)

	for _, want := range []string{
		"### cloudpipe plan for commit 0123456",
		"**+1 create ~1 update -1 delete**, 1 unchanged, 1 invalid",
		// The create: its buckets and each stage's resources.
		"#### + `alpha`: create",
		"input bucket `alpha-in`, output bucket `alpha-out`",
		"sqs queue `cp-alpha-0`, sqs queue `cp-alpha-0-dlq`, lambda function `cp-alpha-0`",
		"iam role `cp-alpha-0-task`",
		"log group `/cloudpipe/alpha`",
		// The update of a three-stage workflow.
		"#### ~ `gamma`: update",
		"2 intermediate buckets",
		"- stage 1 `dedup`",
		// The delete: what the inventory records.
		"#### - `old`: delete",
		"- stage 1: sqs queue `cp-old-1`",
		// The invalid file: each problem as file:line:col: path: message.
		"#### ! `broken`: invalid",
		"Errors (",
		"workflows/broken.json:2:20: input_s3_name: ",
		"Unchanged: `same`",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the comment lacks %q", want)
		}
	}
	for _, secret := range []string{ghToken, accessKey, secretKey, password} {
		if strings.Contains(body, secret) {
			t.Errorf("the comment holds %q", secret)
		}
	}
	if strings.Contains(body, "`same`:") {
		t.Error("an unchanged workflow has a section")
	}
}
