package sync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// placementRepo is repo with three more algorithms: "small" on t2.micro,
// "gpu" on g5.xlarge and "priv", privileged on m5.large.
func placementRepo(workflows map[string]string) fstest.MapFS {
	fsys := repo(workflows)
	for name, fields := range map[string]string{
		"small": `"instance_type": "t2.micro",`,
		"gpu":   `"instance_type": "g5.xlarge",`,
		"priv":  `"instance_type": "m5.large", "privileged": true,`,
	} {
		alg := strings.Replace(algorithmJSON(name, "run $input $output"), `"instance_type": "",`, fields, 1)
		fsys["algorithms/"+name+".json"] = &fstest.MapFile{Data: []byte(alg)}
	}
	return fsys
}

// oneStage is a workflow of one stage running alg, with buckets named after
// in; step holds more fields of the step, extra more top-level fields.
func oneStage(in, alg, step string, extra ...string) string {
	more := ""
	if len(extra) > 0 {
		more = "," + strings.Join(extra, ",")
	}
	if step != "" {
		step = ", " + step
	}
	return fmt.Sprintf(`{
  "input_s3_name": %q,
  "output_s3_name": %q,
  "region": "us-east-1",
  "process": {"type": "single_run", "algorithms": [{"name": %q%s}]}%s
}`, in+"-in", in+"-out", alg, step, more)
}

