package localecs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Job statuses, as Batch names them. A job here goes SUBMITTED, RUNNABLE
// (until its queue can place it), STARTING (its roles and image are
// checked), RUNNING (its process runs), then SUCCEEDED or FAILED.
// https://docs.aws.amazon.com/batch/latest/userguide/job_states.html
const (
	JobSubmitted = "SUBMITTED"
	JobRunnable  = "RUNNABLE"
	JobStarting  = "STARTING"
	JobRunning   = "RUNNING"
	JobSucceeded = "SUCCEEDED"
	JobFailed    = "FAILED"
)

// Status reasons Batch gives.
const (
	// JobReasonExited is the reason of a job whose essential container
	// exited, with status 0 (SUCCEEDED) or not (FAILED).
	JobReasonExited = "Essential container in task exited"
	// JobReasonNotStarted is the reason of a job whose container could not
	// start; the container's reason says why (CannotPullContainerError,
	// ResourceInitializationError...).
	JobReasonNotStarted = "Task failed to start"
	// JobReasonTimeout is the reason of a job that ran past its
	// attemptDurationSeconds.
	// https://docs.aws.amazon.com/batch/latest/userguide/job_timeouts.html
	JobReasonTimeout = "Job attempt duration exceeded timeout"
)

// JobSpec is what identifies a job and where it runs.
type JobSpec struct {
	JobID, JobARN, JobName string
	JobQueueARN            string
	JobDefinitionARN       string
	// ComputeEnvironmentARN is the compute environment the job was placed
	// in, ComputeType its capacity (EC2, SPOT...) and InstanceTypes what it
	// would launch: empty while the job is RUNNABLE.
	ComputeEnvironmentARN string
	ComputeType           string
	InstanceTypes         []string
	// InstanceID is the (made-up) EC2 instance the job runs on, as a Spot
	// interruption names it.
	InstanceID string
	// Resources are the run container's resource requirements by type, as
	// Batch names them: VCPU (vCPUs), MEMORY (MiB), GPU.
	Resources  map[string]string
	Privileged bool
	Tags       map[string]string
}

// Job is a snapshot of one job the proxy runs.
type Job struct {
	JobSpec
	Status       string
	StatusReason string
	IsCancelled  bool // cancelled before it started
	IsTerminated bool // stopped by TerminateJob (or its queue's deletion)
	// ExitCode is the run container's exit status (128+signal for a
	// signal); nil until it exited, and for a job whose host was lost.
	ExitCode *int
	// ContainerReason is why the run container did not start, as ECS says
	// it.
	ContainerReason                 string
	CreatedAt, StartedAt, StoppedAt time.Time
	TaskARN                         string
	PID                             int
}

// stopKind is why a job is being stopped.
type stopKind int

const (
	stopNone stopKind = iota
	stopCancelled
	stopTerminated
	stopInterrupted
	stopTimedOut
	stopClosed
)

// job is the proxy's record of a job; its fields are guarded by Proxy.mu.
type job struct {
	Job
	queue      string // the queue's name
	region     string // where it was submitted, and runs
	def        *jobDef
	containers []batchContainer // the definition's, with the submission's overrides
	timeout    time.Duration
	ctx        context.Context
	cancel     context.CancelFunc // ends the wait for placement, or the process
	stop       stopKind
	stopReason string
	// attempt is what the job's one run left, once it started.
	attempt *attemptDetail
}

func (j *job) snapshot() Job {
	s := j.Job
	s.InstanceTypes = slices.Clone(j.InstanceTypes)
	s.Resources = maps.Clone(j.Resources)
	s.Tags = maps.Clone(j.Tags)
	if j.ExitCode != nil {
		c := *j.ExitCode
		s.ExitCode = &c
	}
	return s
}

func (j *job) finished() bool { return j.Status == JobSucceeded || j.Status == JobFailed }

// Jobs returns a snapshot of the jobs the proxy knows, oldest first:
// unfinished ones and those finished within StoppedRetention.
func (p *Proxy) Jobs() []Job {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Job, 0, len(p.jobOrder))
	for _, id := range p.jobOrder {
		out = append(out, p.jobs[id].snapshot())
	}
	return out
}

// jobName is the pattern of a job name: "It can be up to 128 letters long.
// The first character must be alphanumeric, can contain uppercase and
// lowercase letters, numbers, hyphens (-), and underscores (_)."
// https://docs.aws.amazon.com/batch/latest/APIReference/API_SubmitJob.html
var jobName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

