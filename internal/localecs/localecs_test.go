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
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// starts records the TaskSpecs a proxy's Start was called with, and the
// task snapshots its OnTask was called with.
type starts struct {
	mu     sync.Mutex
	specs  []localecs.TaskSpec
	events []localecs.Task
}

func (s *starts) event(t localecs.Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, t)
}

func (s *starts) allEvents() []localecs.Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

func (s *starts) add(t localecs.TaskSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.specs = append(s.specs, t)
}

func (s *starts) all() []localecs.TaskSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.specs)
}

// fixture is a proxy in front of the test binary's kumo, with a cluster and
// a task definition registered through it.
type fixture struct {
	proxy   *localecs.Proxy
	ecs     *ecs.Client
	cfg     aws.Config
	starts  *starts
	cluster string
	family  string
	tdARN   string
}

// newFixture starts a proxy whose tasks run argv (stub processes, not the
// runner). argv[0] "" makes Start fail.
func newFixture(t *testing.T, argv ...string) *fixture {
	t.Helper()
	st := &starts{}
	p, err := localecs.Listen(localecs.Options{
		Addr:        "127.0.0.1:0",
		Upstream:    testenv.KumoURL(t),
		StopTimeout: 2 * time.Second,
		OnTask:      st.event,
		Start: func(ctx context.Context, spec localecs.TaskSpec) (*exec.Cmd, error) {
			st.add(spec)
			if argv[0] == "" {
				return nil, errors.New("no such image")
			}
			return exec.CommandContext(ctx, argv[0], argv[1:]...), nil
		},
	})
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
	f := &fixture{proxy: p, ecs: ecs.NewFromConfig(cfg), cfg: cfg, starts: st}
	name := testenv.UniqueName(t)
	f.cluster, f.family = name, name
	ctx := t.Context()
	if _, err := f.ecs.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(f.cluster)}); err != nil {
		t.Fatal(err)
	}
	f.tdARN = f.register(t, "v1")
	return f
}

// register registers a revision of the fixture's family whose algorithm
// container has VERSION=version, and returns its ARN.
func (f *fixture) register(t *testing.T, version string) string {
	t.Helper()
	return f.registerImage(t, version, "alpine:3.20")
}

