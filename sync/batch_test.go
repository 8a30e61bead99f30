package sync_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go/middleware"

	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// crashAtOp plays the agent killed at one AWS call: once armed, the first
// call of operation op fails (before: nothing of it reaches AWS) or goes
// through (after), and every later call fails, as nothing of a killed
// process reaches AWS.
type crashAtOp struct {
	op      atomic.Pointer[string]
	after   atomic.Bool
	crashed atomic.Bool
}

func (c *crashAtOp) arm(op string, after bool) {
	c.crashed.Store(false)
	c.after.Store(after)
	c.op.Store(&op)
}

func (c *crashAtOp) disarm() { c.op.Store(nil); c.crashed.Store(false) }

func (c *crashAtOp) install(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("crashAtOp",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			op := c.op.Load()
			if op == nil {
				return next.HandleFinalize(ctx, in)
			}
			if c.crashed.Load() {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, errCrash
			}
			if awsmiddleware.GetOperationName(ctx) == *op {
				c.crashed.Store(true)
				if c.after.Load() {
					return next.HandleFinalize(ctx, in)
				}
				return middleware.FinalizeOutput{}, middleware.Metadata{}, errCrash
			}
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

// TestSharedBatchCapacity: two workflows whose stage runs on g5.xlarge
// share one compute environment and job queue. Removing one keeps them;
// removing the other tears them down, and the agent killed at any step of
// that teardown (before or after each call that changes the queue or the
// environment) leaves an index entry a later pass finishes: nothing of the
// stage or the capacity is left, and the entry is dropped.
func TestSharedBatchCapacity(t *testing.T) {
	base, _ := testenv.LocalECS(t, localecs.Options{
		Start: func(ctx context.Context, _ localecs.TaskSpec) (*exec.Cmd, error) {
			return exec.CommandContext(ctx, "true"), nil
		},
		BatchTransition: 20 * time.Millisecond,
	})
	crash := &crashAtOp{}
	e := newEnvOn(t, base, crash.install)
	r := e.reconciler("a")
	ops := batch.NewFromConfig(base)
	ctx := t.Context()
	const capacity = "cp-batch-g5-xlarge-ec2"
	a, b := e.name("a"), e.name("b")
	files := func(names ...string) map[string]string {
		m := map[string]string{}
		for _, n := range names {
			m[n] = oneStage(n, "gpu", "")
		}
		return m
	}
	commit := 0
	pass := func(names ...string) {
		t.Helper()
		commit++
		for _, res := range e.sync(r, placementRepo(files(names...)), fmt.Sprint("c", commit)).Results {
			if res.Err != nil {
				t.Fatalf("%s: %v", res.Workflow, res.Err)
			}
		}
	}
	environment := func() string {
		t.Helper()
		out, err := ops.DescribeComputeEnvironments(ctx, &batch.DescribeComputeEnvironmentsInput{ComputeEnvironments: []string{capacity}})
		if err != nil {
			t.Fatal(err)
		}
		for _, ce := range out.ComputeEnvironments {
			if ce.Status != batchtypes.CEStatusDeleted {
				return string(ce.State) + "/" + string(ce.Status)
			}
		}
		return "none"
	}
	users := func() string {
		t.Helper()
		idx, err := e.inv.ReadIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(idx.BatchCapacities)
	}
	functionGone := func(w string) bool {
		_, err := e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(provision.ResourceName(w, 0))})
		return err != nil
	}

	pass(a, b)
	if got := environment(); got != "ENABLED/VALID" {
		t.Fatalf("after both: compute environment %s, want ENABLED/VALID", got)
	}
	pass(b)
	if got := environment(); got != "ENABLED/VALID" || !functionGone(a) {
		t.Fatalf("after %s went: compute environment %s (want ENABLED/VALID), its function gone: %v", a, got, functionGone(a))
	}

	for _, op := range []string{"UpdateJobQueue", "DeleteJobQueue", "UpdateComputeEnvironment", "DeleteComputeEnvironment"} {
		for _, after := range []bool{false, true} {
			name := fmt.Sprintf("%s/after=%v", op, after)
			pass(b) // the capacity in use again (made again after the last case)
			crash.arm(op, after)
			commit++
			_, _ = r.Reconcile(ctx, pipesync.LoadDesired(placementRepo(files()), fmt.Sprint("c", commit)))
			crashed := crash.crashed.Load()
			crash.disarm()
			if !crashed {
				t.Fatalf("%s: the teardown never called %s", name, op)
			}
			if got := users(); got == "[]" {
				t.Errorf("%s: the index dropped the capacity before it was gone", name)
			}
			pass()
			if got := environment(); got != "none" {
				t.Errorf("%s: after the next pass the compute environment is %s, want none", name, got)
			}
			if got := users(); got != "[]" {
				t.Errorf("%s: index capacities %s, want none", name, got)
			}
			if !functionGone(b) {
				t.Errorf("%s: %s's function is left", name, b)
			}
		}
	}
}

// TestPlanShowsSharedCapacityAgainstAWS: through the agent's plan path (the
// index a real pass wrote, Reconciler.Plan), the plan of a first Batch
// stage creates its compute environment and job queue, and once it is
// deployed, the plan that removes it deletes them and lists the stage's
// job definition. The capacity has its own key pair, so that its name is
// this test's.
func TestPlanShowsSharedCapacityAgainstAWS(t *testing.T) {
	base, _ := testenv.LocalECS(t, localecs.Options{
		Start: func(ctx context.Context, _ localecs.TaskSpec) (*exec.Cmd, error) {
			return exec.CommandContext(ctx, "true"), nil
		},
		BatchTransition: 20 * time.Millisecond,
	})
	e := newEnvOn(t, base)
	r := e.reconciler("a")
	ctx := t.Context()
	w := e.name("w")
	k := provision.BatchCapacity{Region: "us-east-1", InstanceType: "g5.xlarge", Capacity: "ec2", KeyPair: e.prefix}
	files := placementRepo(map[string]string{w: oneStage(w, "gpu", "", `"key_pair": "`+e.prefix+`"`)})
	planText := func(repo fstest.MapFS, commit string) string {
		t.Helper()
		plan, err := r.Plan(ctx, pipesync.LoadDesired(repo, commit))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := plan.WritePlan(&b); err != nil {
			t.Fatal(err)
		}
		return b.String() + plan.Comment()
	}

	out := planText(files, "c1")
	for _, want := range []string{
		"  + batch compute environment " + k.Name() + " (shared, " + k.String() + ")\n",
		"  + batch job queue " + k.Name() + " (shared, " + k.String() + ")\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the first plan lacks %q:\n%s", want, out)
		}
	}
	for _, res := range e.sync(r, files, "c1").Results {
		if res.Err != nil {
			t.Fatalf("%s: %v", res.Workflow, res.Err)
		}
	}
	if out := planText(files, "c1"); strings.Contains(out, "(shared, ") {
		t.Errorf("the plan of the deployed commit touches the capacity:\n%s", out)
	}
	out = planText(placementRepo(map[string]string{}), "c2")
	for _, want := range []string{
		"  - batch compute environment " + k.Name() + " (shared, " + k.String() + ")\n",
		"  - batch job queue " + k.Name() + " (shared, " + k.String() + ")\n",
		"batch job definition `" + provision.ResourceName(w, 0) + "`",
		"deleted, its last users gone: stage `" + w + "/0`",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the plan removing the workflow lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "task definition") {
		t.Errorf("the plan removing a Batch stage lists a task definition:\n%s", out)
	}
	// Leave nothing behind for other tests sharing the emulator.
	e.sync(r, placementRepo(map[string]string{}), "c2")
}