type submitJobInput struct {
	JobName               string          `json:"jobName"`
	JobQueue              string          `json:"jobQueue"`
	JobDefinition         string          `json:"jobDefinition"`
	ContainerOverrides    json.RawMessage `json:"containerOverrides"`
	EcsPropertiesOverride *struct {
		TaskProperties []struct {
			Containers []struct {
				Name                 string                `json:"name"`
				Command              []string              `json:"command"`
				Environment          []keyValue            `json:"environment"`
				ResourceRequirements []resourceRequirement `json:"resourceRequirements"`
			} `json:"containers"`
		} `json:"taskProperties"`
	} `json:"ecsPropertiesOverride"`
	Tags            map[string]string `json:"tags"`
	ShareIdentifier string            `json:"shareIdentifier"`
	Timeout         *struct {
		AttemptDurationSeconds int `json:"attemptDurationSeconds"`
	} `json:"timeout"`
	RetryStrategy *struct {
		Attempts int `json:"attempts"`
	} `json:"retryStrategy"`
	DependsOn             []json.RawMessage `json:"dependsOn"`
	ArrayProperties       json.RawMessage   `json:"arrayProperties"`
	NodeOverrides         json.RawMessage   `json:"nodeOverrides"`
	EksPropertiesOverride json.RawMessage   `json:"eksPropertiesOverride"`
	Parameters            map[string]string `json:"parameters"`
}

// check refuses what Batch refuses of a submission on its face, and what
// the proxy does not play.
func (in submitJobInput) check() error {
	switch {
	case !jobName.MatchString(in.JobName):
		// Batch's message (its pattern is above).
		return clientException("Job name should match valid pattern")
	case in.JobQueue == "":
		return clientException("jobQueue is required")
	case in.JobDefinition == "":
		return clientException("jobDefinition is required")
	case len(in.ContainerOverrides) > 0 && string(in.ContainerOverrides) != "null":
		return clientException("containerOverrides can't be used with a job definition that has ecsProperties: use ecsPropertiesOverride")
	case in.ShareIdentifier != "":
		// A share identifier needs a queue with a fair-share scheduling
		// policy, which the proxy does not play.
		return clientException("shareIdentifier can't be specified for a job queue without a fair-share scheduling policy")
	case in.Timeout != nil && in.Timeout.AttemptDurationSeconds != 0 && in.Timeout.AttemptDurationSeconds < 60:
		return clientException("timeout.attemptDurationSeconds must be at least 60")
	case in.RetryStrategy != nil && in.RetryStrategy.Attempts > 1,
		len(in.DependsOn) > 0, len(in.ArrayProperties) > 0, len(in.NodeOverrides) > 0,
		len(in.EksPropertiesOverride) > 0, len(in.Parameters) > 0:
		return clientException("localecs plays neither retries, dependencies, array, multi-node and EKS jobs, nor parameters")
	case in.EcsPropertiesOverride != nil && len(in.EcsPropertiesOverride.TaskProperties) > 1:
		return clientException("ecsPropertiesOverride.taskProperties is limited to one element")
	}
	return checkTags(in.Tags)
}

// submitJob queues a job, as Batch does: the queue must exist and be
// ENABLED and the definition must exist and be ACTIVE, else Batch answers
// ClientException ("JobQueue NAME not found.", "JobDefinition name NAME
// does not exist or is not in ACTIVE status."). A queue whose compute
// environments cannot run it (DISABLED, INVALID) still takes the job,
// which waits RUNNABLE, as on AWS:
// https://docs.aws.amazon.com/batch/latest/userguide/job_stuck_in_runnable.html
// https://docs.aws.amazon.com/batch/latest/APIReference/API_SubmitJob.html
func (p *Proxy) submitJob(w http.ResponseWriter, c batchOpRequest) {
	var in submitJobInput
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "SubmitJob: "+err.Error())
		return
	}
	if err := in.check(); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	queue := batchName(in.JobQueue)
	if err := p.adoptQueues(c.r.Context(), c.r, []string{queue}); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	p.mu.Lock()
	j, err := p.newJobLocked(in, queue, c)
	if err != nil {
		p.mu.Unlock()
		p.answerBatchError(w, c.r, err)
		return
	}
	p.jobRuns.Add(1)
	snap := j.snapshot()
	p.mu.Unlock()
	p.log.Debug("job submitted", "job", snap.JobID, "queue", queue, "definition", snap.JobDefinitionARN)
	p.notifyJob(snap)
	go p.runJob(j)
	writeBatchJSON(w, map[string]string{"jobArn": snap.JobARN, "jobName": snap.JobName, "jobId": snap.JobID})
}