// registerImage is register with the algorithm container's image.
func (f *fixture) registerImage(t *testing.T, version, image string) string {
	t.Helper()
	out, err := f.ecs.RegisterTaskDefinition(t.Context(), &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(f.family),
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		NetworkMode:             ecstypes.NetworkModeAwsvpc,
		Cpu:                     aws.String("256"),
		Memory:                  aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{
			{Name: aws.String("init"), Image: aws.String("runner:1"), Essential: aws.Bool(false)},
			{
				Name:       aws.String("algo"),
				Image:      aws.String(image),
				EntryPoint: []string{"/cloudpipe/agent", "runner"},
				Environment: []ecstypes.KeyValuePair{
					{Name: aws.String("VERSION"), Value: aws.String(version)},
					{Name: aws.String("KEEP"), Value: aws.String("yes")},
				},
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.TaskDefinition.TaskDefinitionArn)
}

func (f *fixture) runTask(t *testing.T, in *ecs.RunTaskInput) *ecs.RunTaskOutput {
	t.Helper()
	if in.Cluster == nil {
		in.Cluster = aws.String(f.cluster)
	}
	if in.TaskDefinition == nil {
		in.TaskDefinition = aws.String(f.tdARN)
	}
	out, err := f.ecs.RunTask(t.Context(), in)
	if err != nil {
		t.Fatalf("run task: %v", err)
	}
	return out
}

func (f *fixture) listTasks(t *testing.T, desired ecstypes.DesiredStatus) []string {
	t.Helper()
	out, err := f.ecs.ListTasks(t.Context(), &ecs.ListTasksInput{
		Cluster: aws.String(f.cluster), Family: aws.String(f.family), DesiredStatus: desired,
	})
	if err != nil {
		t.Fatalf("list tasks: %v", err)
	}
	slices.Sort(out.TaskArns)
	return out.TaskArns
}

// waitStopped polls DescribeTasks until every task in arns is STOPPED.
func (f *fixture) waitStopped(t *testing.T, arns []string) []ecstypes.Task {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := f.ecs.DescribeTasks(t.Context(), &ecs.DescribeTasksInput{Cluster: aws.String(f.cluster), Tasks: arns})
		if err != nil {
			t.Fatalf("describe tasks: %v", err)
		}
		stopped := 0
		for _, task := range out.Tasks {
			if aws.ToString(task.LastStatus) == localecs.StatusStopped {
				stopped++
			}
		}
		if stopped == len(arns) {
			return out.Tasks
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks not stopped after 10s: %d of %d", stopped, len(arns))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func taskARNs(tasks []ecstypes.Task) []string {
	var arns []string
	for _, task := range tasks {
		arns = append(arns, aws.ToString(task.TaskArn))
	}
	slices.Sort(arns)
	return arns
}

func TestRunTaskStartsOneProcessPerTask(t *testing.T) {
	f := newFixture(t, "sh", "-c", "sleep 0.3")
	out := f.runTask(t, &ecs.RunTaskInput{
		Count:      aws.Int32(3),
		LaunchType: ecstypes.LaunchTypeFargate,
		StartedBy:  aws.String("cloudpipe"),
		Overrides: &ecstypes.TaskOverride{ContainerOverrides: []ecstypes.ContainerOverride{{
			Name:        aws.String("algo"),
			Environment: []ecstypes.KeyValuePair{{Name: aws.String("VERSION"), Value: aws.String("override")}},
		}}},
	})
	if len(out.Tasks) != 3 || len(out.Failures) != 0 {
		t.Fatalf("RunTask gave %d tasks and %d failures, want 3 and 0", len(out.Tasks), len(out.Failures))
	}
	arns := taskARNs(out.Tasks)
	for _, task := range out.Tasks {
		if got := aws.ToString(task.LastStatus); got != localecs.StatusRunning {
			t.Errorf("task %s: last status %s, want RUNNING", aws.ToString(task.TaskArn), got)
		}
	}

	specs := f.starts.all()
	if len(specs) != 3 {
		t.Fatalf("Start called %d times, want 3", len(specs))
	}
	for _, s := range specs {
		// The essential container runs, with the task definition's
		// environment and RunTask's override on top.
		if s.Container != "algo" || s.Image != "alpine:3.20" || s.Family != f.family || s.Revision == 0 {
			t.Errorf("spec %+v: want container algo, image alpine:3.20, family %s", s, f.family)
		}
		if s.Environment["VERSION"] != "override" || s.Environment["KEEP"] != "yes" {
			t.Errorf("environment %v: want VERSION=override KEEP=yes", s.Environment)
		}
		if !slices.Equal(s.EntryPoint, []string{"/cloudpipe/agent", "runner"}) {
			t.Errorf("entry point %q", s.EntryPoint)
		}
		if s.StartedBy != "cloudpipe" || !slices.Contains(arns, s.TaskARN) {
			t.Errorf("spec names task %s started by %q, want one of %v by cloudpipe", s.TaskARN, s.StartedBy, arns)
		}
	}

	if got := f.listTasks(t, ecstypes.DesiredStatusRunning); !slices.Equal(got, arns) {
		t.Errorf("ListTasks RUNNING = %v, want %v", got, arns)
	}
	for _, task := range f.waitStopped(t, arns) {
		c := task.Containers[0]
		if aws.ToInt32(c.ExitCode) != 0 || string(task.StopCode) != string(ecstypes.TaskStopCodeEssentialContainerExited) {
			t.Errorf("task %s stopped with exit code %d, stop code %s; want 0, EssentialContainerExited",
				aws.ToString(task.TaskArn), aws.ToInt32(c.ExitCode), string(task.StopCode))
		}
	}
	if got := f.listTasks(t, ecstypes.DesiredStatusRunning); len(got) != 0 {
		t.Errorf("ListTasks RUNNING after exit = %v, want none", got)
	}
	if got := f.listTasks(t, ecstypes.DesiredStatusStopped); !slices.Equal(got, arns) {
		t.Errorf("ListTasks STOPPED = %v, want %v", got, arns)
	}
}

func TestRunTaskHonoursClientToken(t *testing.T) {
	f := newFixture(t, "sh", "-c", "exit 3")
	in := func() *ecs.RunTaskInput {
		return &ecs.RunTaskInput{Count: aws.Int32(2), ClientToken: aws.String("token-" + f.family)}
	}
	first := f.runTask(t, in())
	second := f.runTask(t, in())
	if got, want := taskARNs(second.Tasks), taskARNs(first.Tasks); !slices.Equal(got, want) || len(want) != 2 {
		t.Errorf("second RunTask gave tasks %v, want the first call's %v", got, want)
	}
	if n := len(f.starts.all()); n != 2 {
		t.Errorf("%d processes started, want 2 (the repeated token starts none)", n)
	}
	var tokens []string
	for _, r := range f.proxy.Requests("RunTask") {
		if r.ClientToken == "token-"+f.family {
			tokens = append(tokens, r.ClientToken)
		}
	}
	if len(tokens) != 2 {
		t.Errorf("Requests(RunTask) holds the token %d times, want 2", len(tokens))
	}

	// Once stopped, a repeat still answers with the same (now stopped)
	// tasks and starts nothing.
	f.waitStopped(t, taskARNs(first.Tasks))
	third := f.runTask(t, in())
	for _, task := range third.Tasks {
		if aws.ToString(task.LastStatus) != localecs.StatusStopped || aws.ToInt32(task.Containers[0].ExitCode) != 3 {
			t.Errorf("repeat after exit: task %s %s exit %d, want STOPPED exit 3",
				aws.ToString(task.TaskArn), aws.ToString(task.LastStatus), aws.ToInt32(task.Containers[0].ExitCode))
		}
	}

	// The same token with other parameters is a conflict naming the tasks.
	other := in()
	other.Count = aws.Int32(1)
	_, err := f.ecs.RunTask(t.Context(), &ecs.RunTaskInput{
		Cluster: aws.String(f.cluster), TaskDefinition: aws.String(f.tdARN),
		Count: other.Count, ClientToken: other.ClientToken,
	})
	var conflict *ecstypes.ConflictException
	if !errors.As(err, &conflict) {
		t.Fatalf("reused token with other parameters: err %v, want ConflictException", err)
	}
	if got := slices.Sorted(slices.Values(conflict.ResourceIds)); !slices.Equal(got, taskARNs(first.Tasks)) {
		t.Errorf("conflict names %v, want %v", got, taskARNs(first.Tasks))
	}
	if n := len(f.starts.all()); n != 2 {
		t.Errorf("%d processes started in all, want 2", n)
	}
}

func TestStopTaskSignalsTheProcess(t *testing.T) {
	f := newFixture(t, "sleep", "30")
	out := f.runTask(t, &ecs.RunTaskInput{})
	arn := aws.ToString(out.Tasks[0].TaskArn)
	stop, err := f.ecs.StopTask(t.Context(), &ecs.StopTaskInput{
		Cluster: aws.String(f.cluster), Task: aws.String(arn), Reason: aws.String("test says stop"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(stop.Task.DesiredStatus); got != localecs.StatusStopped {
		t.Errorf("StopTask: desired status %s, want STOPPED", got)
	}
	if got := f.listTasks(t, ecstypes.DesiredStatusRunning); len(got) != 0 {
		t.Errorf("ListTasks RUNNING after StopTask = %v, want none", got)
	}
	task := f.waitStopped(t, []string{arn})[0]
	if code := aws.ToInt32(task.Containers[0].ExitCode); code != 128+int32(syscall.SIGTERM) {
		t.Errorf("exit code %d, want %d (SIGTERM)", code, 128+int32(syscall.SIGTERM))
	}
	if string(task.StopCode) != localecs.StopUserInitiated || aws.ToString(task.StoppedReason) != "test says stop" {
		t.Errorf("stop code %s reason %q, want UserInitiated, the given reason", string(task.StopCode), aws.ToString(task.StoppedReason))
	}
	// A task ID works as well as the ARN, as in ECS.
	desc, err := f.ecs.DescribeTasks(t.Context(), &ecs.DescribeTasksInput{
		Cluster: aws.String(f.cluster), Tasks: []string{f.proxy.Tasks()[0].TaskID, "no-such-task"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Tasks) != 1 || len(desc.Failures) != 1 || aws.ToString(desc.Failures[0].Reason) != "MISSING" {
		t.Errorf("DescribeTasks by ID and a missing one: %d tasks, failures %+v", len(desc.Tasks), desc.Failures)
	}
}

func TestRunTaskRefusals(t *testing.T) {
	f := newFixture(t, "true")
	ctx := t.Context()
	cases := []struct {
		name string
		in   *ecs.RunTaskInput
		code string
	}{
		{"unknown task definition", &ecs.RunTaskInput{Cluster: aws.String(f.cluster), TaskDefinition: aws.String(f.family + "-none:1")}, "ClientException"},
		{"unknown cluster", &ecs.RunTaskInput{Cluster: aws.String(f.cluster + "-none"), TaskDefinition: aws.String(f.tdARN)}, "ClusterNotFoundException"},
		{"count above 10", &ecs.RunTaskInput{Cluster: aws.String(f.cluster), TaskDefinition: aws.String(f.tdARN), Count: aws.Int32(11)}, "InvalidParameterException"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.ecs.RunTask(ctx, c.in)
			var code interface{ ErrorCode() string }
			if !errors.As(err, &code) || code.ErrorCode() != c.code {
				t.Errorf("err %v, want %s", err, c.code)
			}
		})
	}
	if n := len(f.starts.all()); n != 0 {
		t.Errorf("%d processes started, want none", n)
	}
}

func TestRunTaskResolvesRevisions(t *testing.T) {
	f := newFixture(t, "true")
	v2 := f.register(t, "v2")
	// A family alone names its newest active revision.
	out := f.runTask(t, &ecs.RunTaskInput{TaskDefinition: aws.String(f.family)})
	if got := aws.ToString(out.Tasks[0].TaskDefinitionArn); got != v2 {
		t.Errorf("family ran %s, want %s", got, v2)
	}
	if _, err := f.ecs.DeregisterTaskDefinition(t.Context(), &ecs.DeregisterTaskDefinitionInput{TaskDefinition: aws.String(v2)}); err != nil {
		t.Fatal(err)
	}
	_, err := f.ecs.RunTask(t.Context(), &ecs.RunTaskInput{Cluster: aws.String(f.cluster), TaskDefinition: aws.String(v2)})
	var ce *ecstypes.ClientException
	if !errors.As(err, &ce) {
		t.Errorf("inactive revision: err %v, want ClientException", err)
	}
	out = f.runTask(t, &ecs.RunTaskInput{TaskDefinition: aws.String(f.family)})
	if got := aws.ToString(out.Tasks[0].TaskDefinitionArn); got != f.tdARN {
		t.Errorf("family after deregistering v2 ran %s, want %s", got, f.tdARN)
	}
	var versions []string
	for _, s := range f.starts.all() {
		versions = append(versions, s.Environment["VERSION"])
	}
	if !slices.Equal(versions, []string{"v2", "v1"}) {
		t.Errorf("tasks ran with VERSION %v, want [v2 v1]", versions)
	}
}

func TestOnTaskReportsStartBeforeStop(t *testing.T) {
	f := newFixture(t, "true") // exits at once
	out := f.runTask(t, &ecs.RunTaskInput{Count: aws.Int32(5)})
	arns := taskARNs(out.Tasks)
	f.waitStopped(t, arns)
	_ = f.proxy.Close() // waits for the stop reports
	byTask := map[string][]string{}
	for _, ev := range f.starts.allEvents() {
		byTask[ev.TaskARN] = append(byTask[ev.TaskARN], ev.LastStatus)
	}
	for _, arn := range arns {
		if got := byTask[arn]; !slices.Equal(got, []string{localecs.StatusRunning, localecs.StatusStopped}) {
			t.Errorf("task %s reported %v, want [RUNNING STOPPED]", arn, got)
		}
	}
}

func TestTaskThatCannotStartIsStopped(t *testing.T) {
	f := newFixture(t, "")
	out := f.runTask(t, &ecs.RunTaskInput{})
	if len(out.Tasks) != 1 {
		t.Fatalf("%d tasks, want 1", len(out.Tasks))
	}
	task := out.Tasks[0]
	if aws.ToString(task.LastStatus) != localecs.StatusStopped || string(task.StopCode) != localecs.StopTaskFailedToStart {
		t.Errorf("task %s stop code %s, want STOPPED TaskFailedToStart", aws.ToString(task.LastStatus), string(task.StopCode))
	}
}

// TestImageThatCannotBePulled: an image under the reserved ".invalid" TLD
// stops its task before anything starts, with ECS's stop code and reason,
// visible in DescribeTasks.
func TestImageThatCannotBePulled(t *testing.T) {
	f := newFixture(t, "true")
	td := f.registerImage(t, "v1", "registry.invalid/team/sorter:1")
	out := f.runTask(t, &ecs.RunTaskInput{TaskDefinition: aws.String(td)})
	if len(out.Tasks) != 1 {
		t.Fatalf("%d tasks, want 1", len(out.Tasks))
	}
	desc, err := f.ecs.DescribeTasks(t.Context(), &ecs.DescribeTasksInput{
		Cluster: aws.String(f.cluster), Tasks: []string{aws.ToString(out.Tasks[0].TaskArn)}})
	if err != nil || len(desc.Tasks) != 1 {
		t.Fatalf("DescribeTasks: %v %v", desc, err)
	}
	task := desc.Tasks[0]
	if aws.ToString(task.LastStatus) != localecs.StatusStopped || string(task.StopCode) != localecs.StopTaskFailedToStart ||
		!strings.HasPrefix(aws.ToString(task.StoppedReason), "CannotPullContainerError: ") ||
		!strings.Contains(aws.ToString(task.StoppedReason), "registry.invalid/team/sorter:1") {
		t.Errorf("task %s, stop code %s, reason %q; want STOPPED, TaskFailedToStart, CannotPullContainerError naming the image",
			aws.ToString(task.LastStatus), string(task.StopCode), aws.ToString(task.StoppedReason))
	}
	if n := len(f.starts.all()); n != 0 {
		t.Errorf("%d processes started for an image that cannot be pulled, want 0", n)
	}
	// A pullable image with a registry host still starts.
	ok := f.runTask(t, &ecs.RunTaskInput{TaskDefinition: aws.String(f.registerImage(t, "v2", "public.ecr.aws/docker/library/alpine:3.20"))})
	f.waitStopped(t, taskARNs(ok.Tasks))
	if n := len(f.starts.all()); n != 1 {
		t.Errorf("%d processes started for a pullable image, want 1", n)
	}
}

func TestCloseStopsEveryTask(t *testing.T) {
	f := newFixture(t, "sleep", "30")
	f.runTask(t, &ecs.RunTaskInput{Count: aws.Int32(2)})
	start := time.Now()
	if err := f.proxy.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v; sleep ignores no SIGTERM, so it should be quick", d)
	}
	for _, task := range f.proxy.Tasks() {
		if task.LastStatus != localecs.StatusStopped {
			t.Errorf("task %s is %s after Close", task.TaskARN, task.LastStatus)
		}
		if err := syscall.Kill(task.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Close (kill 0: %v)", task.PID, err)
		}
	}
}

func TestOtherCallsAreForwarded(t *testing.T) {
	f := newFixture(t, "true")
	ctx := t.Context()
	bucket := f.family + "-bucket"
	proxied := s3.NewFromConfig(f.cfg, testenv.S3PathStyle)
	if _, err := proxied.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	direct := s3.NewFromConfig(testenv.Kumo(t), testenv.S3PathStyle)
	if _, err := direct.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Errorf("bucket created through the proxy is not in kumo: %v", err)
	}
	if _, err := sqs.NewFromConfig(f.cfg).CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(f.family)}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.proxy.Requests("CreateQueue")); n != 1 {
		t.Errorf("Requests(CreateQueue) = %d, want 1", n)
	}
	if n := len(f.proxy.Requests("CreateCluster")); n != 1 {
		t.Errorf("Requests(CreateCluster) = %d, want 1", n)
	}
}

// TestExecutionRoleThatCannotReadASecret: ECS reads a task's secrets with
// its execution role before the container starts; a role IAM denies stops
// the task with ResourceInitializationError, and once the role may read
// the secret the task starts. The decision is IAM's, through the AWS-rules
// layer, on the role as created in kumo.
func TestExecutionRoleThatCannotReadASecret(t *testing.T) {
	ctx := t.Context()
	p, st := authorizingProxy(t)
	operator := testenv.Kumo(t)
	name := testenv.UniqueName(t)
	secret, err := secretsmanager.NewFromConfig(operator).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(name), SecretString: aws.String(`{"password":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	admin := iam.NewFromConfig(operator)
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	role, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name + "-exec"), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		t.Fatal(err)
	}
	policy := func(resource string) {
		t.Helper()
		doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"` + resource + `"}]}`
		if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: role.Role.RoleName, PolicyName: aws.String("exec"),
			PolicyDocument: aws.String(doc)}); err != nil {
			t.Fatal(err)
		}
	}
	policy(aws.ToString(secret.ARN) + "-other") // not this secret

	cfg := operator.Copy()
	cfg.BaseEndpoint = aws.String(p.URL())
	client := ecs.NewFromConfig(cfg)
	if _, err := client.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	td, err := client.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(name), ExecutionRoleArn: role.Role.Arn,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		NetworkMode:             ecstypes.NetworkModeAwsvpc, Cpu: aws.String("256"), Memory: aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("algo"), Image: aws.String("alpine:3.20"),
			Secrets: []ecstypes.Secret{{Name: aws.String("DB_PASSWORD"), ValueFrom: aws.String(aws.ToString(secret.ARN) + ":password::")}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func() ecstypes.Task {
		t.Helper()
		out, err := client.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(name), TaskDefinition: td.TaskDefinition.TaskDefinitionArn})
		if err != nil || len(out.Tasks) != 1 {
			t.Fatalf("RunTask: %v %v", out, err)
		}
		desc, err := client.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(name), Tasks: []string{aws.ToString(out.Tasks[0].TaskArn)}})
		if err != nil || len(desc.Tasks) != 1 {
			t.Fatalf("DescribeTasks: %v %v", desc, err)
		}
		return desc.Tasks[0]
	}
	denied := run()
	reason := aws.ToString(denied.StoppedReason)
	if aws.ToString(denied.LastStatus) != localecs.StatusStopped || string(denied.StopCode) != localecs.StopTaskFailedToStart ||
		!strings.HasPrefix(reason, "ResourceInitializationError: unable to pull secrets or registry auth") ||
		!strings.Contains(reason, "secretsmanager:GetSecretValue on resource: "+aws.ToString(secret.ARN)) {
		t.Errorf("task %s, stop code %s, reason %q; want STOPPED, TaskFailedToStart, ResourceInitializationError naming the secret",
			aws.ToString(denied.LastStatus), denied.StopCode, reason)
	}
	if n := len(st.all()); n != 0 {
		t.Errorf("%d processes started for a task whose secret could not be read, want 0", n)
	}

	policy(aws.ToString(secret.ARN))
	if started := run(); aws.ToString(started.StoppedReason) != "" && string(started.StopCode) == localecs.StopTaskFailedToStart {
		t.Errorf("with the secret allowed the task still failed to start: %s", aws.ToString(started.StoppedReason))
	}
	specs := st.all()
	if len(specs) != 1 {
		t.Fatalf("%d processes started once the role may read the secret, want 1", len(specs))
	}
	// ECS puts the secret's JSON key in the container's environment.
	if got := specs[0].Environment["DB_PASSWORD"]; got != "x" {
		t.Errorf("DB_PASSWORD = %q in the task's environment, want the secret's password field", got)
	}
}

