package localecs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// Task states, as ECS names them.
const (
	StatusRunning = "RUNNING"
	StatusStopped = "STOPPED"
)

// Stop codes, as ECS names them.
const (
	StopEssentialContainerExited = "EssentialContainerExited"
	StopUserInitiated            = "UserInitiated"
	StopTaskFailedToStart        = "TaskFailedToStart"
)

// maxRunTaskCount is the most tasks one RunTask call may start.
const maxRunTaskCount = 10

// TaskSpec is what Options.Start is given to build a task's process: the
// task's identity and its container, with RunTask's overrides applied.
type TaskSpec struct {
	TaskARN           string
	TaskID            string // the last part of TaskARN
	ClusterARN        string
	TaskDefinitionARN string
	Family            string
	Revision          int
	// Container is the name of the container the task runs (see
	// Options.Start): the task definition's first essential container.
	Container        string
	Image            string
	EntryPoint       []string
	Command          []string
	Environment      map[string]string
	WorkingDirectory string
	CPU, Memory      string // as the task definition gives them
	TaskRoleARN      string // the role the task's process acts as ("" for none)
	ExecutionRoleARN string // the role ECS started the task with
	// Region is the region the task runs in: that of the ECS endpoint
	// RunTask was called at, which is the request's SigV4 signing region
	// (ECS runs a task in the region of its cluster, and a cluster is
	// regional: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/clusters.html).
	// kumo ignores regions and names us-east-1 in every ARN, so the
	// cluster's ARN cannot tell; an unsigned request runs in the cluster
	// ARN's region. A process in the task sees it as AWS_REGION, as ECS
	// sets it.
	Region     string
	StartedBy  string
	Group      string
	LaunchType string
	// Job is the Batch job the task runs, nil for a task RunTask started.
	Job *JobSpec
}

// Task is a snapshot of one task the proxy started.
type Task struct {
	TaskSpec
	ClientToken   string
	LastStatus    string // StatusRunning or StatusStopped
	DesiredStatus string // StatusRunning until the task stops or StopTask is called
	// ExitCode is the process's exit status once it stopped (128+signal
	// for a signal, as Docker reports it); nil while running or when the
	// process never started.
	ExitCode      *int
	StopCode      string
	StoppedReason string
	PID           int
	CreatedAt     time.Time
	StartedAt     time.Time // zero when the process never started
	StoppedAt     time.Time
}

// task is the proxy's record of a task; its fields are guarded by Proxy.mu.
type task struct {
	Task
	cancel context.CancelFunc // ends the process's context (SIGTERM, then SIGKILL)
	// started is closed once OnTask has been told of the start, so that a
	// process that exits at once is never reported stopped before started.
	started chan struct{}
}

// snapshot copies t so that callers never share its maps and slices.
func (t *task) snapshot() Task {
	s := t.Task
	s.Environment = maps.Clone(t.Environment)
	s.EntryPoint = slices.Clone(t.EntryPoint)
	s.Command = slices.Clone(t.Command)
	if t.ExitCode != nil {
		c := *t.ExitCode
		s.ExitCode = &c
	}
	return s
}

// runToken is a RunTask clientToken and what its first call did.
type runToken struct {
	paramsHash string
	taskARNs   []string
	created    time.Time
}

type runTaskInput struct {
	Cluster        string `json:"cluster"`
	TaskDefinition string `json:"taskDefinition"`
	Count          *int   `json:"count"`
	ClientToken    string `json:"clientToken"`
	LaunchType     string `json:"launchType"`
	StartedBy      string `json:"startedBy"`
	Group          string `json:"group"`
	Overrides      struct {
		ContainerOverrides []containerOverride `json:"containerOverrides"`
	} `json:"overrides"`
}

type containerOverride struct {
	Name        string     `json:"name"`
	Command     []string   `json:"command"`
	Environment []keyValue `json:"environment"`
}

// Tasks returns a snapshot of the tasks the proxy knows, oldest first:
// running ones and those stopped within StoppedRetention.
func (p *Proxy) Tasks() []Task {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Task, 0, len(p.order))
	for _, arn := range p.order {
		out = append(out, p.table[arn].snapshot())
	}
	return out
}