// newJobLocked checks the queue and definition of a submission and adds
// its job, SUBMITTED.
func (p *Proxy) newJobLocked(in submitJobInput, queue string, c batchOpRequest) (*job, error) {
	if p.closed {
		return nil, &batchError{status: http.StatusInternalServerError, code: "ServerException", msg: "the local Batch is shutting down"}
	}
	q := p.queues[queue]
	switch {
	case !q.usable(c.now, p.opts.BatchTransition):
		return nil, clientException("JobQueue %s not found.", in.JobQueue)
	case q.state != BatchEnabled: // a queue being deleted is DISABLED too
		return nil, clientException("JobQueue %s is DISABLED and accepts no jobs.", in.JobQueue)
	}
	d := p.jobDefLocked(in.JobDefinition)
	if d == nil || !d.active {
		return nil, clientException("JobDefinition name %s does not exist or is not in ACTIVE status.", batchName(in.JobDefinition))
	}
	containers, err := overrideContainers(d.task.Containers, in)
	if err != nil {
		return nil, err
	}
	id := newJobID()
	j := &job{
		Job: Job{
			JobSpec: JobSpec{
				JobID: id, JobARN: "arn:aws:batch:" + c.region + ":" + batchAccount + ":job/" + id, JobName: in.JobName,
				JobQueueARN: q.arn, JobDefinitionARN: d.arn, Tags: maps.Clone(in.Tags),
			},
			Status:    JobSubmitted,
			CreatedAt: c.now,
		},
		queue: queue, region: c.region, def: d, containers: containers,
	}
	if run, ok := (ecsTaskProperties{Containers: containers}).runContainer(); ok {
		j.Resources, j.Privileged = run.resources(), run.Privileged
	}
	if d.timeoutSec > 0 {
		j.timeout = time.Duration(d.timeoutSec) * time.Second
	}
	if in.Timeout != nil && in.Timeout.AttemptDurationSeconds > 0 {
		j.timeout = time.Duration(in.Timeout.AttemptDurationSeconds) * time.Second
	}
	// A job outlives the call that submitted it.
	j.ctx, j.cancel = context.WithCancel(context.Background())
	p.pruneJobsLocked(c.now)
	p.jobs[id] = j
	p.jobOrder = append(p.jobOrder, id)
	return j, nil
}

// overrideContainers applies a submission's ecsPropertiesOverride to a
// copy of the definition's containers: command and resource requirements
// replace the container's, environment variables are added to (or replace)
// its own.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_TaskContainerOverrides.html
func overrideContainers(def []batchContainer, in submitJobInput) ([]batchContainer, error) {
	out := make([]batchContainer, len(def))
	for i, c := range def {
		c.Environment = slices.Clone(c.Environment)
		c.Command = slices.Clone(c.Command)
		c.ResourceRequirements = slices.Clone(c.ResourceRequirements)
		out[i] = c
	}
	if in.EcsPropertiesOverride == nil || len(in.EcsPropertiesOverride.TaskProperties) == 0 {
		return out, nil
	}
	for _, o := range in.EcsPropertiesOverride.TaskProperties[0].Containers {
		i := slices.IndexFunc(out, func(c batchContainer) bool { return c.Name == o.Name })
		if i < 0 {
			return nil, clientException("ecsPropertiesOverride names container %q, which the job definition does not hold", o.Name)
		}
		if o.Command != nil {
			out[i].Command = o.Command
		}
		if o.ResourceRequirements != nil {
			byType := map[string]string{}
			for _, r := range out[i].ResourceRequirements {
				byType[r.Type] = r.Value
			}
			for _, r := range o.ResourceRequirements {
				byType[r.Type] = r.Value
			}
			out[i].ResourceRequirements = nil
			for _, t := range slices.Sorted(maps.Keys(byType)) {
				out[i].ResourceRequirements = append(out[i].ResourceRequirements, resourceRequirement{Type: t, Value: byType[t]})
			}
		}
		for _, kv := range o.Environment {
			k := slices.IndexFunc(out[i].Environment, func(e keyValue) bool { return e.Name == kv.Name })
			if k >= 0 {
				out[i].Environment[k] = kv
			} else {
				out[i].Environment = append(out[i].Environment, kv)
			}
		}
	}
	if err := checkContainers(out); err != nil {
		return nil, err
	}
	return out, nil
}

// newJobID returns a random UUID, the form of Batch job IDs.
func newJobID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newInstanceID returns a made-up EC2 instance ID.
func newInstanceID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return "i-" + hex.EncodeToString(b[:])[:17]
}