// TestRunTaskRecordsItsRegion: a task runs in the region of the endpoint
// RunTask was called at, its signing region, whatever kumo's ARNs say.
func TestRunTaskRecordsItsRegion(t *testing.T) {
	f := newFixture(t, "true")
	for _, region := range []string{"us-east-1", "eu-west-1"} {
		client := ecs.NewFromConfig(f.cfg, func(o *ecs.Options) { o.Region = region })
		out, err := client.RunTask(t.Context(), &ecs.RunTaskInput{Cluster: aws.String(f.cluster), TaskDefinition: aws.String(f.tdARN)})
		if err != nil || len(out.Tasks) != 1 {
			t.Fatalf("RunTask signed in %s: %v %v", region, out, err)
		}
		specs := f.starts.all()
		if got := specs[len(specs)-1]; got.Region != region || got.TaskARN != aws.ToString(out.Tasks[0].TaskArn) {
			t.Errorf("RunTask signed in %s started task %s in region %q, want task %s in %s",
				region, got.TaskARN, got.Region, aws.ToString(out.Tasks[0].TaskArn), region)
		}
	}
}

// TestExecutionRoleWritesLogsInTheTaskRegion: ECS creates a task's awslogs
// stream in the task's region, so an execution role allowed to write the
// log group's streams of eu-west-1 only starts a task run in eu-west-1 and
// not one run in us-east-1 (kumo's task definition ARN says us-east-1 for
// both).
func TestExecutionRoleWritesLogsInTheTaskRegion(t *testing.T) {
	ctx := t.Context()
	p, _ := authorizingProxy(t)
	operator := testenv.Kumo(t)
	name := testenv.UniqueName(t)
	group := "/cp/" + name
	admin := iam.NewFromConfig(operator)
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	role, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name + "-exec"), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents"],` +
		`"Resource":"arn:aws:logs:eu-west-1:000000000000:log-group:` + group + `:log-stream:*"}]}`
	if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: role.Role.RoleName, PolicyName: aws.String("exec"),
		PolicyDocument: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
	cfg := operator.Copy()
	cfg.BaseEndpoint = aws.String(p.URL())
	client := ecs.NewFromConfig(cfg)
	if _, err := client.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	td, err := client.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(name), ExecutionRoleArn: role.Role.Arn,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		NetworkMode:             ecstypes.NetworkModeAwsvpc, Cpu: aws.String("256"), Memory: aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("algo"), Image: aws.String("alpine:3.20"),
			LogConfiguration: &ecstypes.LogConfiguration{LogDriver: ecstypes.LogDriverAwslogs, Options: map[string]string{
				"awslogs-group": group, "awslogs-stream-prefix": "cp",
			}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		region  string
		started bool
	}{
		{"eu-west-1", true},
		{"us-east-1", false},
	} {
		c := ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.Region = tc.region })
		out, err := c.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(name), TaskDefinition: td.TaskDefinition.TaskDefinitionArn})
		if err != nil || len(out.Tasks) != 1 {
			t.Fatalf("RunTask in %s: %v %v", tc.region, out, err)
		}
		task := out.Tasks[0]
		failed := string(task.StopCode) == localecs.StopTaskFailedToStart
		if failed == tc.started ||
			failed && !strings.Contains(aws.ToString(task.StoppedReason), "ResourceInitializationError: failed to validate logger args") {
			t.Errorf("RunTask in %s: stop code %q, reason %q; want started %v (the role may write logs in eu-west-1 only)",
				tc.region, task.StopCode, aws.ToString(task.StoppedReason), tc.started)
		}
	}
}

