package localecs_test

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// jobEvents records the job snapshots a proxy's OnJob was called with.
type jobEvents struct {
	mu     sync.Mutex
	events []localecs.Job
}

func (e *jobEvents) add(j localecs.Job) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, j)
}

// statuses is the sequence of statuses reported for job id.
func (e *jobEvents) statuses(id string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, j := range e.events {
		if j.JobID == id {
			out = append(out, j.Status)
		}
	}
	return out
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// batchFixture is a proxy in front of the test binary's kumo with a
// compute environment (EC2, instance profile and role made in kumo), a job
// queue over it and a two-container job definition, all made through it.
type batchFixture struct {
	proxy   *localecs.Proxy
	batch   *batch.Client
	cfg     aws.Config
	starts  *starts
	jobs    *jobEvents
	name    string
	env     string
	envARN  string
	queue   string
	qARN    string
	defARN  string
	profile string
	// clock, when the proxy runs on one, is moved on by the waits.
	clock      *fakeClock
	transition time.Duration
}

// newBatchFixture starts a proxy whose job processes run argv ("" makes
// Start fail); opts, if set, adjusts its options; clock, if set, is its
// clock.
func newBatchFixture(t *testing.T, clock *fakeClock, opts func(*localecs.Options), argv ...string) *batchFixture {
	t.Helper()
	st, ev := &starts{}, &jobEvents{}
	o := batchOptions(st, ev, argv)
	o.Addr, o.Upstream = "127.0.0.1:0", testenv.KumoURL(t)
	if opts != nil {
		opts(&o)
	}
	if clock != nil {
		o.Now = clock.now
	}
	p, err := localecs.Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	cfg := testenv.Kumo(t)
	cfg.BaseEndpoint = aws.String(p.URL())
	f := &batchFixture{proxy: p, cfg: cfg, starts: st, jobs: ev, clock: clock, transition: o.BatchTransition}
	f.setUp(t)
	return f
}

// batchOptions are a test proxy's options: job processes run argv, Start
// and OnJob calls are recorded in st and ev.
func batchOptions(st *starts, ev *jobEvents, argv []string) localecs.Options {
	return localecs.Options{
		StopTimeout: 2 * time.Second, BatchTransition: 20 * time.Millisecond, OnJob: ev.add,
		Start: func(ctx context.Context, spec localecs.TaskSpec) (*exec.Cmd, error) {
			st.add(spec)
			if argv[0] == "" {
				return nil, errors.New("no such image")
			}
			return exec.CommandContext(ctx, argv[0], argv[1:]...), nil
		},
	}
}

// setUp makes the fixture's compute environment, queue and job definition
// through f.cfg.
func (f *batchFixture) setUp(t *testing.T) {
	t.Helper()
	f.batch = batch.NewFromConfig(f.cfg)
	f.name = testenv.UniqueName(t)
	f.profile = testenv.InstanceProfile(t, f.name)
	f.env, f.queue = f.name+"-ce", f.name+"-jq"
	f.envARN = f.createEnv(t, f.env, batchtypes.CEStateEnabled)
	f.qARN = f.createQueue(t, f.queue, f.env)
	f.defARN = f.register(t, f.name, "", nil)
}

// createEnv creates a managed EC2 compute environment and waits until it
// is VALID.
func (f *batchFixture) createEnv(t *testing.T, name string, state batchtypes.CEState) string {
	t.Helper()
	out, err := f.batch.CreateComputeEnvironment(t.Context(), &batch.CreateComputeEnvironmentInput{
		ComputeEnvironmentName: aws.String(name), Type: batchtypes.CETypeManaged, State: state,
		Tags: map[string]string{"cloudpipe:managed": "true"},
		ComputeResources: &batchtypes.ComputeResource{
			Type: batchtypes.CRTypeEc2, MinvCpus: aws.Int32(0), MaxvCpus: aws.Int32(16),
			InstanceTypes: []string{"g4dn.xlarge"}, Subnets: []string{"subnet-1"}, InstanceRole: aws.String(f.profile),
		},
	})
	if err != nil {
		t.Fatalf("create compute environment: %v", err)
	}
	f.waitEnv(t, name, batchtypes.CEStatusValid)
	return aws.ToString(out.ComputeEnvironmentArn)
}

func (f *batchFixture) createQueue(t *testing.T, name, env string) string {
	t.Helper()
	out, err := f.batch.CreateJobQueue(t.Context(), &batch.CreateJobQueueInput{
		JobQueueName: aws.String(name), Priority: aws.Int32(1),
		ComputeEnvironmentOrder: []batchtypes.ComputeEnvironmentOrder{{ComputeEnvironment: aws.String(env), Order: aws.Int32(1)}},
		Tags:                    map[string]string{"cloudpipe:managed": "true"},
	})
	if err != nil {
		t.Fatalf("create job queue: %v", err)
	}
	f.waitQueue(t, name, batchtypes.JQStatusValid)
	return aws.ToString(out.JobQueueArn)
}

// envStatus is a compute environment's state and status, "" when it is
// not listed.
func (f *batchFixture) envStatus(t *testing.T, name string) (batchtypes.CEState, batchtypes.CEStatus) {
	t.Helper()
	out, err := f.batch.DescribeComputeEnvironments(t.Context(), &batch.DescribeComputeEnvironmentsInput{ComputeEnvironments: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.ComputeEnvironments) == 0 {
		return "", ""
	}
	return out.ComputeEnvironments[0].State, out.ComputeEnvironments[0].Status
}

// tick lets time pass: the fake clock's whole transition, else 10 ms.
func (f *batchFixture) tick() {
	if f.clock != nil {
		f.clock.add(f.transition)
		return
	}
	time.Sleep(10 * time.Millisecond)
}

func (f *batchFixture) queueStatus(t *testing.T, name string) (batchtypes.JQState, batchtypes.JQStatus) {
	t.Helper()
	out, err := f.batch.DescribeJobQueues(t.Context(), &batch.DescribeJobQueuesInput{JobQueues: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.JobQueues) == 0 {
		return "", ""
	}
	return out.JobQueues[0].State, out.JobQueues[0].Status
}

// waitEnv polls until a compute environment's status is want ("" for
// gone).
func (f *batchFixture) waitEnv(t *testing.T, name string, want batchtypes.CEStatus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, s := f.envStatus(t, name); s == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("compute environment %s is %q after 10s, want %q", name, s, want)
		}
		f.tick()
	}
}

func (f *batchFixture) waitQueue(t *testing.T, name string, want batchtypes.JQStatus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, s := f.queueStatus(t, name); s == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("job queue %s is %q after 10s, want %q", name, s, want)
		}
		f.tick()
	}
}

