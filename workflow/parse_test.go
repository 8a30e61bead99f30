package workflow_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// minimal is the smallest valid workflow, on one line so columns are easy to
// count in expectations.
const minimal = `{"input_s3_name": "in-bucket", "output_s3_name": "out-bucket", "region": "us-east-1", "process": {"type": "single_run", "algorithms": [{"name": "a"}]}}`

// TestParseWorkflowStrict covers the file-level rules: syntax, one object,
// duplicate keys, unknown fields, types, required fields, limits. Each want
// is a whole problem line.
func TestParseWorkflowStrict(t *testing.T) {
	const f = "workflows/w.json"
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"valid", minimal, nil},
		{"valid with surrounding white space", "\n\t " + minimal + "\r\n\n", nil},
		{"valid with every optional field", strings.Replace(minimal, `"region"`, `"key_pair": "k", "account_id": "123456789012", "retain_buckets": false, "max_tasks": 5, "suspend": true, "task_credentials_secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:creds", "secrets": {}, "region"`, 1), nil},
		{"valid escapes", strings.Replace(minimal, `"in-bucket"`, `"in-buck\u0065t"`, 1), nil},
		{"empty", "", []string{f + ": the file is empty: it must hold one JSON object {...}"}},
		{"only white space", " \n ", []string{f + ": the file is empty: it must hold one JSON object {...}"}},
		{"array", "[]", []string{f + ":1:1: the file must hold one JSON object {...}, not a list"}},
		{"number", " 42", []string{f + ":1:2: the file must hold one JSON object {...}, not a number"}},
		{"null", "null", []string{f + ":1:1: the file must hold one JSON object {...}, not null"}},
		{"garbage", "<xml/>", []string{f + `:1:1: invalid character '<': expected a value (strings must be in double quotes)`}},
		{"binary", "\x00\x01", []string{f + ":1:1: invalid byte 0x00: expected a value"}},
		{"trailing object", minimal + "\n{}", []string{f + ":2:1: unexpected data after the end of the top-level object: a file holds exactly one JSON object"}},
		{"trailing junk", minimal + "x", []string{f + ":1:152: unexpected data after the end of the top-level object: a file holds exactly one JSON object"}},
		{"truncated in a string", minimal[:40], []string{f + `:1:32: string not closed: add the closing "`}},
		{"truncated after a key", minimal[:49], []string{f + `:1:50: output_s3_name: unexpected end of file: missing value`}},
		{"unclosed object", `{"region": "us-east-1"`, []string{f + `:1:23: unexpected end of file: missing "}"`}},
		{"missing comma", `{"region": "us-east-1" "max_tasks": 1}`, []string{f + `:1:24: expected "," or "}" here (is a comma missing?)`}},
		{"trailing comma", `{"region": "us-east-1", }`, []string{f + `:1:23: trailing comma before "}": remove it`}},
		{"trailing comma in list", `{"process": {"algorithms": [{"name": "a"},]}}`, []string{f + `:1:42: process.algorithms: trailing comma before "]": remove it`}},
		{"missing colon", `{"region" "us-east-1"}`, []string{f + `:1:11: expected ":" after the field name`}},
		{"single quotes", `{'region': 'x'}`, []string{f + `:1:2: field names must be in double quotes, not single quotes`}},
		{"single-quoted value", `{"region": 'x'}`, []string{f + `:1:12: region: strings must be in double quotes, not single quotes`}},
		{"bad escape", `{"region": "a\qb"}`, []string{f + `:1:14: region: invalid escape \q in string: write a backslash as \\`}},
		{"bad unicode escape", `{"region": "\u12"}`, []string{f + `:1:13: region: invalid escape in string: \u needs four hex digits`}},
		{"raw tab in string", "{\"region\": \"a\tb\"}", []string{f + `:1:14: region: control character U+0009 in a string: write it as an escape such as \n or \t`}},
		{"newline in string", "{\"region\": \"a\nb\"}", []string{f + `:1:12: region: string not closed before the end of the line: add the closing "`}},
		{"bare word", `{"suspend": yes}`, []string{f + `:1:13: suspend: invalid character 'y': expected a value (strings must be in double quotes)`}},
		{"bad literal", `{"suspend": tru}`, []string{f + `:1:13: suspend: invalid value: strings must be in double quotes; the only bare words are true, false and null`}},
		{"leading zero", `{"max_tasks": 01}`, []string{f + `:1:15: max_tasks: invalid number: leading zeros are not allowed in JSON (quote it if it is an id)`}},
		{"bad number", `{"max_tasks": -}`, []string{f + `:1:15: max_tasks: invalid number: a digit must follow the minus sign`}},
		{"bad fraction", `{"max_tasks": 1.}`, []string{f + `:1:15: max_tasks: invalid number: a digit must follow the decimal point`}},
		{"bad exponent", `{"max_tasks": 1e}`, []string{f + `:1:15: max_tasks: invalid number: a digit must follow the exponent`}},
		{"empty value", `{"region": ,}`, []string{f + `:1:12: region: expected a value before "," (an empty entry?)`}},
		{"BOM", "\uFEFF" + minimal, []string{f + ":1:1: the file starts with a byte order mark (BOM): save it as UTF-8 without BOM"}},
		{"deep nesting", `{"x": ` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "}", []string{
			f + `:1:2: x: unknown field "x": remove it; the fields here are input_s3_name, output_s3_name, key_pair, account_id, region, process, secrets, task_credentials_secret, retain_buckets, max_tasks, suspend, kms_key_arns, capacity`,
			f + `:1:38: x: nested more than 32 levels deep: workflow and algorithm files are shallow, is this the right file?`}},
		{"deep nesting in known field", `{"process": {"algorithms": [{"variables": {"A": ` + strings.Repeat(`{"a":`, 40), []string{f + `:1:184: process.algorithms[0].variables.A: nested more than 32 levels deep: workflow and algorithm files are shallow, is this the right file?`}},
		{"nesting at the limit is fine", strings.Replace(minimal, `"region"`, `"x": `+strings.Repeat("[", 31)+strings.Repeat("]", 31)+`, "region"`, 1), []string{f + `:1:64: x: unknown field "x": remove it; the fields here are input_s3_name, output_s3_name, key_pair, account_id, region, process, secrets, task_credentials_secret, retain_buckets, max_tasks, suspend, kms_key_arns, capacity`}},
		{"duplicate key", strings.Replace(minimal, `"region"`, `"region": "eu-west-1", "region"`, 1), []string{f + `:1:87: region: duplicate field "region": remove one of them (only the last one would count)`}},
		{"duplicate key by escape", strings.Replace(minimal, `"region"`, `"region": "eu-west-1", "regio\u006e"`, 1), []string{f + `:1:87: region: duplicate field "region": remove one of them (only the last one would count)`}},
		{"duplicate map key", strings.Replace(minimal, `{"name": "a"}`, `{"name": "a", "variables": {"A": "1", "A": "2"}}`, 1), []string{f + `:1:174: process.algorithms[0].variables.A: duplicate key "A": remove one of them (only the last one would count)`}},
		{"unknown field typo", strings.Replace(minimal, `"region"`, `"regoin"`, 1), []string{
			f + `:1:1: region: required field is missing: add "region": "us-east-1"`,
			f + `:1:64: regoin: unknown field "regoin": did you mean "region"?`}},
		{"field in the wrong case", strings.Replace(minimal, `"region"`, `"Region"`, 1), []string{
			f + `:1:1: region: required field is missing: add "region": "us-east-1"`,
			f + `:1:64: Region: unknown field "Region": did you mean "region"?`}},
		{"unknown nested field", strings.Replace(minimal, `{"name": "a"}`, `{"name": "a", "vars": {}}`, 1), []string{
			f + `:1:150: process.algorithms[0].vars: unknown field "vars": remove it; the fields here are name, port, variables, capacity`}},
		{"wrong type string", strings.Replace(minimal, `"us-east-1"`, `["us-east-1"]`, 1), []string{f + `:1:74: region: must be a string, not a list`}},
		{"wrong type bool", strings.Replace(minimal, `"region"`, `"suspend": "true", "region"`, 1), []string{f + `:1:75: suspend: must be true or false, not a string`}},
		{"wrong type int", strings.Replace(minimal, `"region"`, `"max_tasks": 1.5, "region"`, 1), []string{f + `:1:77: max_tasks: must be a whole number, not 1.5`}},
		{"int out of range", strings.Replace(minimal, `"region"`, `"max_tasks": 4294967296, "region"`, 1), []string{f + `:1:77: max_tasks: number 4294967296 is out of range`}},
		{"number too long", strings.Replace(minimal, `"region"`, `"max_tasks": 1`+strings.Repeat("0", 40)+`, "region"`, 1), []string{f + `:1:77: max_tasks: is a 41-digit number; that is too long for any setting here`}},
		{"wrong type object", strings.Replace(minimal, `[{"name": "a"}]`, `{"name": "a"}`, 1), []string{f + `:1:135: process.algorithms: must be a list [...], not an object`}},
		{"wrong type map value", strings.Replace(minimal, `{"name": "a"}`, `{"name": "a", "variables": {"N": 1}}`, 1), []string{f + `:1:169: process.algorithms[0].variables.N: must be a string, not a number`}},
		{"null optional", strings.Replace(minimal, `"region"`, `"key_pair": null, "region"`, 1), []string{f + `:1:76: key_pair: must be a string, not null; to leave it unset, remove the field`}},
		{"null required", strings.Replace(minimal, `"us-east-1"`, `null`, 1), []string{f + `:1:74: region: must be a string, not null`}},
		{"account id as number", strings.Replace(minimal, `"region"`, `"account_id": 123456789012, "region"`, 1), []string{f + `:1:78: account_id: must be a string, not a number; write the 12-digit id in quotes, e.g. "123456789012"`}},
		{"missing required", `{}`, []string{
			f + `:1:1: input_s3_name: required field is missing: add "input_s3_name": "my-pipeline-input"`,
			f + `:1:1: output_s3_name: required field is missing: add "output_s3_name": "my-pipeline-output"`,
			f + `:1:1: process: required field is missing: add "process": {"type": "single_run", "algorithms": [...]}`,
			f + `:1:1: region: required field is missing: add "region": "us-east-1"`}},
		{"missing nested required", strings.Replace(minimal, `{"name": "a"}`, `{}`, 1), []string{f + `:1:136: process.algorithms[0].name: required field is missing: add "name": "my-algorithm"`}},
		{"string too long", strings.Replace(minimal, `"region"`, `"key_pair": "`+strings.Repeat("k", 4097)+`", "region"`, 1), []string{f + `:1:76: key_pair: is 4097 bytes long; at most 4096 are allowed here`}},
		{"invalid UTF-8 in a string", strings.Replace(minimal, `in-bucket`, "in-\xffbucket", 1), []string{f + `:1:23: input_s3_name: invalid UTF-8 in a string: save the file as UTF-8`}},
		{"UTF-8 in a string", strings.Replace(minimal, `"region"`, `"key_pair": "schlüssel 🔑", "region"`, 1), nil},
		{"escaped string at the limit", strings.Replace(minimal, `"region"`, `"key_pair": "`+strings.Repeat(`\u003c`, 4096)+`", "region"`, 1), nil},
		{"escaped string over the limit", strings.Replace(minimal, `"region"`, `"key_pair": "`+strings.Repeat(`\u00e9`, 2049)+`", "region"`, 1), []string{f + `:1:76: key_pair: is 4098 bytes long; at most 4096 are allowed here`}},
		{"surrogate pair counts 4 bytes", strings.Replace(minimal, `"region"`, `"key_pair": "`+strings.Repeat(`\ud83d\ude00`, 1025)+`", "region"`, 1), []string{f + `:1:76: key_pair: is 4100 bytes long; at most 4096 are allowed here`}},
		{"too many steps", strings.Replace(minimal, `[{"name": "a"}]`, "["+strings.Repeat(`{"name": "a"},`, 20)+`{"name": "a"}]`, 1), []string{f + `:1:135: process.algorithms: has more than 20 algorithms: that is the limit`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, got := workflow.ParseWorkflow(f, []byte(tt.data))
			if (w == nil) != (len(got) > 0) {
				t.Errorf("workflow %v with %d problems: want a workflow exactly when there is no problem", w, len(got))
			}
			var lines []string
			for _, p := range got {
				lines = append(lines, p.String())
			}
			if !reflect.DeepEqual(lines, tt.want) {
				t.Errorf("input: %.200s\ngot:\n%s\nwant:\n%s", tt.data, strings.Join(lines, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestParseSeed: the seed parses into the documented fields, and the step's
// ports may be numbers or objects.
func TestParseSeed(t *testing.T) {
	wfData, algData := fixedSeed(t)
	w, ps := workflow.ParseWorkflow(seedWorkflowFile, wfData)
	if len(ps) > 0 {
		t.Fatalf("fixed seed: %v", ps)
	}
	want := &workflow.Workflow{
		Name: "single-run", File: seedWorkflowFile,
		InputBucket: "container-clouds-input", OutputBucket: "container-clouds-output",
		KeyPair: "wyx-cci", AccountID: "123456789012", Region: "us-east-1",
		Process: workflow.Process{Type: workflow.SingleRun, Algorithms: []workflow.Step{{
			Name: "change123-s3", Port: nil, Variables: map[string]string{"TEST_ENV": "blah blah blah"},
		}}},
	}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("ParseWorkflow(seed) =\n%+v\nwant\n%+v", w, want)
	}
	if !w.RetainsBuckets() {
		t.Error("RetainsBuckets() = false for a workflow without retain_buckets, want true")
	}

	a, ps := workflow.ParseAlgorithm(seedAlgorithmFile, algData)
	if len(ps) > 0 {
		t.Fatalf("seed algorithm: %v", ps)
	}
	wantA := &workflow.Algorithm{
		File: seedAlgorithmFile, ContainerName: "wangyx2005/change123", System: "ubuntu",
		InputFilePath: "/", OutputFilePath: "/", ExecutablePath: "/change123",
		RunCommand: "sh /change123.sh $input $output", Name: "change123-s3",
		Memory: workflow.Memory{Minimal: 50, Suggested: 128}, CPU: 1,
		UserSpecifiedEnvironmentVariables: []workflow.EnvVar{{Name: "TEST_ENV", Required: true}},
		Port:                              []workflow.Port{{Port: 9090, Protocol: "tcp"}},
	}
	if !reflect.DeepEqual(a, wantA) {
		t.Errorf("ParseAlgorithm(seed) =\n%+v\nwant\n%+v", a, wantA)
	}

	ports := bytes.Replace(wfData, []byte(`"port": []`), []byte(`"port": [9090, {"port": 9091}, {"port": 53, "protocol": "udp"}]`), 1)
	w, ps = workflow.ParseWorkflow(seedWorkflowFile, ports)
	if len(ps) > 0 {
		t.Fatalf("ports: %v", ps)
	}
	wantPorts := []workflow.Port{{9090, "tcp"}, {9091, "tcp"}, {53, "udp"}}
	if got := w.Process.Algorithms[0].Port; !reflect.DeepEqual(got, wantPorts) {
		t.Errorf("ports = %v, want %v (protocol defaults to tcp)", got, wantPorts)
	}
}

func TestRetainsBuckets(t *testing.T) {
	yes, no := true, false
	for _, tt := range []struct {
		v    *bool
		want bool
	}{{nil, true}, {&yes, true}, {&no, false}} {
		if got := (&workflow.Workflow{RetainBuckets: tt.v}).RetainsBuckets(); got != tt.want {
			t.Errorf("RetainBuckets %v: RetainsBuckets() = %v, want %v", tt.v, got, tt.want)
		}
	}
}