// authorizingProxy is a local ECS whose tasks run "true", whose roles'
// trust policies are evaluated and whose execution roles are authorized by
// IAM, through the test binary's AWS rules; it returns the proxy and the
// record of the tasks it started.
func authorizingProxy(t *testing.T) (*localecs.Proxy, *starts) {
	t.Helper()
	st := &starts{}
	p, err := localecs.Listen(localecs.Options{
		Addr: "127.0.0.1:0", Upstream: testenv.KumoURL(t), StopTimeout: 2 * time.Second, OnTask: st.event,
		Start: func(ctx context.Context, spec localecs.TaskSpec) (*exec.Cmd, error) {
			st.add(spec)
			return exec.CommandContext(ctx, "true"), nil
		},
		Authorize:  testenv.AWSRules(t).Authorize,
		AssumeRole: testenv.AWSRules(t).AssumeRole,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, st
}

// TestTaskRoleTrustOfAnotherAccountIsRefused: a task role whose trust
// policy admits ECS tasks of another account (aws:SourceAccount) cannot be
// assumed for a task of this one: the task stops before it starts, with
// ECS's reason. Once the trust names this account, the task starts.
func TestTaskRoleTrustOfAnotherAccountIsRefused(t *testing.T) {
	ctx := t.Context()
	p, st := authorizingProxy(t)
	operator := testenv.Kumo(t)
	name := testenv.UniqueName(t)
	admin := iam.NewFromConfig(operator)
	trust := func(account string) string {
		return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole",` +
			`"Condition":{"StringEquals":{"aws:SourceAccount":"` + account + `"},"ArnLike":{"aws:SourceArn":"arn:aws:ecs:us-east-1:` + account + `:*"}}}]}`
	}
	role, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name + "-task"), AssumeRolePolicyDocument: aws.String(trust("111122223333"))})
	if err != nil {
		t.Fatal(err)
	}
	cfg := operator.Copy()
	cfg.BaseEndpoint = aws.String(p.URL())
	client := ecs.NewFromConfig(cfg)
	if _, err := client.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	td, err := client.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(name), TaskRoleArn: role.Role.Arn,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		NetworkMode:             ecstypes.NetworkModeAwsvpc, Cpu: aws.String("256"), Memory: aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("algo"), Image: aws.String("alpine:3.20")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func() ecstypes.Task {
		t.Helper()
		out, err := client.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(name), TaskDefinition: td.TaskDefinition.TaskDefinitionArn})
		if err != nil || len(out.Tasks) != 1 {
			t.Fatalf("RunTask: %v %v", out, err)
		}
		return out.Tasks[0]
	}
	refused := run()
	reason := aws.ToString(refused.StoppedReason)
	if aws.ToString(refused.LastStatus) != localecs.StatusStopped || string(refused.StopCode) != localecs.StopTaskFailedToStart ||
		!strings.HasPrefix(reason, "ECS was unable to assume the role '"+aws.ToString(role.Role.Arn)+"'") ||
		!strings.Contains(reason, "aws:SourceAccount="+testenv.Account) {
		t.Errorf("task %s, stop code %s, reason %q; want STOPPED, TaskFailedToStart, ECS unable to assume the role with this account",
			aws.ToString(refused.LastStatus), refused.StopCode, reason)
	}
	if n := len(st.all()); n != 0 {
		t.Errorf("%d processes started for a task whose role could not be assumed, want 0", n)
	}

	if _, err := admin.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: role.Role.RoleName, PolicyDocument: aws.String(trust(testenv.Account))}); err != nil {
		t.Fatal(err)
	}
	if started := run(); string(started.StopCode) == localecs.StopTaskFailedToStart {
		t.Errorf("with the trust naming this account the task still failed to start: %s", aws.ToString(started.StoppedReason))
	}
	if n := len(st.all()); n != 1 {
		t.Errorf("%d processes started once the role could be assumed, want 1", n)
	}
}