// runTask starts count tasks of a task definition the proxy remembers,
// honouring clientToken as ECS does: within TokenTTL, the same token with
// the same parameters returns the tasks the first call started and starts
// none; with other parameters it is a ConflictException.
func (p *Proxy) runTask(w http.ResponseWriter, r *http.Request, body []byte) {
	var in runTaskInput
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "RunTask: "+err.Error())
		return
	}
	p.record(Request{Op: "RunTask", ClientToken: in.ClientToken, Time: p.opts.Now()})
	count, invalid := in.check()
	if invalid != "" {
		writeError(w, http.StatusBadRequest, "InvalidParameterException", invalid)
		return
	}
	clusterARN, err := p.findCluster(r, in.Cluster)
	if err != nil {
		var ce *clientError
		if errors.As(err, &ce) {
			writeError(w, http.StatusBadRequest, ce.code, ce.msg)
			return
		}
		p.forwardFailed(w, r, err)
		return
	}
	hash, err := paramsHash(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "RunTask: "+err.Error())
		return
	}

	// What ECS does with the execution role before a container starts
	// (read secrets, create the log stream, authenticate to ECR) is
	// authorized outside the lock: Authorize may call AWS through this
	// proxy.
	region := faultproxy.SigningRegion(r)
	if region == "" {
		region, _ = arnRegionAccount(clusterARN)
	}
	// ECS assumes the roles before it uses them.
	initFailure := p.trustFailure(r.Context(), in.TaskDefinition, region, clusterARN)
	if initFailure == "" {
		initFailure = p.initFailure(r.Context(), in.TaskDefinition, region)
	}
	var secrets map[string]string
	if initFailure == "" {
		secrets, initFailure = p.secretEnv(r.Context(), in.TaskDefinition)
	}

	now := p.opts.Now()
	p.mu.Lock()
	p.pruneLocked(now)
	key := clusterARN + "\x00" + in.ClientToken
	if answered := p.repeatedRunTaskLocked(w, key, in.ClientToken, hash); answered {
		p.mu.Unlock()
		return
	}
	base, status, code, msg := p.taskSpecLocked(in, clusterARN)
	if code != "" {
		p.mu.Unlock()
		writeError(w, status, code, msg)
		return
	}
	base.Region = region
	if len(secrets) > 0 {
		base.Environment = maps.Clone(base.Environment)
		maps.Copy(base.Environment, secrets)
	}
	started, reported := p.startTasksLocked(r.Context(), base, in.ClientToken, count, now, initFailure)
	if in.ClientToken != "" {
		arns := make([]string, len(started))
		for i, t := range started {
			arns[i] = t.TaskARN
		}
		p.tokens[key] = &runToken{paramsHash: hash, taskARNs: arns, created: now}
	}
	p.mu.Unlock()

	for i, t := range started {
		p.log.Debug("task started", "task", t.TaskARN, "family", t.Family, "pid", t.PID, "last_status", t.LastStatus)
		p.notify(t)
		close(reported[i])
	}
	writeJSON(w, http.StatusOK, runTaskOutput(started))
}

// check returns how many tasks the request asks for, or why ECS refuses it.
func (in runTaskInput) check() (count int, invalid string) {
	count = 1
	if in.Count != nil {
		count = *in.Count
	}
	switch {
	case count < 1 || count > maxRunTaskCount:
		return 0, "count must be between 1 and 10"
	case in.TaskDefinition == "":
		return 0, "taskDefinition is required"
	case len(in.ClientToken) > 64:
		return 0, "clientToken is longer than 64 characters"
	}
	return count, ""
}

// repeatedRunTaskLocked answers a RunTask whose client token was used
// before, as ECS does: the same request gets the tasks it started then and
// starts nothing; another request with the token is a ConflictException.
// It reports whether it answered.
func (p *Proxy) repeatedRunTaskLocked(w http.ResponseWriter, key, token, hash string) bool {
	tok, ok := p.tokens[key]
	if !ok || token == "" {
		return false
	}
	if tok.paramsHash != hash {
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"__type":      "ConflictException",
			"message":     "The clientToken is already in use with a different RunTask request.",
			"resourceIds": tok.taskARNs,
		})
		return true
	}
	tasks := make([]Task, 0, len(tok.taskARNs))
	for _, arn := range tok.taskARNs {
		if t := p.table[arn]; t != nil {
			tasks = append(tasks, t.snapshot())
		}
	}
	p.log.Debug("run task repeated, nothing started", "client_token", token, "tasks", len(tasks))
	writeJSON(w, http.StatusOK, runTaskOutput(tasks))
	return true
}