// runJob takes a job from SUBMITTED to its end, in the proxy's jobRuns.
func (p *Proxy) runJob(j *job) {
	defer p.jobRuns.Done()
	p.setJobStatus(j, JobRunnable)
	env := p.waitForPlacement(j)
	if env == nil {
		p.endUnstarted(j)
		return
	}
	if d := p.opts.JobStartDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-j.ctx.Done():
			t.Stop()
			p.endUnstarted(j)
			return
		case <-t.C:
		}
	}
	p.mu.Lock()
	if j.stop != stopNone {
		p.mu.Unlock()
		p.endUnstarted(j)
		return
	}
	j.ComputeEnvironmentARN, j.ComputeType = env.arn, env.computeType
	j.InstanceTypes, j.InstanceID = slices.Clone(env.instanceTypes), newInstanceID()
	instanceRole, envName := env.instanceRole, env.name
	run, _ := (ecsTaskProperties{Containers: j.containers}).runContainer()
	exec := j.def.task.ExecutionRoleArn
	p.mu.Unlock()
	p.setJobStatus(j, JobStarting)

	// What ECS does before the container starts, outside the lock:
	// Authorize may call AWS through this proxy. On EC2 the container
	// instance's role pulls and writes logs when the job has no execution
	// role: https://docs.aws.amazon.com/batch/latest/userguide/execution-IAM-role.html
	// Without a logConfiguration Batch sends the logs to /aws/batch/job:
	// https://docs.aws.amazon.com/batch/latest/userguide/using_awslogs.html
	pullLogs := exec
	if pullLogs == "" {
		pullLogs = instanceRole
	}
	checked := run.containerDef
	if checked.LogConfiguration == nil {
		checked.LogConfiguration = &struct {
			LogDriver string            `json:"logDriver"`
			Options   map[string]string `json:"options"`
		}{LogDriver: "awslogs", Options: map[string]string{"awslogs-group": "/aws/batch/job", "awslogs-stream-prefix": j.def.name}}
	}
	reason := p.containerInitFailure(j.ctx, initRoles{exec: exec, pull: pullLogs, logs: pullLogs}, checked, j.region, batchAccount)
	var secrets map[string]string
	if reason == "" {
		secrets, reason = p.readSecrets(j.ctx, run.Secrets)
	}
	if reason == "" {
		reason = pullFailure(run.Image)
	}

	p.mu.Lock()
	if j.stop != stopNone {
		p.mu.Unlock()
		p.endUnstarted(j)
		return
	}
	if reason != "" {
		snap := p.failUnstartedLocked(j, reason)
		p.mu.Unlock()
		p.notifyJob(snap)
		return
	}
	spec := p.jobTaskSpecLocked(j, run, envName, secrets)
	cmd, err := p.opts.Start(j.ctx, spec)
	if err = p.startContainer(cmd, err, "job"); err != nil {
		snap := p.failUnstartedLocked(j, "CannotStartContainerError: "+err.Error())
		p.mu.Unlock()
		p.notifyJob(snap)
		return
	}
	j.Status, j.StartedAt, j.PID, j.TaskARN = JobRunning, p.opts.Now(), cmd.Process.Pid, spec.TaskARN
	var timer *time.Timer
	if j.timeout > 0 {
		timer = time.AfterFunc(j.timeout, func() {
			p.mu.Lock()
			p.stopJobLocked(j, stopTimedOut, JobReasonTimeout)
			p.mu.Unlock()
		})
	}
	snap := j.snapshot()
	p.mu.Unlock()
	p.log.Debug("job running", "job", snap.JobID, "pid", snap.PID)
	p.notifyJob(snap)

	// An error here is the exit status, read below, or the process's
	// output outliving it by WaitDelay: neither is news.
	_ = cmd.Wait()
	if timer != nil {
		timer.Stop()
	}
	code := exitCode(cmd.ProcessState)
	p.mu.Lock()
	p.finishLocked(j, code)
	snap = j.snapshot()
	p.mu.Unlock()
	j.cancel()
	p.log.Debug("job finished", "job", snap.JobID, "status", snap.Status, "reason", snap.StatusReason)
	p.notifyJob(snap)
}

// jobTaskSpecLocked is the TaskSpec of the process of job j: its run
// container, with the variables Batch sets in a job's containers
// (https://docs.aws.amazon.com/batch/latest/userguide/job_env_vars.html)
// and its secrets, in an ECS cluster named for its compute environment.
func (p *Proxy) jobTaskSpecLocked(j *job, run batchContainer, envName string, secrets map[string]string) TaskSpec {
	env := envMap(run.Environment)
	env["AWS_BATCH_JOB_ID"] = j.JobID
	env["AWS_BATCH_JQ_NAME"] = j.queue
	env["AWS_BATCH_CE_NAME"] = envName
	env["AWS_BATCH_JOB_ATTEMPT"] = "1"
	maps.Copy(env, secrets)
	cluster := "arn:aws:ecs:" + j.region + ":" + batchAccount + ":cluster/AWSBatch-" + envName
	id := newTaskID()
	js := j.snapshot().JobSpec
	return TaskSpec{
		TaskARN: taskARN(cluster, id), TaskID: id, ClusterARN: cluster,
		TaskDefinitionARN: j.def.arn, Family: j.def.name, Revision: j.def.revision,
		Container: run.Name, Image: run.Image, Command: slices.Clone(run.Command), Environment: env,
		TaskRoleARN: j.def.task.TaskRoleArn, ExecutionRoleARN: j.def.task.ExecutionRoleArn,
		Region: j.region, LaunchType: "EC2", Job: &js,
	}
}