// register registers a job definition as cloudpipe's: an init container
// that is not essential, and the algorithm's container, which depends on
// it; execRole is its execution role (none when ""), secrets the
// algorithm's.
func (f *batchFixture) register(t *testing.T, name, execRole string, secrets []batchtypes.Secret) string {
	t.Helper()
	return f.registerImage(t, name, "public.ecr.aws/docker/library/alpine:3.20", execRole, secrets)
}

func (f *batchFixture) registerImage(t *testing.T, name, image, execRole string, secrets []batchtypes.Secret) string {
	t.Helper()
	task := batchtypes.EcsTaskProperties{
		TaskRoleArn: aws.String("arn:aws:iam::000000000000:role/" + f.name + "-task"),
		Containers: []batchtypes.TaskContainerProperties{
			{Name: aws.String("init"), Image: aws.String("runner:1"), Essential: aws.Bool(false),
				Command:              []string{"cp", "/agent", "/cloudpipe/agent"},
				ResourceRequirements: []batchtypes.ResourceRequirement{{Type: batchtypes.ResourceTypeVcpu, Value: aws.String("0.25")}}},
			{
				Name: aws.String("algo"), Image: aws.String(image), Privileged: aws.Bool(true),
				Command: []string{"/cloudpipe/agent", "runner"},
				Environment: []batchtypes.KeyValuePair{
					{Name: aws.String("VERSION"), Value: aws.String("v1")},
					{Name: aws.String("KEEP"), Value: aws.String("yes")},
				},
				Secrets:   secrets,
				DependsOn: []batchtypes.TaskContainerDependency{{ContainerName: aws.String("init"), Condition: aws.String("COMPLETE")}},
				ResourceRequirements: []batchtypes.ResourceRequirement{
					{Type: batchtypes.ResourceTypeVcpu, Value: aws.String("4")},
					{Type: batchtypes.ResourceTypeMemory, Value: aws.String("16384")},
					{Type: batchtypes.ResourceTypeGpu, Value: aws.String("1")},
				},
			},
		},
	}
	if execRole != "" {
		task.ExecutionRoleArn = aws.String(execRole)
	}
	out, err := f.batch.RegisterJobDefinition(t.Context(), &batch.RegisterJobDefinitionInput{
		JobDefinitionName: aws.String(name), Type: batchtypes.JobDefinitionTypeContainer,
		PlatformCapabilities: []batchtypes.PlatformCapability{batchtypes.PlatformCapabilityEc2},
		EcsProperties:        &batchtypes.EcsProperties{TaskProperties: []batchtypes.EcsTaskProperties{task}},
		Tags:                 map[string]string{"cloudpipe:managed": "true"},
	})
	if err != nil {
		t.Fatalf("register job definition: %v", err)
	}
	return aws.ToString(out.JobDefinitionArn)
}

func (f *batchFixture) submit(t *testing.T, in *batch.SubmitJobInput) string {
	t.Helper()
	if in.JobName == nil {
		in.JobName = aws.String(f.name + "-job")
	}
	if in.JobQueue == nil {
		in.JobQueue = aws.String(f.queue)
	}
	if in.JobDefinition == nil {
		in.JobDefinition = aws.String(f.defARN)
	}
	out, err := f.batch.SubmitJob(t.Context(), in)
	if err != nil {
		t.Fatalf("submit job: %v", err)
	}
	return aws.ToString(out.JobId)
}

func (f *batchFixture) describe(t *testing.T, id string) batchtypes.JobDetail {
	t.Helper()
	out, err := f.batch.DescribeJobs(t.Context(), &batch.DescribeJobsInput{Jobs: []string{id}})
	if err != nil || len(out.Jobs) != 1 {
		t.Fatalf("describe job %s: %d jobs, %v", id, len(out.Jobs), err)
	}
	return out.Jobs[0]
}