// taskSpecLocked is the spec of the tasks in asks for, or the error ECS
// answers with (its HTTP status, code and message).
func (p *Proxy) taskSpecLocked(in runTaskInput, clusterARN string) (spec TaskSpec, status int, code, msg string) {
	if p.closed {
		return spec, http.StatusServiceUnavailable, "ServerException", "the local ECS is shutting down"
	}
	td := p.lookupDefLocked(in.TaskDefinition)
	switch {
	case td == nil:
		return spec, http.StatusBadRequest, "ClientException", "TaskDefinition not found."
	case !td.active:
		return spec, http.StatusBadRequest, "ClientException", "TaskDefinition is inactive"
	}
	spec, err := td.spec(in.Overrides.ContainerOverrides)
	if err != nil {
		return spec, http.StatusBadRequest, "InvalidParameterException", err.Error()
	}
	spec.ClusterARN = clusterARN
	spec.StartedBy = in.StartedBy
	spec.LaunchType = in.LaunchType
	spec.Group = in.Group
	if spec.Group == "" {
		spec.Group = "family:" + td.family
	}
	return spec, 0, "", ""
}

// startTasksLocked starts count tasks of spec and returns their snapshots
// and the channels to close once each start has been reported.
func (p *Proxy) startTasksLocked(ctx context.Context, spec TaskSpec, token string, count int, now time.Time, initFailure string) ([]Task, []chan struct{}) {
	started := make([]Task, 0, count)
	var reported []chan struct{}
	for range count {
		t := p.newTaskLocked(spec, token, now)
		// A task outlives the call that started it; StopTask or Close
		// ends it.
		p.startLocked(context.WithoutCancel(ctx), t, initFailure)
		started = append(started, t.snapshot())
		reported = append(reported, t.started)
	}
	return started, reported
}

// newTaskLocked adds a task of spec to the table.
func (p *Proxy) newTaskLocked(spec TaskSpec, token string, now time.Time) *task {
	id := newTaskID()
	spec.TaskID = id
	spec.TaskARN = taskARN(spec.ClusterARN, id)
	spec.Environment = maps.Clone(spec.Environment)
	t := &task{Task: Task{
		TaskSpec:      spec,
		ClientToken:   token,
		LastStatus:    StatusRunning,
		DesiredStatus: StatusRunning,
		CreatedAt:     now,
	}, started: make(chan struct{})}
	p.table[t.TaskARN] = t
	p.order = append(p.order, t.TaskARN)
	return t
}

// startLocked starts t's process and a goroutine, owned by p.tasks, that
// waits for it. The process's context is a child of ctx that t.cancel ends.
// A task whose process cannot be started is stopped at once, as ECS stops a
// task whose container cannot start; so is one whose resources could not be
// initialized (initFailure, the reason ECS gives).
func (p *Proxy) startLocked(ctx context.Context, t *task, initFailure string) {
	ctx, cancel := context.WithCancel(ctx)
	t.cancel = cancel
	if initFailure != "" {
		cancel()
		p.stopBeforeStartLocked(t, initFailure)
		return
	}
	if reason := pullFailure(t.Image); reason != "" {
		cancel()
		p.stopBeforeStartLocked(t, reason)
		return
	}
	cmd, err := p.opts.Start(ctx, t.snapshot().TaskSpec)
	if err = p.startContainer(cmd, err, "task"); err != nil {
		cancel()
		p.stopBeforeStartLocked(t, "CannotStartContainerError: "+err.Error())
		return
	}
	t.StartedAt = p.opts.Now()
	t.PID = cmd.Process.Pid
	p.tasks.Add(1)
	go p.wait(t, cmd)
}

// stopBeforeStartLocked stops t as ECS stops a task whose container never
// started: STOPPED, TaskFailedToStart, the reason in stoppedReason.
func (p *Proxy) stopBeforeStartLocked(t *task, reason string) {
	t.LastStatus, t.DesiredStatus = StatusStopped, StatusStopped
	t.StopCode = StopTaskFailedToStart
	t.StoppedReason = reason
	t.StoppedAt = p.opts.Now()
}

// pullFailure is why ECS could not pull image, or "" when it could. No image
// can be pulled from a registry under the reserved top-level domain
// ".invalid" (RFC 2606 section 2), so tests and the demo name such an image
// to see a task fail before its runner starts, as ECS reports it:
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_cannot_pull_image.html
func pullFailure(image string) string {
	host, _, ok := strings.Cut(image, "/")
	if !ok || !strings.ContainsAny(host, ".:") {
		return "" // a Docker Hub image: no registry host in the name
	}
	host, _, _ = strings.Cut(host, ":") // drop a port
	if !strings.HasSuffix(strings.ToLower(host), ".invalid") {
		return ""
	}
	return fmt.Sprintf("CannotPullContainerError: pull image manifest has been retried 5 time(s): "+
		"failed to resolve ref %s: failed to do request: dial tcp: lookup %s: no such host", image, host)
}