// setJobStatus moves an unstopped job to status and reports it.
func (p *Proxy) setJobStatus(j *job, status string) {
	p.mu.Lock()
	if j.stop != stopNone || j.finished() {
		p.mu.Unlock()
		return
	}
	j.Status = status
	snap := j.snapshot()
	p.mu.Unlock()
	p.notifyJob(snap)
}

// waitForPlacement waits until a compute environment of the job's queue
// can run it, and returns that environment; nil when the job was stopped
// first.
func (p *Proxy) waitForPlacement(j *job) *batchResource {
	for {
		now := p.opts.Now()
		p.mu.Lock()
		env, retry := p.placementLocked(j, now)
		changed := p.batchChanged
		p.mu.Unlock()
		if env != nil {
			return env
		}
		var wake <-chan time.Time
		if !retry.IsZero() {
			t := time.NewTimer(retry.Sub(now))
			defer t.Stop()
			wake = t.C
		}
		select {
		case <-j.ctx.Done():
			return nil
		case <-changed:
		case <-wake:
		}
	}
}

// placementLocked is the first compute environment of the job's queue that
// can run it now: ENABLED, and VALID (or being updated). Otherwise it
// returns when a change under way ends, when one might then (zero: only a
// change made through the proxy can).
func (p *Proxy) placementLocked(j *job, now time.Time) (*batchResource, time.Time) {
	var retry time.Time
	later := func(b *batchResource) {
		if t := b.since.Add(p.opts.BatchTransition); retry.IsZero() || t.Before(retry) {
			retry = t
		}
	}
	q := p.queues[j.queue]
	if !q.usable(now, p.opts.BatchTransition) || q.change == BatchDeleting {
		return nil, time.Time{}
	}
	if q.status(now, p.opts.BatchTransition) == BatchCreating {
		later(q)
		return nil, retry
	}
	for _, name := range q.order {
		e := p.envs[name]
		if !e.usable(now, p.opts.BatchTransition) || e.change == BatchDeleting || e.state != BatchEnabled {
			continue
		}
		switch e.status(now, p.opts.BatchTransition) {
		case BatchValid, BatchUpdating:
			if e.settled == BatchValid {
				return e, time.Time{}
			}
		case BatchCreating:
			later(e)
		}
	}
	return nil, retry
}

// stopJobLocked asks a job to stop, as CancelJob (kind stopCancelled),
// TerminateJob (stopTerminated), a lost host (stopInterrupted), its timeout
// or Close do, and reports whether it will. A job that has not started is
// cancelled by any of them but a lost host; CancelJob leaves a STARTING or
// RUNNING job alone: "Jobs that progressed to the STARTING or RUNNING state
// aren't canceled. However, the API operation still succeeds."
// https://docs.aws.amazon.com/batch/latest/APIReference/API_CancelJob.html
// https://docs.aws.amazon.com/batch/latest/APIReference/API_TerminateJob.html
func (p *Proxy) stopJobLocked(j *job, kind stopKind, reason string) bool {
	if j.finished() || j.stop != stopNone {
		return false
	}
	started := j.Status == JobStarting || j.Status == JobRunning
	switch {
	case kind == stopCancelled && started:
		return false
	case kind == stopInterrupted && !started:
		return false
	}
	j.stop, j.stopReason = kind, reason
	j.cancel()
	return true
}

// endUnstarted ends a job stopped before its process started: FAILED, with
// the reason it was stopped for.
func (p *Proxy) endUnstarted(j *job) {
	p.mu.Lock()
	if j.finished() {
		p.mu.Unlock()
		return
	}
	// A job stopped before STARTING is cancelled, by TerminateJob too;
	// one stopped while STARTING is terminated.
	cancelled := j.Status != JobStarting && (j.stop == stopCancelled || j.stop == stopTerminated)
	j.Status, j.StatusReason, j.StoppedAt = JobFailed, j.stopReason, p.opts.Now()
	j.IsCancelled, j.IsTerminated = cancelled, j.stop == stopTerminated
	snap := j.snapshot()
	p.mu.Unlock()
	p.notifyJob(snap)
}

// failUnstartedLocked ends a job whose container could not start, as Batch
// ends it: FAILED, "Task failed to start", the container's reason ECS's.
func (p *Proxy) failUnstartedLocked(j *job, reason string) Job {
	now := p.opts.Now()
	j.Status, j.StatusReason, j.ContainerReason, j.StoppedAt = JobFailed, JobReasonNotStarted, reason, now
	j.attempt = &attemptDetail{StatusReason: JobReasonNotStarted}
	j.attempt.Container.Reason = reason
	j.cancel()
	return j.snapshot()
}

