package sync_test

import (
	"testing"

	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
	"github.com/cloudpipe/cloudpipe/workflow"
)

func TestStageSpecsWiresSequence(t *testing.T) {
	alg := func(name string) *workflow.Algorithm {
		return &workflow.Algorithm{Name: name, ContainerName: "alpine:3.20", RunCommand: "sort -o $output $input",
			InputFilePath: "/data/in", OutputFilePath: "/data/out", CPU: 0.25, Memory: workflow.Memory{Minimal: 128, Suggested: 512}}
	}
	w := &workflow.Workflow{
		Name: "chain", File: "workflows/chain.json", InputBucket: "user-in", OutputBucket: "user-out", Region: "eu-west-1",
		Secrets:    map[string]string{"DB_PASSWORD": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db"},
		KMSKeyARNs: []string{"arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
		Process:    workflow.Process{Type: workflow.SequenceRun},
		Stages: []workflow.Stage{
			{Index: 0, Step: workflow.Step{Name: "a", Variables: map[string]string{"X": "1"}}, Algorithm: alg("a")},
			{Index: 1, Step: workflow.Step{Name: "b"}, Algorithm: alg("b")},
			{Index: 2, Step: workflow.Step{Name: "c"}, Algorithm: alg("c")},
		},
	}
	storage := 50
	w.Stages[1].Algorithm.EphemeralStorageGiB = &storage
	specs := pipesync.StageSpecs(w, "123456789012", "state")
	if len(specs) != 3 {
		t.Fatalf("got %d stages, want 3", len(specs))
	}
	mid0 := provision.IntermediateBucketName("chain", 0, "123456789012", "eu-west-1")
	mid1 := provision.IntermediateBucketName("chain", 1, "123456789012", "eu-west-1")
	want := []struct {
		in, out           string
		inOwned, outOwned bool
	}{
		{"user-in", mid0, false, true},
		{mid0, mid1, true, true},
		{mid1, "user-out", true, false},
	}
	for i, s := range specs {
		keys := w.KMSKeyARNs
		w := want[i]
		if s.InputBucket != w.in || s.OutputBucket != w.out || s.InputOwned != w.inOwned || s.OutputOwned != w.outOwned {
			t.Errorf("stage %d: in=%s(%v) out=%s(%v), want in=%s(%v) out=%s(%v)", i,
				s.InputBucket, s.InputOwned, s.OutputBucket, s.OutputOwned, w.in, w.inOwned, w.out, w.outOwned)
		}
		if s.Stage != i || s.Region != "eu-west-1" || s.AccountID != "123456789012" || s.StateBucket != "state" {
			t.Errorf("stage %d: identity %+v", i, s)
		}
		if s.Secrets["DB_PASSWORD"] == "" {
			t.Errorf("stage %d: workflow secrets not passed", i)
		}
		// Every stage's task role may use the workflow's further keys.
		if len(s.KMSKeyARNs) != 1 || s.KMSKeyARNs[0] != keys[0] {
			t.Errorf("stage %d: kms keys %v, want the workflow's %v", i, s.KMSKeyARNs, keys)
		}
		if !s.RetainBuckets {
			t.Errorf("stage %d: retain_buckets defaults to true", i)
		}
		if s.Algorithm.MemoryMiB != 512 {
			t.Errorf("stage %d: memory %d, want memory.suggested 512", i, s.Algorithm.MemoryMiB)
		}
	}
	if specs[0].Algorithm.EphemeralStorageGiB != 0 || specs[1].Algorithm.EphemeralStorageGiB != 50 {
		t.Errorf("ephemeral storage %d and %d GiB, want 0 (absent: Fargate's default) and the algorithm's 50",
			specs[0].Algorithm.EphemeralStorageGiB, specs[1].Algorithm.EphemeralStorageGiB)
	}
	if specs[0].Variables["X"] != "1" || len(specs[1].Variables) != 0 {
		t.Errorf("variables are per step: %v, %v", specs[0].Variables, specs[1].Variables)
	}
	if mid0 == mid1 {
		t.Errorf("intermediate buckets collide: %s", mid0)
	}
}
