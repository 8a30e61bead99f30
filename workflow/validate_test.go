package workflow_test

import (
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

const (
	arn    = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-password-AbCdEf"
	kmsKey = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
)

// TestWorkflowRules checks each workflow rule with valid and invalid values.
// The workflow is loaded next to the seed algorithm, so the rules that need
// the algorithm (variables, ports) are covered too. want holds one
// "path: message part" per expected problem, in file order.
func TestWorkflowRules(t *testing.T) {
	set := func(k string, v any) func(map[string]any) {
		return func(w map[string]any) { w[k] = v }
	}
	del := func(k string) func(map[string]any) {
		return func(w map[string]any) { delete(w, k) }
	}
	setStep := func(k string, v any) func(map[string]any) {
		return func(w map[string]any) { step0(w)[k] = v }
	}
	vars := func(kv ...string) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		change func(map[string]any)
		want   []string
	}{
		{"valid", func(map[string]any) {}, nil},

		// process.type and the number of algorithms.
		{"single_run with one", set("process", map[string]any{"type": "single_run", "algorithms": []any{map[string]any{"name": "change123-s3", "variables": vars("TEST_ENV", "x")}}}), nil},
		{"sequence_run with two", set("process", map[string]any{"type": "sequence_run", "algorithms": []any{
			map[string]any{"name": "change123-s3", "variables": vars("TEST_ENV", "x")},
			map[string]any{"name": "change123-s3", "variables": vars("TEST_ENV", "y")}}}), nil},
		{"sequence_run with one", set("process", map[string]any{"type": "sequence_run", "algorithms": []any{map[string]any{"name": "change123-s3", "variables": vars("TEST_ENV", "x")}}}),
			[]string{"process.algorithms: a sequence_run chains two or more algorithms, this lists 1"}},
		{"single_run with two", set("process", map[string]any{"type": "single_run", "algorithms": []any{
			map[string]any{"name": "change123-s3", "variables": vars("TEST_ENV", "x")},
			map[string]any{"name": "change123-s3", "variables": vars("TEST_ENV", "y")}}}),
			[]string{"process.algorithms: a single_run runs exactly one algorithm, this lists 2"}},
		{"single_run with none", set("process", map[string]any{"type": "single_run", "algorithms": []any{}}),
			[]string{"process.algorithms: a single_run runs exactly one algorithm, this lists 0"}},
		{"unknown type", set("process", map[string]any{"type": "batch", "algorithms": []any{map[string]any{"name": "change123-s3", "variables": vars("TEST_ENV", "x")}}}),
			[]string{`process.type: process type "batch" is not known: use "single_run"`}},

		// Buckets.
		{"bucket with dots and digits", set("input_s3_name", "data.2024.in-1"), nil},
		{"bucket 3 chars", set("input_s3_name", "abc"), nil},
		{"bucket 63 chars", set("input_s3_name", strings.Repeat("a", 63)), nil},
		{"bucket too short", set("input_s3_name", "ab"), []string{`input_s3_name: bucket name "ab" must be 3 to 63 characters long`}},
		{"bucket too long", set("input_s3_name", strings.Repeat("a", 64)), []string{`input_s3_name: bucket name "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"... must be 3 to 63 characters long`}},
		{"bucket empty", set("output_s3_name", ""), []string{`output_s3_name: bucket name "" must be 3 to 63 characters long`}},
		{"bucket uppercase", set("input_s3_name", "MyBucket"), []string{`input_s3_name: bucket name "MyBucket" must be lowercase: use "mybucket"`}},
		{"bucket underscore", set("input_s3_name", "my_bucket"), []string{`bucket name "my_bucket" may hold only lowercase letters, digits, dots and hyphens`}},
		{"bucket leading hyphen", set("output_s3_name", "-out"), []string{`output_s3_name: bucket name "-out" must start and end with a letter or digit`}},
		{"bucket trailing dot", set("output_s3_name", "out."), []string{`must start and end with a letter or digit`}},
		{"bucket double dot", set("input_s3_name", "a..b"), []string{`must not contain two dots in a row`}},
		{"bucket IP-like", set("input_s3_name", "10.0.0.1"), []string{`must not look like an IP address`}},
		{"bucket almost IP-like", set("input_s3_name", "10.0.0.1.x"), nil},
		{"bucket xn-- prefix", set("input_s3_name", "xn--abc"), []string{`must not start with "xn--"`}},
		{"bucket sthree- prefix", set("input_s3_name", "sthree-abc"), []string{`must not start with "sthree-"`}},
		{"bucket -s3alias suffix", set("input_s3_name", "abc-s3alias"), []string{`must not end with "-s3alias"`}},
		{"bucket --ol-s3 suffix", set("input_s3_name", "abc--ol-s3"), []string{`must not end with "--ol-s3"`}},
		{"input equals output", set("output_s3_name", "container-clouds-input"), []string{"output_s3_name: is the same bucket as input_s3_name: a result written to the input bucket would trigger the pipeline again"}},

		// account_id.
		{"account id absent", del("account_id"), nil},
		{"account id placeholder", set("account_id", "your-aws-account-id"), []string{`account_id: account_id "your-aws-account-id" is the sample's placeholder: put your real 12-digit AWS account id, or drop the field`}},
		{"account id short", set("account_id", "12345678901"), []string{`account_id: account_id "12345678901" must be a 12-digit AWS account id`}},
		{"account id with dashes", set("account_id", "1234-5678-9012"), []string{`account_id: account_id "1234-5678-9012" must be a 12-digit`}},
		{"account id as number", set("account_id", 123456789012), []string{`account_id: must be a string, not a number; write the 12-digit id in quotes`}},

		// region.
		{"region eu", set("region", "eu-west-1"), nil},
		{"region gov", set("region", "us-gov-west-1"), nil},
		{"region china", set("region", "cn-north-1"), nil},
		{"region recent", set("region", "ap-southeast-7"), nil},
		{"region missing", del("region"), []string{`region: required field is missing: add "region": "us-east-1"`}},
		{"region empty", set("region", ""), []string{`region: region is empty`}},
		{"region unknown", set("region", "us-east-7"), []string{`region: "us-east-7" is not an AWS region: use a region code such as "us-east-1"`}},
		{"region misspelt", set("region", "US-EAST-1"), []string{`region: "US-EAST-1" is not an AWS region: did you mean "us-east-1"?`}},
		{"region availability zone", set("region", "us-east-1a"), []string{`"us-east-1a" is not an AWS region`}},

		// max_tasks, key_pair and the other optional fields.
		{"max_tasks zero", set("max_tasks", 0), nil},
		{"max_tasks cap", set("max_tasks", 1000), nil},
		{"max_tasks negative", set("max_tasks", -1), []string{"max_tasks: must be between 0 (the default limit) and 1000, not -1"}},
		{"max_tasks too high", set("max_tasks", 1001), []string{"max_tasks: must be between 0 (the default limit) and 1000, not 1001"}},
		{"key_pair accepted", set("key_pair", "anything at all"), nil},
		{"key_pair absent", del("key_pair"), nil},
		{"retain_buckets false", set("retain_buckets", false), nil},
		{"retain_buckets string", set("retain_buckets", "no"), []string{"retain_buckets: must be true or false, not a string"}},
		{"suspend", set("suspend", true), nil},

		// Algorithm references.
		{"unknown algorithm", setStep("name", "change123"), []string{`process.algorithms[0].name: unknown algorithm "change123": expected the file algorithms/change123.json; the algorithms are: change123-s3`}},
		{"misspelt algorithm", setStep("name", "change123-s4"), []string{`process.algorithms[0].name: unknown algorithm "change123-s4" (did you mean "change123-s3"?): expected the file algorithms/change123-s4.json`}},
		{"empty algorithm name", setStep("name", ""), []string{`process.algorithms[0].name: algorithm name is empty`}},
		{"required variable missing", setStep("variables", vars()), []string{"process.algorithms[0].variables: TEST_ENV is required by algorithm change123-s3: add it under variables"}},
		{"variables absent", func(w map[string]any) { delete(step0(w), "variables") }, []string{"process.algorithms[0].variables: TEST_ENV is required by algorithm change123-s3"}},
		{"required variable from secrets", func(w map[string]any) {
			delete(step0(w), "variables")
			w["secrets"] = vars("TEST_ENV", arn)
		}, nil},
		{"undeclared variable", setStep("variables", vars("TEST_ENV", "x", "TEST_EVN", "y")), []string{"process.algorithms[0].variables.TEST_EVN: TEST_EVN is not declared by algorithm change123-s3 (did you mean TEST_ENV?); declared: TEST_ENV"}},
		{"invalid variable name", setStep("variables", vars("TEST_ENV", "x", "MY-VAR", "y")), []string{
			`process.algorithms[0].variables.MY-VAR: "MY-VAR" is not a valid environment variable name`,
			`process.algorithms[0].variables.MY-VAR: "MY-VAR" is not declared by algorithm change123-s3`}},

		// Ports.
		{"port number listed by algorithm", setStep("port", []any{9090}), nil},
		{"port object listed by algorithm", setStep("port", []any{map[string]any{"port": 9090, "protocol": "tcp"}}), nil},
		{"port object without protocol", setStep("port", []any{map[string]any{"port": 9090}}), nil},
		{"port not listed by algorithm", setStep("port", []any{8080}), []string{"process.algorithms[0].port[0]: port 8080/tcp is not a port of algorithm change123-s3; its ports: 9090/tcp"}},
		{"port protocol differs", setStep("port", []any{map[string]any{"port": 9090, "protocol": "udp"}}), []string{"port[0]: port 9090/udp is not a port of algorithm change123-s3"}},
		{"port out of range", setStep("port", []any{70000}), []string{"process.algorithms[0].port[0]: port 70000 is out of range: use 1 to 65535"}},
		{"port bad protocol", setStep("port", []any{map[string]any{"port": 9090, "protocol": "http"}}), []string{`process.algorithms[0].port[0].protocol: protocol "http" is not supported: use "tcp" or "udp"`}},
		{"port as string", setStep("port", []any{"9090"}), []string{`process.algorithms[0].port[0]: must be a port number or {"port": 9090, "protocol": "tcp"}, not a string`}},
		{"port unknown field", setStep("port", []any{map[string]any{"port": 9090, "proto": "tcp"}}), []string{`process.algorithms[0].port[0].proto: unknown field "proto"`}},
		{"port listed twice", setStep("port", []any{9090, 9090}), []string{"process.algorithms[0].port[1]: port 9090/tcp is listed twice"}},

		// Credentials and secrets.
		{"credential literal", func(w map[string]any) { step0(w)["variables"] = vars("TEST_ENV", "x", "AWS_SECRET_ACCESS_KEY", "abc") }, []string{
			"variables.AWS_SECRET_ACCESS_KEY: AWS_SECRET_ACCESS_KEY is not declared by algorithm change123-s3",
			`variables.AWS_SECRET_ACCESS_KEY: AWS_SECRET_ACCESS_KEY looks like a credential: do not put its value in the repository; store it in AWS Secrets Manager and map it under "secrets"`}},
		{"credential literal lower case", func(w map[string]any) { step0(w)["variables"] = vars("TEST_ENV", "x", "db_password", "abc") }, []string{
			"db_password is not declared", "db_password looks like a credential"}},
		{"credential literal token", func(w map[string]any) { step0(w)["variables"] = vars("TEST_ENV", "x", "GITHUB_TOKEN", "abc") }, []string{
			"GITHUB_TOKEN is not declared", "GITHUB_TOKEN looks like a credential"}},
		{"credential literal api key", func(w map[string]any) { step0(w)["variables"] = vars("TEST_ENV", "x", "MY_API_KEY", "abc") }, []string{
			"MY_API_KEY is not declared", "MY_API_KEY looks like a credential"}},
		{"secret ARN", set("secrets", vars("TEST_ENV", arn)), []string{"process.algorithms[0].variables.TEST_ENV: TEST_ENV is also set under secrets: give it in one place"}},
		{"secret ARN with json key", func(w map[string]any) {
			delete(step0(w), "variables")
			w["secrets"] = vars("TEST_ENV", arn+":password::")
		}, nil},
		{"secret ARN with version", func(w map[string]any) {
			delete(step0(w), "variables")
			w["secrets"] = vars("TEST_ENV", arn+":password:AWSCURRENT:")
		}, nil},
		{"secret not an ARN", set("secrets", vars("TEST_ENV", "hunter2")), []string{
			"TEST_ENV is also set under secrets",
			"secrets.TEST_ENV: the value is not a Secrets Manager ARN (not shown here, in case it is a secret itself)"}},
		{"secret ARN of another service", set("secrets", vars("X", "arn:aws:ssm:us-east-1:123456789012:parameter:x:y")), []string{
			"secrets.X: X is not declared by any algorithm of this workflow (change123-s3); declared: TEST_ENV",
			`secrets.X: the value is an ARN of service "ssm", not secretsmanager`}},
		{"secret ARN bad account", func(w map[string]any) {
			delete(step0(w), "variables")
			w["secrets"] = vars("TEST_ENV", "arn:aws:secretsmanager:us-east-1:1234:secret:x")
		}, []string{`secrets.TEST_ENV: the value has account "1234"; an account id is 12 digits`}},
		{"secret ARN bad region", func(w map[string]any) {
			delete(step0(w), "variables")
			w["secrets"] = vars("TEST_ENV", "arn:aws:secretsmanager:moon-1:123456789012:secret:x")
		}, []string{`secrets.TEST_ENV: the value names region "moon-1", which is not an AWS region`}},
		{"secret ARN two key fields", func(w map[string]any) {
			delete(step0(w), "variables")
			w["secrets"] = vars("TEST_ENV", arn+":password")
		}, []string{`secrets.TEST_ENV: the value has "password" after the secret name; to pick one key of a JSON secret end it in :json-key:: (three fields)`}},
		{"secret ARN other partition", func(w map[string]any) {
			delete(step0(w), "variables")
			w["secrets"] = vars("TEST_ENV", "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:x")
		}, []string{"secrets.TEST_ENV: the secret is in partition aws-us-gov but region us-east-1 is in aws"}},
		{"secret ARN in china", func(w map[string]any) {
			delete(step0(w), "variables")
			w["region"] = "cn-north-1"
			w["secrets"] = vars("TEST_ENV", "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:x")
		}, nil},
		{"secret bad env name", set("secrets", vars("1X", arn)), []string{`secrets.1X: "1X" is not a valid environment variable name`}},
		{"task credentials", set("task_credentials_secret", arn), nil},
		{"task credentials not an ARN", set("task_credentials_secret", "AKIAXXXXXXXX"), []string{"task_credentials_secret: the value is not a Secrets Manager ARN (not shown here, in case it is a secret itself): use the ARN of a secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"}},
		{"task credentials with json key", set("task_credentials_secret", arn+":AWS_ACCESS_KEY_ID::"), []string{"task_credentials_secret: name the whole secret, without a :json-key:: suffix"}},
		{"task credentials and key secret", func(w map[string]any) {
			w["task_credentials_secret"] = arn
			w["secrets"] = vars("AWS_ACCESS_KEY_ID", arn)
		}, []string{
			"secrets.AWS_ACCESS_KEY_ID: AWS_ACCESS_KEY_ID is already provided by task_credentials_secret",
			"secrets.AWS_ACCESS_KEY_ID: AWS_ACCESS_KEY_ID is not declared by any algorithm"}},

		// kms_key_arns.
		{"kms key", set("kms_key_arns", []any{kmsKey}), nil},
		{"kms keys empty list", set("kms_key_arns", []any{}), nil},
		{"kms multi-region key", set("kms_key_arns", []any{"arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"}), nil},
		{"kms key in china", func(w map[string]any) {
			w["region"] = "cn-north-1"
			w["kms_key_arns"] = []any{"arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}
		}, nil},
		{"kms alias ARN", set("kms_key_arns", []any{"arn:aws:kms:us-east-1:123456789012:alias/lab-data"}), []string{
			"kms_key_arns[0]: the value is an alias ARN, and IAM matches kms:Decrypt and kms:GenerateDataKey against the key's own ARN, never an alias: " +
				"a policy naming the alias would grant nothing; use the key ARN, which aws kms describe-key --key-id alias/NAME shows"}},
		{"kms alias name", set("kms_key_arns", []any{"alias/lab-data"}), []string{"kms_key_arns[0]: the value is not a KMS key ARN: use a key ARN like arn:aws:kms:"}},
		{"kms key id alone", set("kms_key_arns", []any{"1234abcd-12ab-34cd-56ef-1234567890ab"}), []string{"kms_key_arns[0]: the value is not a KMS key ARN"}},
		{"kms ARN of another service", set("kms_key_arns", []any{"arn:aws:s3:::lab-data"}), []string{"kms_key_arns[0]: the value is not a KMS key ARN"}},
		{"kms key bad id", set("kms_key_arns", []any{"arn:aws:kms:us-east-1:123456789012:key/my-key"}), []string{`has key id "my-key"; a key id is a UUID`}},
		{"kms key upper-case id", set("kms_key_arns", []any{"arn:aws:kms:us-east-1:123456789012:key/1234ABCD-12ab-34cd-56ef-1234567890ab"}), []string{`; a key id is a UUID`}},
		{"kms key bad account", set("kms_key_arns", []any{"arn:aws:kms:us-east-1:1234:key/1234abcd-12ab-34cd-56ef-1234567890ab"}), []string{`has account "1234"; an account id is 12 digits`}},
		{"kms key bad partition", set("kms_key_arns", []any{"arn:aws-cn:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}), []string{`names region us-east-1, which is not in partition aws-cn`}},
		{"kms key of another region", set("kms_key_arns", []any{"arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}), []string{
			"kms_key_arns[0]: the key is in region eu-west-1 but the workflow runs in us-east-1: a KMS key serves its own region only"}},
		{"kms key twice", set("kms_key_arns", []any{kmsKey, kmsKey}), []string{"kms_key_arns[1]: the key is listed twice: remove one"}},
		{"kms keys not a list", set("kms_key_arns", kmsKey), []string{"kms_key_arns: must be a list [...], not a string"}},
		{"kms key not a string", set("kms_key_arns", []any{42}), []string{"kms_key_arns[0]: must be a string, not a number"}},
	}
	_, alg := readSeed(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := baseWorkflow()
			tt.change(w)
			data := mustJSON(t, w)
			cfg, got := workflow.Load(repo(map[string][]byte{"workflows/w.json": data, seedAlgorithmFile: alg}))
			checkProblems(t, data, got, tt.want)
			if valid := len(cfg.Workflows) == 1; valid != (len(tt.want) == 0) {
				t.Errorf("workflow in Config.Workflows: %v, want %v", valid, len(tt.want) == 0)
			}
			// ParseWorkflow agrees with Load on single-file problems.
			_, own := workflow.ParseWorkflow("workflows/w.json", data)
			for _, p := range own {
				if !containsProblem(got, p) {
					t.Errorf("ParseWorkflow reports %q, Load does not", p)
				}
			}
		})
	}
}

func containsProblem(ps workflow.Problems, p workflow.Problem) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// TestWorkflowName checks the rule on the file's base name.
func TestWorkflowName(t *testing.T) {
	tests := []struct {
		file string
		want string // "" = valid
	}{
		{"workflows/a.json", ""},
		{"workflows/single-run.json", ""},
		{"workflows/x2-y3.json", ""},
		{"workflows/" + strings.Repeat("a", 32) + ".json", ""},
		{"workflows/" + strings.Repeat("a", 33) + ".json", "is longer than 32 characters: rename the file, e.g. to workflows/" + strings.Repeat("a", 32) + ".json"},
		{"workflows/Foo.json", `workflow name "Foo" (the file name without .json) must start with a lowercase letter: rename the file, e.g. to workflows/foo.json`},
		{"workflows/my_flow.json", `workflow name "my_flow" (the file name without .json) may hold only lowercase letters, digits and hyphens: rename the file, e.g. to workflows/my-flow.json`},
		{"workflows/9lives.json", `must start with a lowercase letter: rename the file, e.g. to workflows/lives.json`},
		{"workflows/-x.json", `must start with a lowercase letter`},
		{"workflows/.json", `workflow name "" (the file name without .json) is empty: rename the file`},
		{"workflows/a b.json", `may hold only lowercase letters, digits and hyphens: rename the file, e.g. to workflows/a-b.json`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			wf, _ := fixedSeed(t)
			w, ps := workflow.ParseWorkflow(tt.file, wf)
			if tt.want == "" {
				if len(ps) > 0 || w == nil || w.Name != strings.TrimSuffix(strings.TrimPrefix(tt.file, "workflows/"), ".json") {
					t.Errorf("got %v, %v; want a workflow named after the file", w, ps)
				}
				return
			}
			if len(ps) != 1 || !strings.Contains(ps[0].Msg, tt.want) || ps[0].Line != 0 || ps[0].Path != "" || ps[0].File != tt.file {
				t.Errorf("got %v; want one whole-file problem containing %q", ps, tt.want)
			}
		})
	}
}