// finishLocked records how a job's process ended: SUCCEEDED when its
// essential container exited 0 on its own, else FAILED with the reason it
// was stopped for; a lost host leaves no exit code.
func (p *Proxy) finishLocked(j *job, code int) {
	now := p.opts.Now()
	j.StoppedAt = now
	switch j.stop {
	case stopNone:
		j.ExitCode = &code
		j.Status, j.StatusReason = JobFailed, JobReasonExited
		if code == 0 {
			j.Status = JobSucceeded
		}
	case stopInterrupted:
		j.Status, j.StatusReason = JobFailed, j.stopReason
	default:
		j.ExitCode = &code
		j.Status, j.StatusReason = JobFailed, j.stopReason
		j.IsTerminated = j.stop == stopTerminated
	}
	j.attempt = &attemptDetail{StatusReason: j.StatusReason, StartedAt: msec(j.StartedAt), StoppedAt: msec(now)}
	j.attempt.Container.ExitCode = j.ExitCode
	j.attempt.Container.TaskArn = j.TaskARN
}

// InterruptJob plays the loss of a STARTING or RUNNING job's host, as a
// Spot interruption does: its process is stopped (SIGTERM, then SIGKILL
// after StopTimeout) and the job FAILS with Batch's reason "Host EC2
// (instance i-...) terminated." and no exit code.
func (p *Proxy) InterruptJob(jobID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	j := p.jobs[jobID]
	if j == nil {
		return fmt.Errorf("localecs: no job %s", jobID)
	}
	if !p.stopJobLocked(j, stopInterrupted, "Host EC2 (instance "+j.InstanceID+") terminated.") {
		return fmt.Errorf("localecs: job %s is %s: it is on no host", jobID, j.Status)
	}
	return nil
}

func (p *Proxy) notifyJob(j Job) {
	if p.opts.OnJob != nil {
		p.opts.OnJob(j)
	}
}

// pruneJobsLocked forgets jobs finished longer than StoppedRetention ago.
func (p *Proxy) pruneJobsLocked(now time.Time) {
	keep := p.jobOrder[:0]
	for _, id := range p.jobOrder {
		j := p.jobs[id]
		if j.finished() && now.Sub(j.StoppedAt) > p.opts.StoppedRetention {
			delete(p.jobs, id)
			continue
		}
		keep = append(keep, id)
	}
	p.jobOrder = keep
}

// --- answers ---

