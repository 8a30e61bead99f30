package workflow_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestAlgorithmPlacementRules checks instance_type, privileged, CPU and
// memory against each other in an algorithm file on its own (offline). The
// seed algorithm asks 1 vCPU and 128 MiB.
func TestAlgorithmPlacementRules(t *testing.T) {
	mem := func(suggested int) map[string]any { return map[string]any{"minimal": 64, "suggested": suggested} }
	tests := []struct {
		name string
		set  map[string]any
		want []string
	}{
		{"no type", nil, nil},
		{"known type", map[string]any{"instance_type": "m5.large"}, nil},
		{"GPU type", map[string]any{"instance_type": "p3.2xlarge"}, nil},
		{"privileged with a type", map[string]any{"instance_type": "c5.large", "privileged": true}, nil},
		{"not privileged", map[string]any{"privileged": false}, nil},
		{"all of a Fargate-sized type's memory", map[string]any{"instance_type": "t2.micro", "memory": mem(1024)}, nil},
		{"all vCPUs of the type", map[string]any{"instance_type": "m5.xlarge", "CPU": 4}, nil},
		{"CPU units", map[string]any{"instance_type": "m5.xlarge", "CPU": 4096}, nil},
		{"largest Fargate task without a type", map[string]any{"CPU": 16, "memory": mem(122880)}, nil},

		{"unknown type, a typo", map[string]any{"instance_type": "m5.lrage"},
			[]string{`instance_type: instance type "m5.lrage" is not one cloudpipe knows offline (did you mean "m5.large"?): use a type of the families listed in docs/workflow-reference.md, or leave it empty to run on Fargate; agent plan also asks EC2 about types missing from that list`}},
		{"unknown type, upper case", map[string]any{"instance_type": "T2.Micro"},
			[]string{`instance_type: instance type "T2.Micro" is not one cloudpipe knows offline (did you mean "t2.micro"?)`}},
		{"unknown size of a known family", map[string]any{"instance_type": "g5.huge"},
			[]string{`instance type "g5.huge" is not one cloudpipe knows offline (did you mean "g5.xlarge" or "g5.2xlarge" or "g5.4xlarge"?)`}},
		{"unknown family", map[string]any{"instance_type": "zz9.plural"},
			[]string{`instance type "zz9.plural" is not one cloudpipe knows offline: use a type`}},
		{"CPU above the type's vCPUs", map[string]any{"instance_type": "g4dn.xlarge", "CPU": 5},
			[]string{`CPU: CPU 5 is more than the 4 vCPUs of instance type g4dn.xlarge: lower CPU, or choose a larger type`}},
		{"CPU units above the type's vCPUs", map[string]any{"instance_type": "g4dn.xlarge", "CPU": 8192},
			[]string{`CPU: CPU 8192 (8 vCPUs) is more than the 4 vCPUs of instance type g4dn.xlarge`}},
		// A type Fargate serves only sets a floor (the original wrap wrote
		// t2.micro into every algorithm): more is a note, not a problem.
		{"CPU above a Fargate-sized type", map[string]any{"instance_type": "m5.large", "CPU": 3}, nil},
		{"memory above a Fargate-sized type", map[string]any{"instance_type": "t2.micro", "memory": mem(1025)}, nil},
		// On an instance, the ECS agent and the system keep 5%: 16384 MiB leave 15564.
		{"memory a GPU type keeps", map[string]any{"instance_type": "g5.xlarge", "memory": mem(15565)},
			[]string{`memory.suggested: memory.suggested (15565 MiB) is more than the 15564 MiB a container can have on instance type g5.xlarge (its 16384 MiB less 5% kept for the ECS agent and the system): lower it, or choose a larger type, e.g. "g5.2xlarge"`}},
		{"memory a GPU type leaves", map[string]any{"instance_type": "g5.xlarge", "memory": mem(15564)}, nil},
		{"memory a privileged container's type keeps", map[string]any{"instance_type": "m5.large", "privileged": true, "memory": mem(8000)},
			[]string{`memory.suggested: memory.suggested (8000 MiB) is more than the 7782 MiB a container can have on instance type m5.large`}},
		{"beyond Fargate without a type", map[string]any{"CPU": 32, "memory": mem(65536)},
			[]string{`CPU: CPU 32 and memory.suggested 65536 MiB are more than the largest Fargate task (16 vCPU, 120 GiB): name an instance_type that has them, e.g. "m7i.8xlarge"`}},
		{"memory beyond Fargate without a type", map[string]any{"CPU": 4, "memory": mem(130000)},
			[]string{`memory.suggested: CPU 4 and memory.suggested 130000 MiB are more than the largest Fargate task (16 vCPU, 120 GiB): name an instance_type that has them, e.g. "m7i.12xlarge"`}},
		{"privileged without a type", map[string]any{"privileged": true},
			[]string{`privileged: a privileged container runs on an EC2 instance through AWS Batch (Fargate runs no privileged container): set instance_type to the type to run it on, e.g. "m7i.large"`}},
		{"unknown type and no CPU", map[string]any{"instance_type": "m5.lrage", "CPU": 0},
			[]string{`CPU: CPU must be a positive number of vCPUs`, `instance_type: instance type "m5.lrage" is not one cloudpipe knows offline`}},
		{"privileged as a string", map[string]any{"privileged": "yes"},
			[]string{`privileged: must be true or false, not a string`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := baseAlgorithm(t)
			for k, v := range tt.set {
				a[k] = v
			}
			data := mustJSON(t, a)
			alg, got := workflow.ParseAlgorithm(seedAlgorithmFile, data)
			checkProblems(t, data, got, tt.want)
			if (alg != nil) != (len(tt.want) == 0) {
				t.Errorf("ParseAlgorithm returned %v with %d problems", alg, len(got))
			}
			_, loaded := workflow.Load(repo(map[string][]byte{seedAlgorithmFile: data}))
			if loaded.Error() != got.Error() {
				t.Errorf("Load reports\n%v\nParseAlgorithm reports\n%v", loaded, got)
			}
		})
	}
}

