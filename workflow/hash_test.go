package workflow_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestSpecHash: the hash follows content, of the workflow and of the
// algorithms it uses, and ignores layout and identity.
func TestSpecHash(t *testing.T) {
	wf, alg := fixedSeed(t)
	unused := bytes.Replace(alg, []byte(`"change123-s3"`), []byte(`"unused"`), 1)
	base := map[string][]byte{seedWorkflowFile: wf, seedAlgorithmFile: alg, "algorithms/unused.json": unused}
	with := func(file string, data []byte) map[string][]byte {
		m := map[string][]byte{}
		for k, v := range base {
			m[k] = v
		}
		m[file] = data
		return m
	}
	wfSub := func(old, new string) map[string][]byte {
		if !bytes.Contains(wf, []byte(old)) {
			t.Fatalf("seed workflow has no %q", old)
		}
		return with(seedWorkflowFile, bytes.Replace(wf, []byte(old), []byte(new), 1))
	}
	algSub := func(old, new string) map[string][]byte {
		if !bytes.Contains(alg, []byte(old)) {
			t.Fatalf("seed algorithm has no %q", old)
		}
		return with(seedAlgorithmFile, bytes.Replace(alg, []byte(old), []byte(new), 1))
	}
	renamed := with("workflows/other-name.json", wf)
	delete(renamed, seedWorkflowFile)

	tests := []struct {
		name  string
		files map[string][]byte
		same  bool
	}{
		{"identical", base, true},
		{"workflow minified with sorted keys", with(seedWorkflowFile, reencode(t, wf)), true},
		{"workflow keys reordered", wfSub(`"input_s3_name": "container-clouds-input",
    "output_s3_name": "container-clouds-output",`, `"output_s3_name": "container-clouds-output",
"input_s3_name":"container-clouds-input",`), true},
		{"algorithm minified with sorted keys", with(seedAlgorithmFile, reencode(t, alg)), true},
		{"different file name", renamed, true},
		{"retain_buckets true written out", wfSub(`"key_pair"`, `"retain_buckets": true, "key_pair"`), true},
		{"port as number", wfSub(`"port": []`, `"port": [9090]`), false},
		{"port as number and as object", wfSub(`"port": []`, `"port": [{"port": 9090}]`), false},
		{"unused algorithm changed", with("algorithms/unused.json", bytes.Replace(unused, []byte(`"CPU": 1`), []byte(`"CPU": 2`), 1)), true},
		{"escaped string", wfSub(`"wyx-cci"`, `"wyx\u002dcci"`), true},

		{"algorithm memory changed", algSub(`"suggested": 128`, `"suggested": 256`), false},
		{"algorithm image changed", algSub(`wangyx2005/change123`, `wangyx2005/change124`), false},
		{"algorithm ephemeral storage set", algSub(`"CPU": 1`, `"CPU": 1, "ephemeral_storage_gib": 30`), false},
		{"algorithm instance_type changed", algSub(`"instance_type": ""`, `"instance_type": "t3.micro"`), false},
		{"algorithm variable now optional", algSub(`"required": true`, `"required": false`), false},
		{"region changed", wfSub(`"us-east-1"`, `"us-west-2"`), false},
		{"variable value changed", wfSub(`blah blah blah`, `blah`), false},
		{"key_pair changed", wfSub(`"wyx-cci"`, `"other"`), false},
		{"retain_buckets false", wfSub(`"key_pair"`, `"retain_buckets": false, "key_pair"`), false},
		{"suspend", wfSub(`"key_pair"`, `"suspend": true, "key_pair"`), false},
		{"max_tasks", wfSub(`"key_pair"`, `"max_tasks": 3, "key_pair"`), false},
		{"kms_key_arns empty list written out", wfSub(`"key_pair"`, `"kms_key_arns": [], "key_pair"`), true},
		{"kms_key_arns", wfSub(`"key_pair"`, `"kms_key_arns": ["arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"], "key_pair"`), false},
	}
	want := specHash(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := specHash(t, tt.files)
			if (got == want) != tt.same {
				t.Errorf("hash %s, base %s: same = %v, want %v", got, want, got == want, tt.same)
			}
		})
	}

	// The two spellings of one port hash the same.
	if a, b := specHash(t, wfSub(`"port": []`, `"port": [9090]`)), specHash(t, wfSub(`"port": []`, `"port": [{"port": 9090, "protocol": "tcp"}]`)); a != b {
		t.Errorf("[9090] and [{port: 9090, protocol: tcp}] hash differently: %s, %s", a, b)
	}
}

// TestSpecHashOfExistingWorkflowsIsKept: a field cloudpipe adds is left out
// of the hash while unset, so adding it to the format redeploys no workflow
// deployed before (the hash below is the seed's before kms_key_arns).
func TestSpecHashOfExistingWorkflowsIsKept(t *testing.T) {
	wf, alg := fixedSeed(t)
	const before = "d7d4f476e8f305a8463638f72f04a9632728bb2a63df15d7db8b19e4b76693fd"
	if got := specHash(t, map[string][]byte{seedWorkflowFile: wf, seedAlgorithmFile: alg}); got != before {
		t.Errorf("the seed workflow's hash is %s, was %s: every deployed workflow would be updated once", got, before)
	}
}

// specHash loads files, which must hold one valid workflow, and returns its
// hash.
func specHash(t *testing.T, files map[string][]byte) string {
	t.Helper()
	cfg, ps := workflow.Load(repo(files))
	if len(ps) > 0 || len(cfg.Workflows) != 1 {
		t.Fatalf("want one valid workflow, got %d and problems:\n%v", len(cfg.Workflows), ps)
	}
	return cfg.Workflows[0].SpecHash
}

// reencode rewrites a JSON document compactly with keys sorted.
func reencode(t *testing.T, data []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