// waitJob polls DescribeJobs until the job's status is one of want.
func (f *batchFixture) waitJob(t *testing.T, id string, want ...batchtypes.JobStatus) batchtypes.JobDetail {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j := f.describe(t, id)
		if slices.Contains(want, j.Status) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s (%s) after 10s, want %v", id, j.Status, aws.ToString(j.StatusReason), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBatchJobRunsItsEssentialContainer: a job of a two-container
// definition runs its essential container through Start, with the
// definition's and the submission's environment, Batch's variables, its
// resources and where it was placed, through every status to SUCCEEDED.
func TestBatchJobRunsItsEssentialContainer(t *testing.T) {
	f := newBatchFixture(t, nil, nil, "sh", "-c", "sleep 0.2")
	id := f.submit(t, &batch.SubmitJobInput{
		Tags: map[string]string{"cloudpipe:workflow": f.name},
		EcsPropertiesOverride: &batchtypes.EcsPropertiesOverride{TaskProperties: []batchtypes.TaskPropertiesOverride{{
			Containers: []batchtypes.TaskContainerOverrides{{
				Name: aws.String("algo"),
				Environment: []batchtypes.KeyValuePair{
					{Name: aws.String("VERSION"), Value: aws.String("override")},
					{Name: aws.String("EXTRA"), Value: aws.String("added")},
				},
			}},
		}}},
	})
	j := f.waitJob(t, id, batchtypes.JobStatusSucceeded, batchtypes.JobStatusFailed)
	if j.Status != batchtypes.JobStatusSucceeded || aws.ToString(j.StatusReason) != localecs.JobReasonExited {
		t.Errorf("job %s (%s), want SUCCEEDED (%s)", j.Status, aws.ToString(j.StatusReason), localecs.JobReasonExited)
	}
	created, started, stopped := aws.ToInt64(j.CreatedAt), aws.ToInt64(j.StartedAt), aws.ToInt64(j.StoppedAt)
	if created == 0 || started < created || stopped < started {
		t.Errorf("createdAt %d, startedAt %d, stoppedAt %d: want 0 < created <= started <= stopped (ms)", created, started, stopped)
	}
	tp := j.EcsProperties.TaskProperties
	if len(tp) != 1 || len(tp[0].Containers) != 2 || aws.ToInt32(tp[0].Containers[1].ExitCode) != 0 || tp[0].Containers[1].ExitCode == nil {
		t.Errorf("ecsProperties %+v: want the two containers, the algorithm's exit code 0", tp)
	}
	if aws.ToString(j.JobQueue) != f.qARN || aws.ToString(j.JobDefinition) != f.defARN || j.Tags["cloudpipe:workflow"] != f.name {
		t.Errorf("job queue %s, definition %s, tags %v", aws.ToString(j.JobQueue), aws.ToString(j.JobDefinition), j.Tags)
	}

	if got := f.jobs.statuses(id); !slices.Equal(got, []string{"SUBMITTED", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"}) {
		t.Errorf("OnJob statuses %v, want SUBMITTED RUNNABLE STARTING RUNNING SUCCEEDED", got)
	}
	specs := f.starts.all()
	if len(specs) != 1 {
		t.Fatalf("Start called %d times, want 1", len(specs))
	}
	s := specs[0]
	if s.Container != "algo" || s.Image != "public.ecr.aws/docker/library/alpine:3.20" ||
		!slices.Equal(s.Command, []string{"/cloudpipe/agent", "runner"}) || s.Family != f.name {
		t.Errorf("spec runs container %s image %s command %q family %s; want the algorithm's", s.Container, s.Image, s.Command, s.Family)
	}
	for k, v := range map[string]string{"VERSION": "override", "EXTRA": "added", "KEEP": "yes", "AWS_BATCH_JOB_ID": id,
		"AWS_BATCH_JQ_NAME": f.queue, "AWS_BATCH_CE_NAME": f.env} {
		if s.Environment[k] != v {
			t.Errorf("environment %s = %q, want %q", k, s.Environment[k], v)
		}
	}
	if s.Job == nil {
		t.Fatal("spec has no Job")
	}
	if js := *s.Job; js.JobID != id || js.JobQueueARN != f.qARN || js.ComputeEnvironmentARN != f.envARN || js.ComputeType != "EC2" ||
		!slices.Equal(js.InstanceTypes, []string{"g4dn.xlarge"}) || !js.Privileged ||
		js.Resources["VCPU"] != "4" || js.Resources["MEMORY"] != "16384" || js.Resources["GPU"] != "1" ||
		!strings.HasPrefix(js.InstanceID, "i-") {
		t.Errorf("job spec %+v: want the job, its queue, environment, instance types, resources, privileged", js)
	}
	if s.TaskRoleARN != "arn:aws:iam::000000000000:role/"+f.name+"-task" || s.Region != "us-east-1" {
		t.Errorf("task role %s region %s", s.TaskRoleARN, s.Region)
	}

	list, err := f.batch.ListJobs(t.Context(), &batch.ListJobsInput{JobQueue: aws.String(f.queue), JobStatus: batchtypes.JobStatusSucceeded})
	if err != nil || len(list.JobSummaryList) != 1 || aws.ToString(list.JobSummaryList[0].JobId) != id {
		t.Errorf("ListJobs SUCCEEDED: %+v %v, want the job", list, err)
	}
	list, err = f.batch.ListJobs(t.Context(), &batch.ListJobsInput{JobQueue: aws.String(f.queue)})
	if err != nil || len(list.JobSummaryList) != 0 {
		t.Errorf("ListJobs RUNNING (the default): %+v %v, want none", list, err)
	}
	list, err = f.batch.ListJobs(t.Context(), &batch.ListJobsInput{JobQueue: aws.String(f.qARN),
		Filters: []batchtypes.KeyValuesPair{{Name: aws.String("JOB_NAME"), Values: []string{strings.ToUpper(f.name) + "*"}}}})
	if err != nil || len(list.JobSummaryList) != 1 {
		t.Errorf("ListJobs JOB_NAME prefix, any status: %+v %v, want the job", list, err)
	}
}

// TestBatchJobThatFails: the job's status follows its essential
// container's exit status.
func TestBatchJobThatFails(t *testing.T) {
	f := newBatchFixture(t, nil, nil, "sh", "-c", "exit 3")
	j := f.waitJob(t, f.submit(t, &batch.SubmitJobInput{}), batchtypes.JobStatusSucceeded, batchtypes.JobStatusFailed)
	c := j.EcsProperties.TaskProperties[0].Containers[1]
	if j.Status != batchtypes.JobStatusFailed || aws.ToString(j.StatusReason) != localecs.JobReasonExited ||
		c.ExitCode == nil || *c.ExitCode != 3 || len(j.Attempts) != 1 || aws.ToInt32(j.Attempts[0].Container.ExitCode) != 3 {
		t.Errorf("job %s (%s), exit code %v, attempts %+v; want FAILED, exit code 3", j.Status, aws.ToString(j.StatusReason), c.ExitCode, j.Attempts)
	}
}

// TestBatchJobThatCannotStart: an image that cannot be pulled, or a
// process Start cannot build, fails the job before it runs, as Batch
// reports it.
func TestBatchJobThatCannotStart(t *testing.T) {
	f := newBatchFixture(t, nil, nil, "")
	j := f.waitJob(t, f.submit(t, &batch.SubmitJobInput{}), batchtypes.JobStatusSucceeded, batchtypes.JobStatusFailed)
	if j.Status != batchtypes.JobStatusFailed || aws.ToString(j.StatusReason) != localecs.JobReasonNotStarted ||
		!strings.HasPrefix(aws.ToString(j.EcsProperties.TaskProperties[0].Containers[1].Reason), "CannotStartContainerError: ") {
		t.Errorf("job %s (%s), container reason %q; want FAILED, Task failed to start, CannotStartContainerError",
			j.Status, aws.ToString(j.StatusReason), aws.ToString(j.EcsProperties.TaskProperties[0].Containers[1].Reason))
	}
	def := f.registerImage(t, f.name+"-pull", "registry.invalid/team/gpu:1", "", nil)
	j = f.waitJob(t, f.submit(t, &batch.SubmitJobInput{JobDefinition: aws.String(def)}), batchtypes.JobStatusFailed, batchtypes.JobStatusSucceeded)
	if reason := aws.ToString(j.EcsProperties.TaskProperties[0].Containers[1].Reason); j.Status != batchtypes.JobStatusFailed ||
		!strings.HasPrefix(reason, "CannotPullContainerError: ") {
		t.Errorf("job %s, container reason %q; want FAILED, CannotPullContainerError", j.Status, reason)
	}
	if n := len(f.starts.all()); n != 1 {
		t.Errorf("Start called %d times, want 1 (not for the image that cannot be pulled)", n)
	}
}

// TestBatchSubmitRefusals: Batch refuses a job for a queue or definition
// that does not exist, an inactive definition, a DISABLED queue, and a name
// outside its pattern, with ClientException.
func TestBatchSubmitRefusals(t *testing.T) {
	f := newBatchFixture(t, nil, nil, "true")
	ctx := t.Context()
	old := f.register(t, f.name+"-old", "", nil)
	if _, err := f.batch.DeregisterJobDefinition(ctx, &batch.DeregisterJobDefinitionInput{JobDefinition: aws.String(old)}); err != nil {
		t.Fatal(err)
	}
	disabled := f.name + "-off"
	f.createQueue(t, disabled, f.env)
	if _, err := f.batch.UpdateJobQueue(ctx, &batch.UpdateJobQueueInput{JobQueue: aws.String(disabled), State: batchtypes.JQStateDisabled}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		in      *batch.SubmitJobInput
		message string
	}{
		{"unknown queue", &batch.SubmitJobInput{JobQueue: aws.String(f.name + "-none")}, "JobQueue " + f.name + "-none not found."},
		{"unknown definition", &batch.SubmitJobInput{JobDefinition: aws.String(f.name + "-none")},
			"JobDefinition name " + f.name + "-none does not exist or is not in ACTIVE status."},
		{"unknown revision", &batch.SubmitJobInput{JobDefinition: aws.String(f.name + ":99")}, ""},
		{"deregistered definition", &batch.SubmitJobInput{JobDefinition: aws.String(old)}, ""},
		{"disabled queue", &batch.SubmitJobInput{JobQueue: aws.String(disabled)}, ""},
		{"bad name", &batch.SubmitJobInput{JobName: aws.String("-" + f.name)}, "Job name should match valid pattern"},
		{"container overrides", &batch.SubmitJobInput{ContainerOverrides: &batchtypes.ContainerOverrides{Command: []string{"x"}}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.in.JobName == nil {
				c.in.JobName = aws.String(f.name)
			}
			if c.in.JobQueue == nil {
				c.in.JobQueue = aws.String(f.queue)
			}
			if c.in.JobDefinition == nil {
				c.in.JobDefinition = aws.String(f.defARN)
			}
			_, err := f.batch.SubmitJob(ctx, c.in)
			var ce *batchtypes.ClientException
			if !errors.As(err, &ce) || (c.message != "" && ce.ErrorMessage() != c.message) {
				t.Errorf("err %v, want ClientException %q", err, c.message)
			}
		})
	}
	if n := len(f.proxy.Jobs()); n != 0 {
		t.Errorf("%d jobs queued, want none", n)
	}
	if n := len(f.proxy.Requests("SubmitJob")); n != len(cases) {
		t.Errorf("Requests(SubmitJob) = %d, want %d", n, len(cases))
	}
}

// TestBatchTeardownOrder: Batch deletes a queue only once it is DISABLED
// and no longer being updated, and a compute environment only once it is
// DISABLED and no queue (one being deleted included) names it; deletions
// take a while, and what is gone is no longer described. The proxy runs on
// a clock the test moves.
func TestBatchTeardownOrder(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	f := newBatchFixture(t, clock, func(o *localecs.Options) { o.BatchTransition = time.Minute }, "true")
	ctx := t.Context()
	refused := func(err error, message string) {
		t.Helper()
		var ce *batchtypes.ClientException
		if !errors.As(err, &ce) || !strings.Contains(ce.ErrorMessage(), message) {
			t.Errorf("err %v, want ClientException %q", err, message)
		}
	}
	_, err := f.batch.DeleteJobQueue(ctx, &batch.DeleteJobQueueInput{JobQueue: aws.String(f.queue)})
	refused(err, "ENABLED")
	if _, err := f.batch.UpdateJobQueue(ctx, &batch.UpdateJobQueueInput{JobQueue: aws.String(f.qARN), State: batchtypes.JQStateDisabled}); err != nil {
		t.Fatal(err)
	}
	if state, status := f.queueStatus(t, f.queue); state != batchtypes.JQStateDisabled || status != batchtypes.JQStatusUpdating {
		t.Errorf("queue after UpdateJobQueue DISABLED: %s %s, want DISABLED UPDATING", state, status)
	}
	_, err = f.batch.DeleteJobQueue(ctx, &batch.DeleteJobQueueInput{JobQueue: aws.String(f.queue)})
	refused(err, "Cannot delete, resource is being modified")
	clock.add(time.Minute)
	if _, status := f.queueStatus(t, f.queue); status != batchtypes.JQStatusValid {
		t.Errorf("queue a transition after its update: %s, want VALID", status)
	}

	if _, err := f.batch.UpdateComputeEnvironment(ctx, &batch.UpdateComputeEnvironmentInput{
		ComputeEnvironment: aws.String(f.env), State: batchtypes.CEStateDisabled}); err != nil {
		t.Fatal(err)
	}
	_, err = f.batch.DeleteComputeEnvironment(ctx, &batch.DeleteComputeEnvironmentInput{ComputeEnvironment: aws.String(f.env)})
	refused(err, "Cannot delete, resource is being modified")
	clock.add(time.Minute)
	if _, err := f.batch.DeleteJobQueue(ctx, &batch.DeleteJobQueueInput{JobQueue: aws.String(f.queue)}); err != nil {
		t.Fatalf("delete the disabled queue: %v", err)
	}
	if _, status := f.queueStatus(t, f.queue); status != batchtypes.JQStatusDeleting {
		t.Errorf("queue after DeleteJobQueue: %s, want DELETING", status)
	}
	_, err = f.batch.DeleteComputeEnvironment(ctx, &batch.DeleteComputeEnvironmentInput{ComputeEnvironment: aws.String(f.env)})
	refused(err, "Cannot delete, found existing JobQueue relationship")
	clock.add(time.Minute)
	if state, status := f.queueStatus(t, f.queue); state != "" {
		t.Errorf("queue a transition after its deletion: %s %s, want it gone", state, status)
	}
	if _, err := f.batch.DeleteComputeEnvironment(ctx, &batch.DeleteComputeEnvironmentInput{ComputeEnvironment: aws.String(f.env)}); err != nil {
		t.Fatalf("delete the disabled environment once its queue is gone: %v", err)
	}
	if _, status := f.envStatus(t, f.env); status != batchtypes.CEStatusDeleting {
		t.Errorf("environment after DeleteComputeEnvironment: %s, want DELETING", status)
	}
	clock.add(time.Minute)
	if state, status := f.envStatus(t, f.env); state != "" {
		t.Errorf("environment a transition after its deletion: %s %s, want it gone", state, status)
	}
	_, err = f.batch.DeleteComputeEnvironment(ctx, &batch.DeleteComputeEnvironmentInput{ComputeEnvironment: aws.String(f.env)})
	refused(err, "not found")
	// The name is free again in kumo, as on AWS once the deletion is done.
	f.createEnv(t, f.env, batchtypes.CEStateEnabled)

	// An ENABLED environment no queue names is still refused.
	_, err = f.batch.DeleteComputeEnvironment(ctx, &batch.DeleteComputeEnvironmentInput{ComputeEnvironment: aws.String(f.env)})
	refused(err, "ENABLED")
}

// TestBatchTags: the tags a resource was created with are listed, and
// TagResource and UntagResource change them, for compute environments,
// queues, job definitions and jobs (kumo has no tag calls).
func TestBatchTags(t *testing.T) {
	f := newBatchFixture(t, nil, nil, "true")
	ctx := t.Context()
	id := f.submit(t, &batch.SubmitJobInput{Tags: map[string]string{"cloudpipe:managed": "true"}})
	jobARN := aws.ToString(f.describe(t, id).JobArn)
	for _, arn := range []string{f.envARN, f.qARN, f.defARN, jobARN} {
		out, err := f.batch.ListTagsForResource(ctx, &batch.ListTagsForResourceInput{ResourceArn: aws.String(arn)})
		if err != nil || out.Tags["cloudpipe:managed"] != "true" {
			t.Errorf("%s: tags %v, %v; want those it was made with", arn, out, err)
			continue
		}
		if _, err := f.batch.TagResource(ctx, &batch.TagResourceInput{ResourceArn: aws.String(arn), Tags: map[string]string{"extra": "1"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.batch.UntagResource(ctx, &batch.UntagResourceInput{ResourceArn: aws.String(arn), TagKeys: []string{"cloudpipe:managed"}}); err != nil {
			t.Fatal(err)
		}
		out, err = f.batch.ListTagsForResource(ctx, &batch.ListTagsForResourceInput{ResourceArn: aws.String(arn)})
		if err != nil || len(out.Tags) != 1 || out.Tags["extra"] != "1" {
			t.Errorf("%s after tag and untag: %v, %v; want extra=1 alone", arn, out, err)
		}
	}
	desc, err := f.batch.DescribeComputeEnvironments(ctx, &batch.DescribeComputeEnvironmentsInput{ComputeEnvironments: []string{f.env}})
	if err != nil || len(desc.ComputeEnvironments) != 1 || desc.ComputeEnvironments[0].Tags["extra"] != "1" {
		t.Errorf("DescribeComputeEnvironments does not show the new tags: %+v %v", desc, err)
	}
	_, err = f.batch.ListTagsForResource(ctx, &batch.ListTagsForResourceInput{
		ResourceArn: aws.String("arn:aws:batch:us-east-1:000000000000:job-queue/" + f.name + "-none")})
	var ce *batchtypes.ClientException
	if !errors.As(err, &ce) {
		t.Errorf("tags of a queue that does not exist: %v, want ClientException", err)
	}
}

// TestInterruptJob: a lost Spot host stops the job's process and fails it
// with Batch's reason, and no exit code.
func TestInterruptJob(t *testing.T) {
	f := newBatchFixture(t, nil, nil, "sleep", "30")
	id := f.submit(t, &batch.SubmitJobInput{})
	f.waitJob(t, id, batchtypes.JobStatusRunning)
	if err := f.proxy.InterruptJob(id); err != nil {
		t.Fatal(err)
	}
	j := f.waitJob(t, id, batchtypes.JobStatusFailed, batchtypes.JobStatusSucceeded)
	snap := f.proxy.Jobs()[0]
	want := "Host EC2 (instance " + snap.InstanceID + ") terminated."
	if j.Status != batchtypes.JobStatusFailed || aws.ToString(j.StatusReason) != want || j.EcsProperties.TaskProperties[0].Containers[1].ExitCode != nil {
		t.Errorf("job %s (%s), exit code %v; want FAILED (%s), no exit code", j.Status, aws.ToString(j.StatusReason),
			j.EcsProperties.TaskProperties[0].Containers[1].ExitCode, want)
	}
	if err := syscall.Kill(snap.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists after the interruption (kill 0: %v)", snap.PID, err)
	}
	if err := f.proxy.InterruptJob(id); err == nil {
		t.Error("a second interruption of a finished job succeeded")
	}
}

// TestCancelAndTerminate: CancelJob fails a job that has not started and
// leaves a RUNNING one alone; TerminateJob stops a RUNNING one (SIGTERM).
func TestCancelAndTerminate(t *testing.T) {
	f := newBatchFixture(t, nil, nil, "sleep", "30")
	ctx := t.Context()
	// Disabled, the environment places nothing: the job waits RUNNABLE.
	if _, err := f.batch.UpdateComputeEnvironment(ctx, &batch.UpdateComputeEnvironmentInput{
		ComputeEnvironment: aws.String(f.env), State: batchtypes.CEStateDisabled}); err != nil {
		t.Fatal(err)
	}
	waiting := f.submit(t, &batch.SubmitJobInput{})
	f.waitJob(t, waiting, batchtypes.JobStatusRunnable)
	if _, err := f.batch.CancelJob(ctx, &batch.CancelJobInput{JobId: aws.String(waiting), Reason: aws.String("test cancels")}); err != nil {
		t.Fatal(err)
	}
	j := f.waitJob(t, waiting, batchtypes.JobStatusFailed)
	if aws.ToString(j.StatusReason) != "test cancels" || !aws.ToBool(j.IsCancelled) || j.StartedAt != nil {
		t.Errorf("cancelled job: reason %q, cancelled %v, started %v", aws.ToString(j.StatusReason), aws.ToBool(j.IsCancelled), j.StartedAt)
	}

	if _, err := f.batch.UpdateComputeEnvironment(ctx, &batch.UpdateComputeEnvironmentInput{
		ComputeEnvironment: aws.String(f.env), State: batchtypes.CEStateEnabled}); err != nil {
		t.Fatal(err)
	}
	running := f.submit(t, &batch.SubmitJobInput{})
	f.waitJob(t, running, batchtypes.JobStatusRunning)
	if _, err := f.batch.CancelJob(ctx, &batch.CancelJobInput{JobId: aws.String(running), Reason: aws.String("too late")}); err != nil {
		t.Fatal(err)
	}
	if j := f.describe(t, running); j.Status != batchtypes.JobStatusRunning {
		t.Errorf("CancelJob of a RUNNING job: %s, want it still RUNNING", j.Status)
	}
	if _, err := f.batch.TerminateJob(ctx, &batch.TerminateJobInput{JobId: aws.String(running), Reason: aws.String("test terminates")}); err != nil {
		t.Fatal(err)
	}
	j = f.waitJob(t, running, batchtypes.JobStatusFailed)
	code := j.EcsProperties.TaskProperties[0].Containers[1].ExitCode
	if aws.ToString(j.StatusReason) != "test terminates" || !aws.ToBool(j.IsTerminated) || code == nil || *code != 128+int32(syscall.SIGTERM) {
		t.Errorf("terminated job: reason %q, terminated %v, exit code %v; want the reason, SIGTERM's 143",
			aws.ToString(j.StatusReason), aws.ToBool(j.IsTerminated), code)
	}
}

// TestJobWaitsForAnEnvironment: a job submitted while its queue's only
// environment is DISABLED waits RUNNABLE, and runs once it is ENABLED.
func TestJobWaitsForAnEnvironment(t *testing.T) {
	f := newBatchFixture(t, nil, nil, "true")
	ctx := t.Context()
	if _, err := f.batch.UpdateComputeEnvironment(ctx, &batch.UpdateComputeEnvironmentInput{
		ComputeEnvironment: aws.String(f.envARN), State: batchtypes.CEStateDisabled}); err != nil {
		t.Fatal(err)
	}
	id := f.submit(t, &batch.SubmitJobInput{})
	f.waitJob(t, id, batchtypes.JobStatusRunnable)
	if n := len(f.starts.all()); n != 0 {
		t.Fatalf("%d processes started with the environment DISABLED", n)
	}
	if _, err := f.batch.UpdateComputeEnvironment(ctx, &batch.UpdateComputeEnvironmentInput{
		ComputeEnvironment: aws.String(f.envARN), State: batchtypes.CEStateEnabled}); err != nil {
		t.Fatal(err)
	}
	f.waitJob(t, id, batchtypes.JobStatusSucceeded)
}

// TestBatchJobDefinitions: revisions count up per name, their ARNs are in
// the region the call was signed for, DescribeJobDefinitions echoes the
// ecsProperties registered, and a deregistered revision is INACTIVE and no
// longer the one a bare name runs.
func TestBatchJobDefinitions(t *testing.T) {
	f := newBatchFixture(t, nil, nil, "true")
	ctx := t.Context()
	second := f.register(t, f.name, "", nil)
	if want := strings.TrimSuffix(f.defARN, ":1") + ":2"; second != want || !strings.HasSuffix(f.defARN, ":1") {
		t.Errorf("revisions %s, %s; want :1 then :2", f.defARN, second)
	}
	eu := batch.NewFromConfig(f.cfg, func(o *batch.Options) { o.Region = "eu-west-1" })
	out, err := eu.RegisterJobDefinition(ctx, &batch.RegisterJobDefinitionInput{
		JobDefinitionName: aws.String(f.name + "-eu"), Type: batchtypes.JobDefinitionTypeContainer,
		EcsProperties: &batchtypes.EcsProperties{TaskProperties: []batchtypes.EcsTaskProperties{{
			Containers: []batchtypes.TaskContainerProperties{{Name: aws.String("algo"), Image: aws.String("alpine")}}}}},
	})
	if err != nil || !strings.HasPrefix(aws.ToString(out.JobDefinitionArn), "arn:aws:batch:eu-west-1:000000000000:job-definition/") {
		t.Errorf("registered in eu-west-1: %v %v, want an eu-west-1 ARN", out, err)
	}

	desc, err := f.batch.DescribeJobDefinitions(ctx, &batch.DescribeJobDefinitionsInput{JobDefinitionName: aws.String(f.name)})
	if err != nil || len(desc.JobDefinitions) != 2 {
		t.Fatalf("DescribeJobDefinitions by name: %+v %v, want two revisions", desc, err)
	}
	d := desc.JobDefinitions[0]
	if d.EcsProperties == nil || len(d.EcsProperties.TaskProperties[0].Containers) != 2 ||
		aws.ToString(d.EcsProperties.TaskProperties[0].Containers[1].DependsOn[0].ContainerName) != "init" ||
		aws.ToString(d.Status) != localecs.JobDefinitionActive || d.Tags["cloudpipe:managed"] != "true" {
		t.Errorf("described definition %+v: want the registered ecsProperties, ACTIVE, its tags", d)
	}
	if _, err := f.batch.DeregisterJobDefinition(ctx, &batch.DeregisterJobDefinitionInput{JobDefinition: aws.String(second)}); err != nil {
		t.Fatal(err)
	}
	desc, err = f.batch.DescribeJobDefinitions(ctx, &batch.DescribeJobDefinitionsInput{JobDefinitions: []string{second}})
	if err != nil || len(desc.JobDefinitions) != 1 || aws.ToString(desc.JobDefinitions[0].Status) != localecs.JobDefinitionInactive {
		t.Errorf("deregistered revision: %+v %v, want INACTIVE", desc, err)
	}
	desc, err = f.batch.DescribeJobDefinitions(ctx, &batch.DescribeJobDefinitionsInput{JobDefinitionName: aws.String(f.name),
		Status: aws.String(localecs.JobDefinitionActive), MaxResults: aws.Int32(1)})
	if err != nil || len(desc.JobDefinitions) != 1 || aws.ToString(desc.JobDefinitions[0].JobDefinitionArn) != f.defARN || desc.NextToken != nil {
		t.Errorf("ACTIVE revisions: %+v %v, want the first alone", desc, err)
	}
	id := f.submit(t, &batch.SubmitJobInput{JobDefinition: aws.String(f.name)})
	if got := aws.ToString(f.describe(t, id).JobDefinition); got != f.defARN {
		t.Errorf("a bare name ran %s, want its newest active revision %s", got, f.defARN)
	}

	_, err = f.batch.RegisterJobDefinition(ctx, &batch.RegisterJobDefinitionInput{
		JobDefinitionName: aws.String(f.name), Type: batchtypes.JobDefinitionTypeContainer,
		EcsProperties: &batchtypes.EcsProperties{TaskProperties: []batchtypes.EcsTaskProperties{{
			Containers: []batchtypes.TaskContainerProperties{
				{Name: aws.String("a"), Image: aws.String("alpine"), Essential: aws.Bool(false)},
				{Name: aws.String("b"), Image: aws.String("alpine"),
					DependsOn: []batchtypes.TaskContainerDependency{{ContainerName: aws.String("c"), Condition: aws.String("COMPLETE")}}},
			}}}},
	})
	var ce *batchtypes.ClientException
	if !errors.As(err, &ce) {
		t.Errorf("a dependency on a container the task does not hold: %v, want ClientException", err)
	}
}

// TestBatchJobReadsSecretsWithItsExecutionRole: ECS reads a job's secrets
// with its execution role before the container starts: a role IAM denies
// fails the job, one it allows gets the secret into the environment.
func TestBatchJobReadsSecretsWithItsExecutionRole(t *testing.T) {
	f := newBatchFixture(t, nil, func(o *localecs.Options) { o.Authorize = testenv.AWSRules(t).Authorize }, "true")
	ctx := t.Context()
	operator := testenv.Kumo(t)
	secret, err := secretsmanager.NewFromConfig(operator).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(f.name), SecretString: aws.String(`{"token":"s3cr3t"}`)})
	if err != nil {
		t.Fatal(err)
	}
	admin := iam.NewFromConfig(operator)
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	role, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(f.name + "-exec"), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		t.Fatal(err)
	}
	policy := func(secretARN string) {
		t.Helper()
		doc := `{"Version":"2012-10-17","Statement":[` +
			`{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"` + secretARN + `"},` +
			`{"Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents"],"Resource":"arn:aws:logs:us-east-1:000000000000:log-group:/aws/batch/job:log-stream:*"}]}`
		if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: role.Role.RoleName, PolicyName: aws.String("exec"),
			PolicyDocument: aws.String(doc)}); err != nil {
			t.Fatal(err)
		}
	}
	policy(aws.ToString(secret.ARN) + "-other")
	def := f.register(t, f.name+"-secret", aws.ToString(role.Role.Arn),
		[]batchtypes.Secret{{Name: aws.String("TOKEN"), ValueFrom: aws.String(aws.ToString(secret.ARN) + ":token::")}})

	j := f.waitJob(t, f.submit(t, &batch.SubmitJobInput{JobDefinition: aws.String(def)}), batchtypes.JobStatusFailed, batchtypes.JobStatusSucceeded)
	reason := aws.ToString(j.EcsProperties.TaskProperties[0].Containers[1].Reason)
	if j.Status != batchtypes.JobStatusFailed || aws.ToString(j.StatusReason) != localecs.JobReasonNotStarted ||
		!strings.HasPrefix(reason, "ResourceInitializationError: unable to pull secrets or registry auth") ||
		!strings.Contains(reason, "secretsmanager:GetSecretValue") {
		t.Errorf("job %s (%s), container reason %q; want FAILED, ResourceInitializationError naming the secret", j.Status, aws.ToString(j.StatusReason), reason)
	}
	if n := len(f.starts.all()); n != 0 {
		t.Fatalf("%d processes started for a job whose secret could not be read, want 0", n)
	}

	policy(aws.ToString(secret.ARN))
	j = f.waitJob(t, f.submit(t, &batch.SubmitJobInput{JobDefinition: aws.String(def)}), batchtypes.JobStatusFailed, batchtypes.JobStatusSucceeded)
	if j.Status != batchtypes.JobStatusSucceeded {
		t.Errorf("with the secret allowed: %s (%s, %s)", j.Status, aws.ToString(j.StatusReason),
			aws.ToString(j.EcsProperties.TaskProperties[0].Containers[1].Reason))
	}
	specs := f.starts.all()
	if len(specs) != 1 || specs[0].Environment["TOKEN"] != "s3cr3t" || specs[0].ExecutionRoleARN != aws.ToString(role.Role.Arn) {
		t.Errorf("%d processes; want one with TOKEN from the secret's JSON key", len(specs))
	}
}