// TestCapacityRules checks capacity in a workflow and in its step, alone
// and against the step's algorithm.
func TestCapacityRules(t *testing.T) {
	tests := []struct {
		name         string
		alg          map[string]any
		wfCapacity   any
		stepCapacity any
		want         []string
	}{
		{"none", nil, nil, nil, nil},
		{"fargate without a type", nil, "fargate", nil, nil},
		{"ec2 with a type", map[string]any{"instance_type": "m5.large"}, "ec2", nil, nil},
		{"spot on the step", map[string]any{"instance_type": "g5.xlarge"}, nil, "spot", nil},
		{"a step's fargate under a workflow's spot", map[string]any{"instance_type": "m5.large"}, "spot", "fargate", nil},

		{"unknown on the workflow", nil, "gpu", nil,
			[]string{`capacity: capacity "gpu" is not known: use "fargate" (ECS tasks on Fargate), "ec2" (AWS Batch on On-Demand instances of the algorithm's instance_type) or "spot" (the same on Spot instances)`}},
		{"unknown on the step, in another case", nil, nil, "Spot",
			[]string{`process.algorithms[0].capacity: capacity "Spot" is not known: use "fargate"`}},
		{"not a string", nil, true, nil,
			[]string{`capacity: must be a string, not true or false`}},
		{"fargate for a privileged algorithm", map[string]any{"instance_type": "m5.large", "privileged": true}, "fargate", nil,
			[]string{`capacity: capacity "fargate" cannot run algorithm change123-s3: it is privileged, and Fargate runs no privileged container; use "ec2" or "spot", or remove "privileged" from algorithms/change123-s3.json`}},
		{"fargate for a GPU type, on the step", map[string]any{"instance_type": "g6.xlarge"}, nil, "fargate",
			[]string{`process.algorithms[0].capacity: capacity "fargate" cannot run algorithm change123-s3 on instance type g6.xlarge: Fargate has no GPU; use "ec2" or "spot", or another instance_type in algorithms/change123-s3.json`}},
		{"fargate for a type larger than Fargate", map[string]any{"instance_type": "x2idn.16xlarge"}, "fargate", nil,
			[]string{`capacity "fargate" cannot run algorithm change123-s3 on instance type x2idn.16xlarge: Fargate tasks have at most 16 vCPU and 120 GiB`}},
		{"ec2 without a type", nil, "ec2", nil,
			[]string{`capacity: capacity "ec2" runs stages on EC2 instances of the algorithm's instance_type, and algorithm change123-s3 names none: set instance_type in algorithms/change123-s3.json, e.g. "m7i.large", or use capacity "fargate"`}},
		// t2.micro holds 1024 MiB on Fargate but leaves 972 on an instance.
		{"spot leaves less memory than Fargate", map[string]any{"instance_type": "t2.micro", "memory": map[string]any{"minimal": 64, "suggested": 1000}}, nil, "spot",
			[]string{`process.algorithms[0].capacity: capacity "spot" runs algorithm change123-s3 on instance type t2.micro, where a container can have 972 MiB (its 1024 MiB less 5% kept for the ECS agent and the system), and memory.suggested is 1000 MiB: lower it, or choose a larger type, e.g. "t2.small"`}},
		{"the same on fargate", map[string]any{"instance_type": "t2.micro", "memory": map[string]any{"minimal": 64, "suggested": 1000}}, nil, "fargate", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := baseAlgorithm(t)
			for k, v := range tt.alg {
				a[k] = v
			}
			w := baseWorkflow()
			if tt.wfCapacity != nil {
				w["capacity"] = tt.wfCapacity
			}
			if tt.stepCapacity != nil {
				step0(w)["capacity"] = tt.stepCapacity
			}
			data := mustJSON(t, w)
			cfg, got := workflow.Load(repo(map[string][]byte{"workflows/w.json": data, seedAlgorithmFile: mustJSON(t, a)}))
			checkProblems(t, data, got, tt.want)
			if valid := len(cfg.Workflows) == 1; valid != (len(tt.want) == 0) {
				t.Errorf("workflow in Config.Workflows: %v, want %v", valid, len(tt.want) == 0)
			}
		})
	}
}