func msec(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

type attemptDetail struct {
	Container struct {
		ExitCode *int   `json:"exitCode,omitempty"`
		Reason   string `json:"reason,omitempty"`
		TaskArn  string `json:"taskArn,omitempty"`
	} `json:"container"`
	StartedAt    *int64 `json:"startedAt,omitempty"`
	StoppedAt    *int64 `json:"stoppedAt,omitempty"`
	StatusReason string `json:"statusReason,omitempty"`
}

type containerDetail struct {
	batchContainer
	ExitCode *int   `json:"exitCode,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

type jobDetail struct {
	JobArn               string            `json:"jobArn"`
	JobName              string            `json:"jobName"`
	JobID                string            `json:"jobId"`
	JobQueue             string            `json:"jobQueue"`
	Status               string            `json:"status"`
	StatusReason         string            `json:"statusReason,omitempty"`
	CreatedAt            *int64            `json:"createdAt"`
	StartedAt            *int64            `json:"startedAt,omitempty"`
	StoppedAt            *int64            `json:"stoppedAt,omitempty"`
	JobDefinition        string            `json:"jobDefinition"`
	Tags                 map[string]string `json:"tags,omitempty"`
	PlatformCapabilities []string          `json:"platformCapabilities,omitempty"`
	IsCancelled          bool              `json:"isCancelled,omitempty"`
	IsTerminated         bool              `json:"isTerminated,omitempty"`
	DependsOn            []any             `json:"dependsOn"`
	Attempts             []attemptDetail   `json:"attempts"`
	Timeout              *struct {
		AttemptDurationSeconds int `json:"attemptDurationSeconds"`
	} `json:"timeout,omitempty"`
	EcsProperties struct {
		TaskProperties []struct {
			Containers           []containerDetail `json:"containers"`
			TaskArn              string            `json:"taskArn,omitempty"`
			ContainerInstanceArn string            `json:"containerInstanceArn,omitempty"`
			TaskRoleArn          string            `json:"taskRoleArn,omitempty"`
			ExecutionRoleArn     string            `json:"executionRoleArn,omitempty"`
		} `json:"taskProperties"`
	} `json:"ecsProperties"`
}

func (j *job) detail() jobDetail {
	d := jobDetail{
		JobArn: j.JobARN, JobName: j.JobName, JobID: j.JobID, JobQueue: j.JobQueueARN,
		Status: j.Status, StatusReason: j.StatusReason,
		CreatedAt: msec(j.CreatedAt), StartedAt: msec(j.StartedAt), StoppedAt: msec(j.StoppedAt),
		JobDefinition: j.JobDefinitionARN, Tags: maps.Clone(j.Tags), PlatformCapabilities: j.def.platform,
		IsCancelled: j.IsCancelled, IsTerminated: j.IsTerminated, DependsOn: []any{}, Attempts: []attemptDetail{},
	}
	if j.attempt != nil {
		d.Attempts = append(d.Attempts, *j.attempt)
	}
	if j.timeout > 0 {
		d.Timeout = &struct {
			AttemptDurationSeconds int `json:"attemptDurationSeconds"`
		}{int(j.timeout / time.Second)}
	}
	run, _ := (ecsTaskProperties{Containers: j.containers}).runContainer()
	containers := make([]containerDetail, len(j.containers))
	for i, c := range j.containers {
		containers[i] = containerDetail{batchContainer: c}
		if c.Name == run.Name {
			containers[i].ExitCode, containers[i].Reason = j.ExitCode, j.ContainerReason
		}
	}
	d.EcsProperties.TaskProperties = make([]struct {
		Containers           []containerDetail `json:"containers"`
		TaskArn              string            `json:"taskArn,omitempty"`
		ContainerInstanceArn string            `json:"containerInstanceArn,omitempty"`
		TaskRoleArn          string            `json:"taskRoleArn,omitempty"`
		ExecutionRoleArn     string            `json:"executionRoleArn,omitempty"`
	}, 1)
	tp := &d.EcsProperties.TaskProperties[0]
	tp.Containers, tp.TaskArn = containers, j.TaskARN
	tp.TaskRoleArn, tp.ExecutionRoleArn = j.def.task.TaskRoleArn, j.def.task.ExecutionRoleArn
	if j.InstanceID != "" && j.TaskARN != "" {
		prefix, _, _ := strings.Cut(j.TaskARN, ":task/")
		tp.ContainerInstanceArn = prefix + ":container-instance/" + j.InstanceID
	}
	return d
}

// describeJobs answers the jobs it names (IDs or ARNs, at most 100); it
// leaves out those it does not know, as Batch does.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_DescribeJobs.html
func (p *Proxy) describeJobs(w http.ResponseWriter, c batchOpRequest) {
	var in struct {
		Jobs []string `json:"jobs"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "DescribeJobs: "+err.Error())
		return
	}
	if len(in.Jobs) == 0 || len(in.Jobs) > 100 {
		p.answerBatchError(w, c.r, clientException("jobs must name 1 to 100 jobs"))
		return
	}
	p.mu.Lock()
	p.pruneJobsLocked(c.now)
	out := []jobDetail{}
	for _, ref := range in.Jobs {
		if j := p.jobs[ref[strings.LastIndex(ref, "/")+1:]]; j != nil {
			out = append(out, j.detail())
		}
	}
	p.mu.Unlock()
	writeBatchJSON(w, map[string]any{"jobs": out})
}

type jobSummary struct {
	JobArn        string `json:"jobArn"`
	JobID         string `json:"jobId"`
	JobName       string `json:"jobName"`
	CreatedAt     *int64 `json:"createdAt"`
	StartedAt     *int64 `json:"startedAt,omitempty"`
	StoppedAt     *int64 `json:"stoppedAt,omitempty"`
	Status        string `json:"status"`
	StatusReason  string `json:"statusReason,omitempty"`
	JobDefinition string `json:"jobDefinition"`
}

