package workflow_test

import (
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestKeyPairNote: a workflow's key_pair is noted as ignored only when every
// stage runs on Fargate; a stage on AWS Batch has instances, whose compute
// environment gets the key pair.
func TestKeyPairNote(t *testing.T) {
	const note = "key_pair: key_pair is ignored"
	tests := []struct {
		name     string
		keyPair  string
		alg      map[string]any // set on the seed algorithm
		capacity string         // the step's
		wfCap    string         // the workflow's
		want     bool
	}{
		{"Fargate, no type", "wyx-cci", map[string]any{"instance_type": ""}, "", "", true},
		{"Fargate-sized type", "wyx-cci", map[string]any{"instance_type": "t2.micro"}, "", "", true},
		{"GPU type on Batch", "wyx-cci", map[string]any{"instance_type": "g5.xlarge"}, "", "", false},
		{"privileged on Batch", "wyx-cci", map[string]any{"instance_type": "m5.large", "privileged": true}, "", "", false},
		{"step capacity spot", "wyx-cci", map[string]any{"instance_type": "m5.large"}, "spot", "", false},
		{"workflow capacity ec2", "wyx-cci", map[string]any{"instance_type": "m5.large"}, "", "ec2", false},
		{"workflow capacity fargate", "wyx-cci", map[string]any{"instance_type": "m5.large"}, "", "fargate", true},
		{"no key pair", "", map[string]any{"instance_type": ""}, "", "", false},
		{"blank key pair", "  ", map[string]any{"instance_type": ""}, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, a := baseWorkflow(), baseAlgorithm(t)
			w["key_pair"] = tt.keyPair
			for k, v := range tt.alg {
				a[k] = v
			}
			if tt.capacity != "" {
				step0(w)["capacity"] = tt.capacity
			}
			if tt.wfCap != "" {
				w["capacity"] = tt.wfCap
			}
			cfg, probs := workflow.Load(repo(map[string][]byte{seedWorkflowFile: mustJSON(t, w), seedAlgorithmFile: mustJSON(t, a)}))
			if len(probs) > 0 {
				t.Fatalf("problems: %v", probs.Error())
			}
			got := false
			for _, n := range cfg.Notes {
				if strings.Contains(n.String(), note) {
					got = true
				}
			}
			if got != tt.want {
				t.Errorf("note %q given: %v, want %v (notes: %v)", note, got, tt.want, cfg.Notes)
			}
		})
	}
}