// TestInstanceTypeLookup: LoadWith asks its lookup about a type the table
// lacks, and only about such a type; a type EC2 does not know either is a
// problem, and a lookup that fails fails the load.
func TestInstanceTypeLookup(t *testing.T) {
	load := func(t *testing.T, instanceType string, lookup workflow.InstanceTypeLookup) (*workflow.Config, workflow.Problems, error) {
		a := baseAlgorithm(t)
		a["instance_type"] = instanceType
		return workflow.LoadWith(repo(map[string][]byte{"workflows/w.json": mustJSON(t, baseWorkflow()), seedAlgorithmFile: mustJSON(t, a)}),
			workflow.LoadOptions{InstanceTypes: lookup})
	}
	var asked []string
	ec2 := func(name string) (workflow.InstanceType, bool, error) {
		asked = append(asked, name)
		switch name {
		case "i4i.large":
			return workflow.InstanceType{VCPU: 2, MemoryMiB: 16384, Arch: workflow.ArchX86}, true, nil
		case "i4i.tiny":
			return workflow.InstanceType{VCPU: 1, MemoryMiB: 64}, true, nil
		}
		return workflow.InstanceType{}, false, nil
	}

	t.Run("known: not asked", func(t *testing.T) {
		asked = nil
		cfg, ps, err := load(t, "m5.large", ec2)
		if err != nil || len(ps) > 0 || len(cfg.Workflows) != 1 || len(asked) > 0 {
			t.Errorf("got %v, %v; asked %v; want valid without asking", ps, err, asked)
		}
	})
	t.Run("missing from the table, known to EC2", func(t *testing.T) {
		asked = nil
		cfg, ps, err := load(t, "i4i.large", ec2)
		if err != nil || len(ps) > 0 || len(cfg.Workflows) != 1 || len(asked) != 1 || asked[0] != "i4i.large" {
			t.Errorf("got %v, %v; asked %v; want valid after asking once", ps, err, asked)
		}
	})
	t.Run("EC2's figures are checked", func(t *testing.T) {
		// Fargate serves i4i.tiny's figures, so they only set a floor: the
		// algorithm's larger memory is a note.
		cfg, ps, err := load(t, "i4i.tiny", ec2)
		if err != nil || len(ps) != 0 || len(cfg.Notes) == 0 || !strings.Contains(cfg.Notes.Error(), "instance type i4i.tiny (1 vCPU, 64 MiB) is smaller than") {
			t.Errorf("got %v, %v, notes %v; want a note that i4i.tiny is smaller than the algorithm", ps, err, cfg.Notes)
		}
	})
	t.Run("unknown to EC2", func(t *testing.T) {
		cfg, ps, err := load(t, "m5.lrage", ec2)
		if err != nil || len(ps) != 2 || len(cfg.Workflows) != 0 ||
			!strings.Contains(ps[0].String(), `instance_type: instance type "m5.lrage" does not exist in EC2 (did you mean "m5.large"?): name an EC2 instance type such as "m7i.large", or leave it empty to run on Fargate`) {
			t.Errorf("got %v, %v; want the type refused with a suggestion", ps, err)
		}
	})
	t.Run("EC2 unreachable", func(t *testing.T) {
		down := errors.New("connection refused")
		_, _, err := load(t, "i4i.large", func(string) (workflow.InstanceType, bool, error) { return workflow.InstanceType{}, false, down })
		if !errors.Is(err, down) || !strings.Contains(err.Error(), "check instance type i4i.large with EC2") {
			t.Errorf("err = %v, want the lookup's error, naming the type", err)
		}
	})
}
