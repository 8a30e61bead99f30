package workflow_test

import (
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestAlgorithmRules checks each algorithm rule with valid and invalid
// values; want holds one "path: message part" per expected problem, in file
// order.
func TestAlgorithmRules(t *testing.T) {
	set := func(k string, v any) func(map[string]any) {
		return func(a map[string]any) { a[k] = v }
	}
	del := func(k string) func(map[string]any) {
		return func(a map[string]any) { delete(a, k) }
	}
	tests := []struct {
		name   string
		change func(map[string]any)
		want   []string
	}{
		{"seed", func(map[string]any) {}, nil},
		{"optional fields absent", func(a map[string]any) {
			for _, k := range []string{"system", "executable_path", "instance_type", "user_specified_environment_variables", "port"} {
				delete(a, k)
			}
		}, nil},
		{"instance_type accepted", set("instance_type", "t2.micro"), nil},
		{"fractional CPU", set("CPU", 0.25), nil},

		// Required fields.
		{"container_name missing", del("container_name"), []string{`container_name: required field is missing: add "container_name": "registry/image:tag"`}},
		{"container_name empty", set("container_name", ""), []string{`container_name: container_name is empty: set it, e.g. "registry/image:tag"`}},
		{"container_name with space", set("container_name", "my image"), []string{`container_name: container image "my image" contains white space`}},
		{"name missing", del("name"), []string{`name: required field is missing`}},
		{"run_command missing", del("run_command"), []string{`run_command: required field is missing: add "run_command": "python /app/run.py $input $output"`}},
		{"input_file_path missing", del("input_file_path"), []string{`input_file_path: required field is missing`}},
		{"input_file_path blank", set("input_file_path", " "), []string{`input_file_path: input_file_path is empty`}},
		{"output_file_path missing", del("output_file_path"), []string{`output_file_path: required field is missing`}},
		{"memory missing", del("memory"), []string{`memory: required field is missing: add "memory": {"minimal": 512, "suggested": 1024}`}},
		{"CPU missing", del("CPU"), nil}, // a note: TestAlgorithmNotes

		// Name.
		{"name does not match file", set("name", "other"), []string{`name: name "other" does not match the file name: set it to "change123-s3", or rename the file to algorithms/other.json`}},
		{"name empty", set("name", ""), []string{`name: name is empty: set it to "change123-s3"`}},

		// run_command.
		{"run_command input only", set("run_command", "/bin/process $input"), nil},
		{"run_command input last", set("run_command", "python run.py --out $output --in $input"), nil},
		{"run_command without input", set("run_command", "sh /x.sh $output"), []string{"run_command: run_command does not use $input: add $input as the argument"}},
		{"run_command input in a word", set("run_command", "sh /x.sh --in=$input"), []string{`run_command: argument "--in=$input": $input and $output are replaced only when they are whole arguments`}},
		{"run_command braces", set("run_command", "sh /x.sh ${input}"), []string{"run_command does not use $input"}},
		{"run_command input prefix", set("run_command", "sh /x.sh $inputs"), []string{`argument "$inputs": $input and $output are replaced only when they are whole arguments`}},
		{"run_command empty", set("run_command", "  "), []string{"run_command: run_command is empty"}},

		// Ports.
		{"udp port", set("port", []any{map[string]any{"port": 53, "protocol": "udp"}}), nil},
		{"port 65535", set("port", []any{map[string]any{"port": 65535, "protocol": "tcp"}}), nil},
		{"port zero", set("port", []any{map[string]any{"port": 0, "protocol": "tcp"}}), []string{"port[0].port: port 0 is out of range: use 1 to 65535"}},
		{"port too high", set("port", []any{map[string]any{"port": 65536, "protocol": "tcp"}}), []string{"port[0].port: port 65536 is out of range"}},
		{"port bad protocol", set("port", []any{map[string]any{"port": 80, "protocol": "TCP"}}), []string{`port[0].protocol: protocol "TCP" is not supported: use "tcp" or "udp"`}},
		{"port without protocol", set("port", []any{map[string]any{"port": 80}}), []string{`port[0].protocol: required field is missing: add "protocol": "tcp"`}},
		{"port as number", set("port", []any{80}), []string{`port[0]: must be an object {...}, not a number`}},
		{"port twice", set("port", []any{map[string]any{"port": 80, "protocol": "tcp"}, map[string]any{"port": 80, "protocol": "tcp"}}), []string{"port[1]: port 80/tcp is listed twice"}},

		// Memory and CPU.
		{"memory equal", set("memory", map[string]any{"minimal": 128, "suggested": 128}), nil},
		{"memory minimal zero", set("memory", map[string]any{"minimal": 0, "suggested": 128}), []string{"memory.minimal: memory.minimal must be a positive number of MiB, not 0"}},
		{"memory suggested negative", set("memory", map[string]any{"minimal": 64, "suggested": -5}), []string{"memory.suggested: memory.suggested must be a positive number of MiB, not -5"}},
		{"memory minimal above suggested", set("memory", map[string]any{"minimal": 256, "suggested": 128}), []string{"memory.suggested: memory.suggested (128 MiB) is below memory.minimal (256 MiB)"}},
		{"memory fractional", set("memory", map[string]any{"minimal": 0.5, "suggested": 128}), []string{"memory.minimal: must be a whole number, not 0.5"}},
		{"memory unknown field", set("memory", map[string]any{"min": 1, "minimal": 64, "suggested": 128}), []string{`memory.min: unknown field "min"`}},
		{"CPU zero", set("CPU", 0), []string{"CPU: CPU must be a positive number of vCPUs"}},
		{"CPU negative", set("CPU", -1), []string{"CPU: CPU must be a positive number of vCPUs"}},
		{"CPU string", set("CPU", "1"), []string{"CPU: must be a number, not a string"}},
		{"CPU empty object", set("CPU", map[string]any{}), nil}, // a note: TestAlgorithmNotes
		{"CPU object with fields", set("CPU", map[string]any{"count": 1}), []string{"CPU: must be a number, or {} to leave it unset, not an object with fields"}},
		{"CPU null", set("CPU", nil), []string{"CPU: must be a number, not null"}},
		{"cpu lower case", func(a map[string]any) { a["cpu"] = a["CPU"]; delete(a, "CPU") }, []string{`cpu: unknown field "cpu": did you mean "CPU"?`}},

		// Ephemeral storage: Fargate's 21 to 200 GiB, or absent (20 GiB).
		{"ephemeral storage 21", set("ephemeral_storage_gib", 21), nil},
		{"ephemeral storage 200", set("ephemeral_storage_gib", 200), nil},
		{"ephemeral storage 20", set("ephemeral_storage_gib", 20), []string{"ephemeral_storage_gib: ephemeral_storage_gib must be between 21 and 200 GiB (Fargate's range), not 20: leave it out"}},
		{"ephemeral storage 201", set("ephemeral_storage_gib", 201), []string{"ephemeral_storage_gib: ephemeral_storage_gib must be between 21 and 200 GiB (Fargate's range), not 201"}},
		{"ephemeral storage 0", set("ephemeral_storage_gib", 0), []string{"ephemeral_storage_gib: ephemeral_storage_gib must be between 21 and 200 GiB (Fargate's range), not 0"}},
		{"ephemeral storage negative", set("ephemeral_storage_gib", -30), []string{"not -30"}},
		{"ephemeral storage fractional", set("ephemeral_storage_gib", 21.5), []string{"ephemeral_storage_gib: must be a whole number, not 21.5"}},
		{"ephemeral storage string", set("ephemeral_storage_gib", "30"), []string{"ephemeral_storage_gib: must be a whole number"}},

		// Environment variable declarations.
		{"env var optional", set("user_specified_environment_variables", []any{map[string]any{"name": "A"}, map[string]any{"name": "B", "required": false}}), nil},
		{"env var bad name", set("user_specified_environment_variables", []any{map[string]any{"name": "MY-VAR", "required": true}}), []string{`user_specified_environment_variables[0].name: "MY-VAR" is not a valid environment variable name`}},
		{"env var starts with digit", set("user_specified_environment_variables", []any{map[string]any{"name": "1A"}}), []string{`"1A" is not a valid environment variable name`}},
		{"env var empty", set("user_specified_environment_variables", []any{map[string]any{"name": ""}}), []string{`"" is not a valid environment variable name`}},
		{"env var twice", set("user_specified_environment_variables", []any{map[string]any{"name": "A"}, map[string]any{"name": "A", "required": true}}), []string{"user_specified_environment_variables[1].name: A is declared twice: remove one"}},
		{"env var without name", set("user_specified_environment_variables", []any{map[string]any{"required": true}}), []string{`user_specified_environment_variables[0].name: required field is missing`}},
		{"env var required as string", set("user_specified_environment_variables", []any{map[string]any{"name": "A", "required": "yes"}}), []string{`user_specified_environment_variables[0].required: must be true or false, not a string`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := baseAlgorithm(t)
			tt.change(a)
			data := mustJSON(t, a)
			alg, got := workflow.ParseAlgorithm(seedAlgorithmFile, data)
			checkProblems(t, data, got, tt.want)
			if (alg != nil) != (len(tt.want) == 0) {
				t.Errorf("ParseAlgorithm returned %v with %d problems", alg, len(got))
			}
			cfg, loaded := workflow.Load(repo(map[string][]byte{seedAlgorithmFile: data}))
			if loaded.Error() != got.Error() {
				t.Errorf("Load reports\n%v\nParseAlgorithm reports\n%v", loaded, got)
			}
			if _, ok := cfg.Algorithms["change123-s3"]; ok != (len(tt.want) == 0) {
				t.Errorf("algorithm in Config.Algorithms: %v, want %v", ok, len(tt.want) == 0)
			}
		})
	}
}

// TestAlgorithmNameChars: the name must also suit an ECS container name.
func TestAlgorithmNameChars(t *testing.T) {
	a := baseAlgorithm(t)
	a["name"] = "my.algo"
	_, ps := workflow.ParseAlgorithm("algorithms/my.algo.json", mustJSON(t, a))
	if len(ps) != 1 || !strings.Contains(ps[0].Msg, "may hold only letters, digits, hyphens and underscores") {
		t.Errorf("got %v", ps)
	}
}

// TestAlgorithmNameNotTheInitContainers: the algorithm's container and
// cloudpipe's init container share a task definition, where ECS refuses two
// containers of one name.
func TestAlgorithmNameNotTheInitContainers(t *testing.T) {
	a := baseAlgorithm(t)
	a["name"] = workflow.InitContainerName
	_, ps := workflow.ParseAlgorithm("algorithms/"+workflow.InitContainerName+".json", mustJSON(t, a))
	if len(ps) != 1 || !strings.Contains(ps[0].Msg, "cloudpipe's own init container") || !strings.Contains(ps[0].Msg, "choose another") {
		t.Errorf("got %v, want the name refused as the init container's", ps)
	}
}