// wait waits for t's process and records how it ended.
func (p *Proxy) wait(t *task, cmd *exec.Cmd) {
	defer p.tasks.Done()
	// An error here is the exit status, read below, or the process's
	// output outliving it by WaitDelay: neither is news.
	_ = cmd.Wait()
	code := exitCode(cmd.ProcessState)
	p.mu.Lock()
	t.LastStatus, t.DesiredStatus = StatusStopped, StatusStopped
	t.ExitCode = &code
	t.StoppedAt = p.opts.Now()
	if t.StopCode == "" {
		t.StopCode = StopEssentialContainerExited
		t.StoppedReason = "Essential container in task exited"
	}
	snap := t.snapshot()
	p.mu.Unlock()
	t.cancel()
	<-t.started
	p.log.Debug("task stopped", "task", snap.TaskARN, "exit_code", code, "stop_code", snap.StopCode)
	p.notify(snap)
}

// exitCode returns a process's exit status, or 128+N when signal N ended
// it, which is what ECS reports for a container killed by a signal.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func (p *Proxy) notify(t Task) {
	if p.opts.OnTask != nil {
		p.opts.OnTask(t)
	}
}

// pruneLocked forgets stopped tasks older than StoppedRetention and client
// tokens older than TokenTTL or whose tasks are all forgotten.
func (p *Proxy) pruneLocked(now time.Time) {
	keep := p.order[:0]
	for _, arn := range p.order {
		t := p.table[arn]
		if t.LastStatus == StatusStopped && now.Sub(t.StoppedAt) > p.opts.StoppedRetention {
			delete(p.table, arn)
			continue
		}
		keep = append(keep, arn)
	}
	p.order = keep
	for k, tok := range p.tokens {
		known := slices.ContainsFunc(tok.taskARNs, func(arn string) bool { return p.table[arn] != nil })
		if !known || now.Sub(tok.created) > p.opts.TokenTTL {
			delete(p.tokens, k)
		}
	}
}

// listTasks answers ListTasks from the proxy's table: kumo has none.
func (p *Proxy) listTasks(w http.ResponseWriter, body []byte) {
	var in struct {
		Cluster       string `json:"cluster"`
		Family        string `json:"family"`
		DesiredStatus string `json:"desiredStatus"`
		StartedBy     string `json:"startedBy"`
		ServiceName   string `json:"serviceName"`
		LaunchType    string `json:"launchType"`
		MaxResults    *int   `json:"maxResults"`
		NextToken     string `json:"nextToken"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "ListTasks: "+err.Error())
		return
	}
	desired := in.DesiredStatus
	if desired == "" {
		desired = StatusRunning // ECS's default filter
	}
	limit := 100
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > 100 {
			writeError(w, http.StatusBadRequest, "InvalidParameterException", "maxResults must be between 1 and 100")
			return
		}
		limit = *in.MaxResults
	}
	from := 0
	if in.NextToken != "" {
		n, err := strconv.Atoi(in.NextToken)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "InvalidParameterException", "invalid nextToken")
			return
		}
		from = n
	}
	var arns []string
	p.mu.Lock()
	p.pruneLocked(p.opts.Now())
	for _, arn := range p.order {
		t := p.table[arn]
		switch {
		case !clusterMatches(in.Cluster, t.ClusterARN),
			in.Family != "" && t.Family != in.Family,
			t.DesiredStatus != desired,
			in.StartedBy != "" && t.StartedBy != in.StartedBy,
			in.LaunchType != "" && t.LaunchType != in.LaunchType,
			in.ServiceName != "": // no task here belongs to a service
			continue
		}
		arns = append(arns, arn)
	}
	p.mu.Unlock()
	out := map[string]any{"taskArns": []string{}}
	if from < len(arns) {
		end := min(from+limit, len(arns))
		out["taskArns"] = arns[from:end]
		if end < len(arns) {
			out["nextToken"] = strconv.Itoa(end)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// describeTasks answers DescribeTasks from the proxy's table; tasks it does
// not know are reported as MISSING failures, as ECS does.
func (p *Proxy) describeTasks(w http.ResponseWriter, body []byte) {
	var in struct {
		Cluster string   `json:"cluster"`
		Tasks   []string `json:"tasks"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "DescribeTasks: "+err.Error())
		return
	}
	if len(in.Tasks) == 0 || len(in.Tasks) > 100 {
		writeError(w, http.StatusBadRequest, "InvalidParameterException", "tasks must name between 1 and 100 tasks")
		return
	}
	var tasks []Task
	failures := []ecsFailure{}
	p.mu.Lock()
	p.pruneLocked(p.opts.Now())
	for _, ref := range in.Tasks {
		if t := p.findLocked(in.Cluster, ref); t != nil {
			tasks = append(tasks, t.snapshot())
		} else {
			failures = append(failures, ecsFailure{Arn: ref, Reason: "MISSING"})
		}
	}
	p.mu.Unlock()
	out := runTaskOutput(tasks)
	out.Failures = failures
	writeJSON(w, http.StatusOK, out)
}