// TestPlanShowsWhereStagesRun prints the plan of one workflow per capacity
// case: each stage created or updated says where it runs.
func TestPlanShowsWhereStagesRun(t *testing.T) {
	d := pipesync.LoadDesired(placementRepo(map[string]string{
		"a-none":       oneStage("p-none", "sorter", ""),
		"b-fits":       oneStage("p-fits", "small", ""),
		"c-gpu":        oneStage("p-gpu", "gpu", ""),
		"d-privileged": oneStage("p-priv", "priv", ""),
		"e-ec2":        oneStage("p-ec2", "small", "", `"capacity": "ec2"`),
		"f-spot":       oneStage("p-spot", "gpu", `"capacity": "spot"`),
		"g-chain":      sequenceRun("p-chain-in", "p-chain-out"),
		"h-same":       oneStage("p-same", "gpu", ""),
	}), "c0ffee0000")
	if len(d.Problems) > 0 {
		t.Fatalf("test repository is invalid: %v", d.Problems)
	}
	// h-same is deployed as it is: an unchanged workflow shows no stages.
	idx := &inventory.Index{Workflows: map[string]inventory.IndexEntry{}}
	for _, w := range d.Workflows {
		if w.Name == "h-same" {
			idx.Workflows[w.Name] = inventory.IndexEntry{Region: "us-east-1", SpecHash: w.SpecHash, Commit: "c0ffee0000", State: inventory.StateReady}
		}
	}
	plan := pipesync.ComputePlan(d, idx, "a", "", time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	var out bytes.Buffer
	if err := plan.WritePlan(&out); err != nil {
		t.Fatal(err)
	}
	want := `plan for commit c0ffee0: +7 create ~0 update -0 delete, 1 unchanged
  + a-none        create     new file workflows/a-none.json
                             stage 0 sorter: Fargate 0.25 vCPU/512 MiB
  + b-fits        create     new file workflows/b-fits.json
                             stage 0 small: Fargate 1 vCPU/2 GiB (t2.micro)
  + c-gpu         create     new file workflows/c-gpu.json
                             stage 0 gpu: AWS Batch g5.xlarge on ec2, 1 vCPU/512 MiB, 1 GPU (Fargate has no GPU)
  + d-privileged  create     new file workflows/d-privileged.json
                             stage 0 priv: AWS Batch m5.large on ec2, 1 vCPU/512 MiB (Fargate runs no privileged container)
  + e-ec2         create     new file workflows/e-ec2.json
                             stage 0 small: AWS Batch t2.micro on ec2, 1 vCPU/512 MiB (the workflow asks for capacity "ec2")
  + f-spot        create     new file workflows/f-spot.json
                             stage 0 gpu: AWS Batch g5.xlarge on spot, 1 vCPU/512 MiB, 1 GPU (Fargate has no GPU)
  + g-chain       create     new file workflows/g-chain.json
                             stage 0 sorter: Fargate 0.25 vCPU/512 MiB
                             stage 1 dedup: Fargate 0.25 vCPU/512 MiB
                             stage 2 copier: Fargate 0.25 vCPU/512 MiB
  = h-same        unchanged  deployed at commit c0ffee0
  + batch compute environment cp-batch-g5-xlarge-ec2 (shared, us-east-1/g5.xlarge/ec2)
  + batch job queue cp-batch-g5-xlarge-ec2 (shared, us-east-1/g5.xlarge/ec2)
  + batch compute environment cp-batch-g5-xlarge-spot (shared, us-east-1/g5.xlarge/spot)
  + batch job queue cp-batch-g5-xlarge-spot (shared, us-east-1/g5.xlarge/spot)
  + batch compute environment cp-batch-m5-large-ec2 (shared, us-east-1/m5.large/ec2)
  + batch job queue cp-batch-m5-large-ec2 (shared, us-east-1/m5.large/ec2)
  + batch compute environment cp-batch-t2-micro-ec2 (shared, us-east-1/t2.micro/ec2)
  + batch job queue cp-batch-t2-micro-ec2 (shared, us-east-1/t2.micro/ec2)
`
	if out.String() != want {
		t.Errorf("plan:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestMachineCountsBatchCapacityUsers: the stages placed on AWS Batch are
// recorded in the index as users of their capacity (region, instance type,
// capacity); two workflows on g5.xlarge share one; removing one keeps it,
// removing the last tears it down once and drops its entry. A workflow
// whose apply fails keeps its stages as users.
func TestMachineCountsBatchCapacityUsers(t *testing.T) {
	m := newMachine(t)
	files := map[string]string{
		"gpu":   `{"input_s3_name": "m-gpu-in", "output_s3_name": "m-gpu-out", "region": "us-east-1", "process": {"type": "sequence_run", "algorithms": [{"name": "sorter"}, {"name": "gpu"}]}}`,
		"gpu2":  oneStage("m-gpu2", "gpu", ""),
		"plain": singleRun("m-plain-in", "m-plain-out", "x"),
	}
	g5 := provision.BatchCapacity{Region: "us-east-1", InstanceType: "g5.xlarge", Capacity: "ec2"}
	pass := func(commit string) {
		t.Helper()
		d := pipesync.LoadDesired(placementRepo(files), commit)
		if len(d.Problems) > 0 {
			t.Fatalf("test repository is invalid: %v", d.Problems)
		}
		rep, err := m.agent("a", nil).Reconcile(t.Context(), d)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Results {
			if r.Err != nil && m.prov.fail == nil {
				t.Errorf("%s: %v", r.Workflow, r.Err)
			}
		}
	}
	capacities := func() []inventory.BatchCapacityEntry {
		idx, err := m.inv.ReadIndex(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return idx.BatchCapacities
	}
	deletes := func() int {
		n := 0
		for _, c := range m.prov.took() {
			if strings.HasPrefix(c, "delete-capacity ") {
				n++
			}
		}
		return n
	}

	pass("c1")
	want := []inventory.BatchCapacityEntry{{BatchCapacity: g5, Users: []string{"gpu/1", "gpu2/0"}}}
	if got := capacities(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after both: %+v, want %+v", got, want)
	}

	// gpu2 fails to go: it keeps its use.
	delete(files, "gpu2")
	m.prov.fail = func(op, wf string, _ int) error {
		if op == "delete" && wf == "gpu2" {
			return errors.New("boom")
		}
		return nil
	}
	pass("c2")
	if got := capacities(); !reflect.DeepEqual(got, want) || deletes() != 0 {
		t.Fatalf("after gpu2 failed to go: %+v, %d capacity deletes; want %+v, none", got, deletes(), want)
	}
	m.prov.fail = nil
	pass("c3")
	want[0].Users = []string{"gpu/1"}
	if got := capacities(); !reflect.DeepEqual(got, want) || deletes() != 0 {
		t.Fatalf("after gpu2 went: %+v, %d capacity deletes; want %+v, none", got, deletes(), want)
	}

	delete(files, "gpu")
	pass("c4")
	if got := capacities(); len(got) != 0 || deletes() != 1 {
		t.Fatalf("after both went: %+v, %d capacity deletes; want none left, one delete", got, deletes())
	}
	pass("c5")
	if deletes() != 1 {
		t.Errorf("a pass with nothing to collect deleted a capacity again (%d deletes)", deletes())
	}
}

// ec2Types answers for instance types as EC2 would, counting the calls.
type ec2Types struct {
	known map[string]workflow.InstanceType
	err   error
	asked []string
}

func (e *ec2Types) InstanceType(_ context.Context, name string) (workflow.InstanceType, bool, error) {
	e.asked = append(e.asked, name)
	t, ok := e.known[name]
	return t, ok, e.err
}

// TestRepoAsksEC2AboutUnlistedTypes: a repository loads offline unless
// given an InstanceTypes; with one, a type missing from the table is asked
// of it, and its failure fails the load rather than the file.
func TestRepoAsksEC2AboutUnlistedTypes(t *testing.T) {
	dir := t.TempDir()
	files := placementRepo(map[string]string{"io": oneStage("r-io", "fast", "")})
	files["algorithms/fast.json"] = &fstest.MapFile{Data: []byte(strings.Replace(algorithmJSON("fast", "run $input $output"),
		`"instance_type": "",`, `"instance_type": "i4i.large",`, 1))}
	for name, f := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open := func() *pipesync.Repo {
		r, err := pipesync.OpenRepo(t.Context(), gitsource.Options{URL: dir, Branch: "main", CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	d, err := open().Load(t.Context(), "")
	if err != nil || len(d.Invalid["io"]) == 0 || !strings.Contains(d.Problems.Error(), `instance type "i4i.large" is not one cloudpipe knows offline`) {
		t.Fatalf("offline: %v, %v; want i4i.large unknown", d.Problems, err)
	}

	ec2 := &ec2Types{known: map[string]workflow.InstanceType{"i4i.large": {VCPU: 2, MemoryMiB: 16384}}}
	r := open()
	r.UseInstanceTypes(ec2)
	d, err = r.Load(t.Context(), "")
	if err != nil || len(d.Problems) > 0 || len(d.Workflows) != 1 || !slices.Equal(ec2.asked, []string{"i4i.large"}) {
		t.Fatalf("with EC2: %v, %v, asked %v; want valid after asking about i4i.large", d.Problems, err, ec2.asked)
	}

	ec2.err = errors.New("no route to EC2")
	if _, err := r.Load(t.Context(), ""); !errors.Is(err, ec2.err) {
		t.Errorf("EC2 failing: %v, want the load to fail with it", err)
	}
}

// TestStageSpecsTakeThePlacement: a stage's task is sized by its placement,
// at least its instance type's vCPUs and memory, on the type's processor.
func TestStageSpecsTakeThePlacement(t *testing.T) {
	files := placementRepo(map[string]string{"w": oneStage("s-w", "small", "")})
	files["algorithms/arm.json"] = &fstest.MapFile{Data: []byte(strings.Replace(algorithmJSON("arm", "run $input $output"),
		`"instance_type": "",`, `"instance_type": "m7g.large",`, 1))}
	files["workflows/g.json"] = &fstest.MapFile{Data: []byte(oneStage("s-g", "arm", ""))}
	files["workflows/p.json"] = &fstest.MapFile{Data: []byte(oneStage("s-p", "sorter", ""))}
	d := pipesync.LoadDesired(files, "")
	if len(d.Problems) > 0 || len(d.Workflows) != 3 {
		t.Fatalf("test repository: %v", d.Problems)
	}
	want := map[string]provision.AlgorithmSpec{
		"g": {CPU: 2, MemoryMiB: 8192, Architecture: "arm64"},    // m7g.large
		"p": {CPU: 0.25, MemoryMiB: 512, Architecture: "x86_64"}, // the algorithm's own
		"w": {CPU: 1, MemoryMiB: 2048, Architecture: "x86_64"},   // t2.micro's 1 GiB, on Fargate's smallest 1-vCPU size
	}
	for _, w := range d.Workflows {
		a := pipesync.StageSpecs(w, "123456789012", "state")[0].Algorithm
		got := provision.AlgorithmSpec{CPU: a.CPU, MemoryMiB: a.MemoryMiB, Architecture: a.Architecture}
		if !reflect.DeepEqual(got, want[w.Name]) {
			t.Errorf("%s: %+v, want %+v", w.Name, got, want[w.Name])
		}
	}
}
