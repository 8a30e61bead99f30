package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/localecs"
)

// runnerIdleTimeout is how long a runner waits for more work before it
// exits. In AWS an idle task costs money for its whole wait; here it holds a
// process, and a short wait lets --once end soon after the last result.
const runnerIdleTimeout = 3 * time.Second

// runnerRetryDelay is how long a message whose run failed waits before its
// next delivery. With the runner's default (30s, doubled per delivery) a
// file that fails would reach the dead-letter queue only after 30+60+120
// seconds, with a runner kept up all that while for its retries. SQS counts
// whole seconds, so this delay, doubled per delivery, stays "at once" for
// the first ten deliveries: a failing file is retried and dead-lettered
// within seconds.
const runnerRetryDelay = time.Millisecond

// runnerWaitTime is the runner's long-poll wait. A runner that released a
// message for a retry stays up for one whole wait after the retry is due
// (runner.Run); with SQS's 20 seconds, every runner that saw a failure
// would outlive runnerIdleTimeout by that much.
const runnerWaitTime = runnerIdleTimeout

// runnerRole is the argument of the agent's entry point that makes it the
// runner ("/cloudpipe/agent runner" in the task definition).
const runnerRole = "runner"

// startTask builds the process of one task for the local ECS: the demo's
// own binary in its runner role, with the algorithm container's environment.
// Nothing runs in a container, so the container's paths are moved under a
// directory of the task's own: tasks on one host would otherwise share
// /tmp/in/ and overwrite each other's files.
func (d *demo) startTask(ctx context.Context, t localecs.TaskSpec) (*exec.Cmd, error) {
	argv := append(append([]string(nil), t.EntryPoint...), t.Command...)
	if len(argv) < 2 || argv[1] != runnerRole {
		return nil, fmt.Errorf("the demo runs only cloudpipe's runner (entry point \"agent runner\"), not %q", argv)
	}
	if t.Job != nil {
		label := t.Family
		if st, ok := d.stages.byFunction(t.Family); ok {
			label = st.label()
		}
		d.out.printf("%s\n", batchLine(label, *t.Job))
	}
	root := d.taskDir(t.TaskID)
	env := contract.RunnerEnv{
		TempDir:     filepath.Join(root, "tmp"),
		IdleTimeout: runnerIdleTimeout,
		RetryDelay:  runnerRetryDelay,
		WaitTime:    runnerWaitTime,
	}.TuningEnv()
	env[roleEnv] = runnerRole
	env["TMPDIR"] = filepath.Join(root, "tmp")
	dirs := []string{filepath.Join(root, "tmp")}
	for _, k := range []string{contract.EnvInputPath, contract.EnvOutputPath} {
		p, ok := t.Environment[k]
		if !ok || p == "" {
			continue
		}
		hp := filepath.Join(root, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			hp += string(filepath.Separator)
			dirs = append(dirs, hp)
		} else {
			dirs = append(dirs, filepath.Dir(hp))
		}
		env[k] = hp
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, d.exe)
	// The runner acts as the task role, as ECS gives it the role's
	// credentials (none when the task definition names no task role), in
	// the region the task runs in, which ECS sets as AWS_REGION and
	// AWS_DEFAULT_REGION
	// (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-environment-variables.html):
	// the workflow's input and output buckets are there; the state
	// bucket's region comes from the task definition
	// (CLOUDPIPE_STATE_REGION).
	cmd.Env = childEnv(d.baseEnv, t.Environment, env, regionEnv(t.Region), roleCredentials(t.TaskRoleARN))
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = d.stderr, d.stderr
	dieWithParent(cmd)
	return cmd, nil
}

// batchLine says where AWS Batch would have run a job the local Batch runs
// on this machine: the demo has no EC2 instance, let alone a GPU, and one
// should not take the result for what the instance type would do.
func batchLine(label string, j localecs.JobSpec) string {
	where := "AWS Batch, " + j.ComputeType
	switch j.ComputeType {
	case "EC2":
		where = "AWS Batch, EC2 On-Demand"
	case "SPOT":
		where = "AWS Batch, EC2 Spot"
	}
	if g := j.Resources["GPU"]; g != "" && g != "0" {
		where += ", " + g + " GPU"
	}
	types := strings.Join(j.InstanceTypes, ",")
	if types == "" {
		types = "an instance of its compute environment"
	}
	return fmt.Sprintf("%s would run on %s (%s); running it on this machine", label, types, where)
}

// taskDir is the directory that stands in for a task's container file
// system.
func (d *demo) taskDir(id string) string {
	return filepath.Join(d.dir, "tasks", id)
}

// onTask hands a task's start or stop to the tracker, which reports it in
// order with the runs, and removes a stopped task's directory.
func (d *demo) onTask(t localecs.Task) {
	d.tracker.taskEvent(t)
	if t.LastStatus == localecs.StatusStopped {
		if err := os.RemoveAll(d.taskDir(t.TaskID)); err != nil {
			d.log.Warn("task directory not removed", "task", t.TaskARN, "err", err)
		}
	}
}

// onJob hands a finished Batch job to onTask as the task it ran (or could
// not start): the tracker reports a job that failed to start, or whose
// command failed, as it reports such a task, and the directory of its
// process is removed. Its start was reported by startTask.
func (d *demo) onJob(j localecs.Job) {
	if t, ok := jobTask(j); ok {
		d.onTask(t)
	}
}

// jobTask is a finished job as the stopped task the tracker knows: the
// family is the job definition's name, which is the stage function's, as a
// task definition's family is.
func jobTask(j localecs.Job) (localecs.Task, bool) {
	if j.Status != localecs.JobSucceeded && j.Status != localecs.JobFailed {
		return localecs.Task{}, false
	}
	def := j.JobDefinitionARN
	if _, after, ok := strings.Cut(def, ":job-definition/"); ok {
		def = after
	}
	def, _, _ = strings.Cut(def, ":") // the revision
	t := localecs.Task{LastStatus: localecs.StatusStopped, StoppedReason: j.StatusReason}
	t.Family, t.TaskARN, t.TaskID = def, j.TaskARN, j.JobID
	if i := strings.LastIndexByte(j.TaskARN, '/'); i >= 0 {
		t.TaskID = j.TaskARN[i+1:]
	}
	switch {
	case j.TaskARN == "" && (j.IsCancelled || j.IsTerminated):
		t.StopCode = localecs.StopUserInitiated
	case j.TaskARN == "":
		t.StopCode = localecs.StopTaskFailedToStart
		if j.ContainerReason != "" {
			t.StoppedReason = j.ContainerReason
		}
	case j.IsTerminated:
		t.StopCode = localecs.StopUserInitiated
	default:
		t.StopCode, t.ExitCode = localecs.StopEssentialContainerExited, j.ExitCode
	}
	return t, true
}

// shortID is the first 8 characters of a task ID, as the ECS console
// shows them.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