// stopTask asks a task to stop: its desired status becomes STOPPED and its
// process gets SIGTERM (then SIGKILL); its last status follows when the
// process has exited.
func (p *Proxy) stopTask(w http.ResponseWriter, body []byte) {
	var in struct {
		Cluster string `json:"cluster"`
		Task    string `json:"task"`
		Reason  string `json:"reason"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "StopTask: "+err.Error())
		return
	}
	p.mu.Lock()
	t := p.findLocked(in.Cluster, in.Task)
	if t == nil {
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "InvalidParameterException", "The referenced task was not found.")
		return
	}
	if t.DesiredStatus == StatusRunning {
		t.DesiredStatus = StatusStopped
		t.StopCode = StopUserInitiated
		t.StoppedReason = in.Reason
		if t.StoppedReason == "" {
			t.StoppedReason = "Task stopped by user"
		}
		t.cancel()
	}
	snap := t.snapshot()
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"task": ecsTaskOf(snap)})
}

// findLocked finds a task by ARN or ID in cluster.
func (p *Proxy) findLocked(cluster, ref string) *task {
	if t := p.table[ref]; t != nil && clusterMatches(cluster, t.ClusterARN) {
		return t
	}
	for _, arn := range p.order {
		t := p.table[arn]
		if t.TaskID == ref && clusterMatches(cluster, t.ClusterARN) {
			return t
		}
	}
	return nil
}

// clusterMatches reports whether cluster (a name or an ARN; empty means
// "default", as in every ECS call) names the cluster of clusterARN.
func clusterMatches(cluster, clusterARN string) bool {
	if cluster == "" {
		cluster = "default"
	}
	return cluster == clusterARN || strings.HasSuffix(clusterARN, ":cluster/"+cluster)
}

// clientError is an ECS error to return to the client as it is.
type clientError struct{ code, msg string }

func (e *clientError) Error() string { return e.code + ": " + e.msg }

// findCluster asks kumo whether the cluster exists and returns its ARN.
func (p *Proxy) findCluster(r *http.Request, cluster string) (string, error) {
	if cluster == "" {
		cluster = "default"
	}
	body, err := json.Marshal(map[string]any{"clusters": []string{cluster}})
	if err != nil {
		return "", err
	}
	resp, out, err := p.callUpstream(r.Context(), r, ecsTargetPrefix+"DescribeClusters", body)
	if err != nil {
		return "", fmt.Errorf("describe cluster %s: %w", cluster, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("describe cluster %s: kumo answered %s: %s", cluster, resp.Status, out)
	}
	var desc struct {
		Clusters []struct {
			ClusterArn string `json:"clusterArn"`
			Status     string `json:"status"`
		} `json:"clusters"`
	}
	if err := json.Unmarshal(out, &desc); err != nil {
		return "", fmt.Errorf("describe cluster %s: %w", cluster, err)
	}
	for _, c := range desc.Clusters {
		if c.Status == "ACTIVE" {
			return c.ClusterArn, nil
		}
	}
	return "", &clientError{"ClusterNotFoundException", "Cluster not found."}
}

// paramsHash identifies a RunTask request apart from its clientToken, to
// tell a retry (same parameters) from a reuse of the token (a conflict).
func paramsHash(body []byte) (string, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return "", err
	}
	delete(m, "clientToken")
	b, err := json.Marshal(m) // map keys are sorted: a canonical form
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// newTaskID returns 32 random hex digits, the form of ECS task IDs.
func newTaskID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// taskARN builds a task ARN in the cluster of clusterARN:
// arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID.
func taskARN(clusterARN, id string) string {
	prefix, name, ok := strings.Cut(clusterARN, ":cluster/")
	if !ok {
		return "arn:aws:ecs:us-east-1:000000000000:task/" + clusterARN + "/" + id
	}
	return prefix + ":task/" + name + "/" + id
}

// startContainer starts the command Options.Start built for a task or job
// (what), given with Start's error, so that stopping it is as ECS stops a
// container: SIGTERM, then SIGKILL after the stop timeout.
func (p *Proxy) startContainer(cmd *exec.Cmd, err error, what string) error {
	if err == nil && cmd.Cancel == nil {
		err = fmt.Errorf("the %s's command was not made with exec.CommandContext", what)
	}
	if err != nil {
		return err
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = p.opts.StopTimeout
	return cmd.Start()
}