// TestStageRoleSubmitsToItsQueueOnly: through the AWS rules in front of the
// local Batch (testenv.LocalECS), a role whose policy allows SubmitJob on
// one queue and one job definition runs a job there, and is refused
// another queue; the job runs as it would for the operator.
func TestStageRoleSubmitsToItsQueueOnly(t *testing.T) {
	st, ev := &starts{}, &jobEvents{}
	cfg, p := testenv.LocalECS(t, batchOptions(st, ev, []string{"true"}))
	f := &batchFixture{proxy: p, cfg: cfg, starts: st, jobs: ev, transition: 20 * time.Millisecond}
	f.setUp(t)
	ctx := t.Context()
	other := f.name + "-other"
	f.createQueue(t, other, f.env)

	admin := iam.NewFromConfig(cfg)
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	role := f.name + "-stage"
	if _, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(role), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		t.Fatal(err)
	}
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"batch:SubmitJob","Resource":["` + f.qARN + `","` +
		strings.TrimSuffix(f.defARN, ":1") + `:*"]},{"Effect":"Allow","Action":"batch:DescribeJobs","Resource":"*"}]}`
	if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String("submit"),
		PolicyDocument: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
	stage := batch.NewFromConfig(testenv.AsRole(cfg, role))
	submit := func() batchtypes.JobDetail {
		t.Helper()
		out, err := stage.SubmitJob(ctx, &batch.SubmitJobInput{JobName: aws.String(f.name), JobQueue: aws.String(f.queue),
			JobDefinition: aws.String(strings.TrimSuffix(f.defARN, ":1"))})
		if err != nil {
			t.Fatalf("the stage role submits to its queue: %v", err)
		}
		return f.waitJob(t, aws.ToString(out.JobId), batchtypes.JobStatusSucceeded, batchtypes.JobStatusFailed)
	}
	// The job has no execution role: the container instance's role (the
	// instance profile's) writes its logs, and may not yet.
	j := submit()
	if reason := aws.ToString(j.EcsProperties.TaskProperties[0].Containers[1].Reason); j.Status != batchtypes.JobStatusFailed ||
		!strings.Contains(reason, "logs:CreateLogStream") || !strings.Contains(reason, "assumed-role/"+f.profile+"/") {
		t.Errorf("job with an instance role that may not write logs: %s, container reason %q; want FAILED naming the role and logs:CreateLogStream",
			j.Status, reason)
	}
	logs := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents"],` +
		`"Resource":"arn:aws:logs:*:*:log-group:/aws/batch/job:log-stream:*"}]}`
	if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(f.profile), PolicyName: aws.String("logs"),
		PolicyDocument: aws.String(logs)}); err != nil {
		t.Fatal(err)
	}
	if j := submit(); j.Status != batchtypes.JobStatusSucceeded {
		t.Errorf("the stage's job: %s (%s)", j.Status, aws.ToString(j.StatusReason))
	}
	_, err := stage.SubmitJob(ctx, &batch.SubmitJobInput{JobName: aws.String(f.name), JobQueue: aws.String(other),
		JobDefinition: aws.String(f.defARN)})
	var denied interface{ ErrorCode() string }
	if !errors.As(err, &denied) || denied.ErrorCode() != "AccessDeniedException" ||
		!strings.Contains(err.Error(), "batch:SubmitJob on resource: arn:aws:batch:us-east-1:000000000000:job-queue/"+other) {
		t.Errorf("the stage role submits to another queue: %v, want AccessDeniedException naming it", err)
	}
	if n := len(st.all()); n != 1 {
		t.Errorf("%d processes started, want 1", n)
	}
}