// listJobs lists a queue's jobs of one status (RUNNING by default) or,
// with filters, of any status, oldest first, maxResults (at most 1000) a
// page. The filters are JOB_NAME and JOB_DEFINITION (exact, or a prefix
// ending in *; names without case), BEFORE_CREATED_AT and AFTER_CREATED_AT
// (milliseconds).
// https://docs.aws.amazon.com/batch/latest/APIReference/API_ListJobs.html
// https://docs.aws.amazon.com/batch/latest/APIReference/API_KeyValuesPair.html
func (p *Proxy) listJobs(w http.ResponseWriter, c batchOpRequest) {
	var in struct {
		JobQueue   string `json:"jobQueue"`
		JobStatus  string `json:"jobStatus"`
		MaxResults *int   `json:"maxResults"`
		NextToken  string `json:"nextToken"`
		Filters    []struct {
			Name   string   `json:"name"`
			Values []string `json:"values"`
		} `json:"filters"`
		ArrayJobID     string `json:"arrayJobId"`
		MultiNodeJobID string `json:"multiNodeJobId"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "ListJobs: "+err.Error())
		return
	}
	from, limit, err := page(in.NextToken, in.MaxResults, 1000)
	switch {
	case err != nil:
	case in.ArrayJobID != "" || in.MultiNodeJobID != "":
		err = clientException("localecs plays no array or multi-node jobs")
	case in.JobQueue == "":
		err = clientException("jobQueue is required")
	case in.JobStatus != "" && !slices.Contains([]string{"SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"}, in.JobStatus):
		err = clientException("jobStatus %q is not a job status", in.JobStatus)
	}
	var match []func(*job) bool
	for _, f := range in.Filters {
		if err != nil {
			break
		}
		if len(f.Values) != 1 {
			err = clientException("filter %s takes one value", f.Name)
			break
		}
		v := f.Values[0]
		switch f.Name {
		case "JOB_NAME":
			match = append(match, func(j *job) bool { return wildcardMatch(strings.ToLower(v), strings.ToLower(j.JobName)) })
		case "JOB_DEFINITION":
			match = append(match, func(j *job) bool {
				name := j.def.name + ":" + strconv.Itoa(j.def.revision)
				return wildcardMatch(v, j.def.arn) || wildcardMatch(v, name) || wildcardMatch(v, j.def.name)
			})
		case "BEFORE_CREATED_AT", "AFTER_CREATED_AT":
			ms, convErr := strconv.ParseInt(v, 10, 64)
			if convErr != nil {
				err = clientException("filter %s takes milliseconds, not %q", f.Name, v)
				break
			}
			before := f.Name == "BEFORE_CREATED_AT"
			match = append(match, func(j *job) bool {
				if before {
					return j.CreatedAt.UnixMilli() < ms
				}
				return j.CreatedAt.UnixMilli() > ms
			})
		default:
			err = clientException("filter %q is not JOB_NAME, JOB_DEFINITION, BEFORE_CREATED_AT or AFTER_CREATED_AT", f.Name)
		}
	}
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	status := in.JobStatus
	if status == "" {
		status = JobRunning
	}
	queue := batchName(in.JobQueue)
	p.mu.Lock()
	p.pruneJobsLocked(c.now)
	var all []jobSummary
	for _, id := range p.jobOrder {
		j := p.jobs[id]
		if j.queue != queue {
			continue
		}
		// "If the filters parameter is specified, the jobStatus parameter
		// is ignored and jobs with any status are returned."
		ok := len(match) > 0 || j.Status == status
		for _, m := range match {
			ok = ok && m(j)
		}
		if ok {
			all = append(all, jobSummary{
				JobArn: j.JobARN, JobID: j.JobID, JobName: j.JobName,
				CreatedAt: msec(j.CreatedAt), StartedAt: msec(j.StartedAt), StoppedAt: msec(j.StoppedAt),
				Status: j.Status, StatusReason: j.StatusReason, JobDefinition: j.JobDefinitionARN,
			})
		}
	}
	p.mu.Unlock()
	out := map[string]any{"jobSummaryList": []jobSummary{}}
	if from < len(all) {
		end := min(from+limit, len(all))
		out["jobSummaryList"] = all[from:end]
		if end < len(all) {
			out["nextToken"] = strconv.Itoa(end)
		}
	}
	writeBatchJSON(w, out)
}

// wildcardMatch matches s against pattern, exact or, ending in *, a prefix.
func wildcardMatch(pattern, s string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(s, prefix)
	}
	return pattern == s
}

func (p *Proxy) terminateJob(w http.ResponseWriter, c batchOpRequest) {
	p.stopJobCall(w, c, stopTerminated)
}

func (p *Proxy) cancelJob(w http.ResponseWriter, c batchOpRequest) {
	p.stopJobCall(w, c, stopCancelled)
}

// stopJobCall answers TerminateJob and CancelJob: both need a job ID and a
// reason, and succeed for a job that has already ended.
func (p *Proxy) stopJobCall(w http.ResponseWriter, c batchOpRequest, kind stopKind) {
	var in struct {
		JobID  string `json:"jobId"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", c.op+": "+err.Error())
		return
	}
	if in.JobID == "" || in.Reason == "" {
		p.answerBatchError(w, c.r, clientException("jobId and reason are required"))
		return
	}
	p.mu.Lock()
	j := p.jobs[in.JobID]
	if j != nil {
		p.stopJobLocked(j, kind, in.Reason)
	}
	p.mu.Unlock()
	if j == nil {
		p.answerBatchError(w, c.r, clientException("Job %s not found", in.JobID))
		return
	}
	writeBatchJSON(w, struct{}{})
}
