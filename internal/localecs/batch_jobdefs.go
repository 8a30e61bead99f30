package localecs

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Job definitions are the proxy's own: kumo drops ecsProperties and has no
// DescribeJobDefinitions or DeregisterJobDefinition. Only ECS-orchestrated
// container job definitions (type container with ecsProperties) run here,
// the kind cloudpipe registers.

// Job definition statuses, as Batch names them.
const (
	JobDefinitionActive   = "ACTIVE"
	JobDefinitionInactive = "INACTIVE"
)

// jobDef is one revision of a job definition. Its fields are guarded by
// Proxy.mu.
type jobDef struct {
	name       string
	revision   int
	arn        string
	active     bool
	platform   []string
	raw        json.RawMessage // ecsProperties as registered, echoed by DescribeJobDefinitions
	task       ecsTaskProperties
	tags       map[string]string
	propagate  bool
	parameters map[string]string
	retry      json.RawMessage
	timeout    json.RawMessage
	timeoutSec int // timeout.attemptDurationSeconds; 0 for none
}

// ecsTaskProperties is the one task of a job definition's ecsProperties.
type ecsTaskProperties struct {
	Containers       []batchContainer `json:"containers"`
	TaskRoleArn      string           `json:"taskRoleArn"`
	ExecutionRoleArn string           `json:"executionRoleArn"`
}

// batchContainer is a container of a job's task: an ECS container
// definition, with what Batch adds.
type batchContainer struct {
	containerDef
	DependsOn []struct {
		ContainerName string `json:"containerName"`
		Condition     string `json:"condition"`
	} `json:"dependsOn,omitempty"`
	ResourceRequirements []resourceRequirement `json:"resourceRequirements,omitempty"`
	Privileged           bool                  `json:"privileged,omitempty"`
}

type resourceRequirement struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// essential reports whether the container is essential: ECS's default.
func (c batchContainer) essential() bool { return c.Essential == nil || *c.Essential }

// runContainer is the container a local job runs: the first essential one,
// as for a task (see taskDef.runContainer).
func (t ecsTaskProperties) runContainer() (batchContainer, bool) {
	for _, c := range t.Containers {
		if c.essential() {
			return c, true
		}
	}
	return batchContainer{}, false
}

// resources is the run container's resource requirements, by type.
func (c batchContainer) resources() map[string]string {
	out := map[string]string{}
	for _, r := range c.ResourceRequirements {
		out[r.Type] = r.Value
	}
	return out
}

type registerJobDefinitionInput struct {
	JobDefinitionName    string            `json:"jobDefinitionName"`
	Type                 string            `json:"type"`
	PlatformCapabilities []string          `json:"platformCapabilities"`
	EcsProperties        json.RawMessage   `json:"ecsProperties"`
	ContainerProperties  json.RawMessage   `json:"containerProperties"`
	EksProperties        json.RawMessage   `json:"eksProperties"`
	NodeProperties       json.RawMessage   `json:"nodeProperties"`
	Tags                 map[string]string `json:"tags"`
	PropagateTags        bool              `json:"propagateTags"`
	Parameters           map[string]string `json:"parameters"`
	RetryStrategy        json.RawMessage   `json:"retryStrategy"`
	Timeout              json.RawMessage   `json:"timeout"`
}

// registerJobDefinition registers the next revision of a job definition,
// with its ARN in the request's region (kumo's account).
// https://docs.aws.amazon.com/batch/latest/APIReference/API_RegisterJobDefinition.html
func (p *Proxy) registerJobDefinition(w http.ResponseWriter, c batchOpRequest) {
	var in registerJobDefinitionInput
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "RegisterJobDefinition: "+err.Error())
		return
	}
	def, err := newJobDef(in)
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	p.mu.Lock()
	def.revision = p.jobDefRevs[def.name] + 1
	p.jobDefRevs[def.name] = def.revision
	def.arn = "arn:aws:batch:" + c.region + ":" + batchAccount + ":job-definition/" + def.name + ":" + strconv.Itoa(def.revision)
	p.jobDefs[def.name+":"+strconv.Itoa(def.revision)] = def
	p.mu.Unlock()
	p.log.Debug("job definition registered", "arn", def.arn)
	writeBatchJSON(w, map[string]any{"jobDefinitionName": def.name, "jobDefinitionArn": def.arn, "revision": def.revision})
}

// newJobDef checks a registration as Batch checks it and returns the
// revision it makes (without its number).
func newJobDef(in registerJobDefinitionInput) (*jobDef, error) {
	switch {
	case !resourceName.MatchString(in.JobDefinitionName):
		return nil, clientException("jobDefinitionName %q must be 1 to 128 letters, numbers, hyphens and underscores", in.JobDefinitionName)
	case in.Type != "container" && in.Type != "multinode":
		return nil, clientException("type must be container or multinode, not %q", in.Type)
	case in.Type == "multinode" || len(in.NodeProperties) > 0 || len(in.EksProperties) > 0:
		return nil, clientException("localecs runs only ECS container jobs (type container, ecsProperties)")
	case len(in.ContainerProperties) > 0 && len(in.EcsProperties) > 0:
		return nil, clientException("containerProperties and ecsProperties can't both be specified")
	case len(in.EcsProperties) == 0:
		return nil, clientException("localecs runs only job definitions with ecsProperties (containerProperties is not played)")
	}
	for _, pc := range in.PlatformCapabilities {
		if pc != "EC2" && pc != "FARGATE" {
			return nil, clientException("platformCapabilities must be EC2 or FARGATE, not %q", pc)
		}
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	var props struct {
		TaskProperties []ecsTaskProperties `json:"taskProperties"`
	}
	if err := json.Unmarshal(in.EcsProperties, &props); err != nil {
		return nil, clientException("ecsProperties: %v", err)
	}
	// "This object is currently limited to one task element. However, the
	// task element can run up to 10 containers."
	// https://docs.aws.amazon.com/batch/latest/APIReference/API_EcsProperties.html
	if len(props.TaskProperties) != 1 {
		return nil, clientException("ecsProperties.taskProperties must hold exactly one task, not %d", len(props.TaskProperties))
	}
	task := props.TaskProperties[0]
	if err := checkContainers(task.Containers); err != nil {
		return nil, err
	}
	d := &jobDef{
		name: in.JobDefinitionName, active: true, platform: in.PlatformCapabilities,
		raw: in.EcsProperties, task: task, tags: maps.Clone(in.Tags), propagate: in.PropagateTags,
		parameters: in.Parameters, retry: in.RetryStrategy, timeout: in.Timeout,
	}
	if len(d.platform) == 0 {
		d.platform = []string{"EC2"}
	}
	if len(in.Timeout) > 0 {
		var t struct {
			AttemptDurationSeconds int `json:"attemptDurationSeconds"`
		}
		if err := json.Unmarshal(in.Timeout, &t); err != nil {
			return nil, clientException("timeout: %v", err)
		}
		// "The minimum value for the timeout is 60 seconds."
		// https://docs.aws.amazon.com/batch/latest/APIReference/API_JobTimeout.html
		if t.AttemptDurationSeconds != 0 && t.AttemptDurationSeconds < 60 {
			return nil, clientException("timeout.attemptDurationSeconds must be at least 60")
		}
		d.timeoutSec = t.AttemptDurationSeconds
	}
	return d, nil
}

// checkContainers refuses the containers ECS refuses in a task: none or
// more than 10, one without an image, two of one name, none essential, a
// dependency on a container the task does not hold or with an unknown
// condition, and resource requirements that are not positive numbers
// (VCPU a number of vCPUs, MEMORY and GPU whole MiB and GPUs).
// https://docs.aws.amazon.com/batch/latest/APIReference/API_TaskContainerProperties.html
// https://docs.aws.amazon.com/batch/latest/APIReference/API_ResourceRequirement.html
func checkContainers(cs []batchContainer) error {
	if len(cs) == 0 || len(cs) > 10 {
		return clientException("a task must hold 1 to 10 containers, not %d", len(cs))
	}
	names := map[string]bool{}
	essential := false
	for i, c := range cs {
		switch {
		case c.Image == "":
			return clientException("containers[%d]: image is required", i)
		case c.Name != "" && names[c.Name]:
			return clientException("containers[%d]: the name %q is used twice", i, c.Name)
		}
		names[c.Name] = true
		essential = essential || c.essential()
		for _, r := range c.ResourceRequirements {
			var ok bool
			switch r.Type {
			case "VCPU":
				v, err := strconv.ParseFloat(r.Value, 64)
				ok = err == nil && v > 0
			case "MEMORY", "GPU":
				v, err := strconv.Atoi(r.Value)
				ok = err == nil && v > 0
			}
			if !ok {
				return clientException("containers[%d]: resource requirement %s=%q is not valid", i, r.Type, r.Value)
			}
		}
	}
	if !essential {
		return clientException("at least one container must be essential")
	}
	for i, c := range cs {
		for _, d := range c.DependsOn {
			if !names[d.ContainerName] || d.ContainerName == c.Name {
				return clientException("containers[%d]: dependsOn names %q, which is not another container of the task", i, d.ContainerName)
			}
			if !slices.Contains([]string{"START", "COMPLETE", "SUCCESS", "HEALTHY"}, d.Condition) {
				return clientException("containers[%d]: dependsOn condition %q must be START, COMPLETE, SUCCESS or HEALTHY", i, d.Condition)
			}
		}
	}
	return nil
}

// jobDefLocked finds a job definition given as an ARN, as name:revision,
// or as a name alone (its newest ACTIVE revision), as SubmitJob reads it.
// The ARN's region is not compared: the proxy keeps one namespace, as kumo
// does, and the AWS-rules layer writes a client's region as us-east-1.
func (p *Proxy) jobDefLocked(ref string) *jobDef {
	if i := strings.LastIndex(ref, ":job-definition/"); i >= 0 {
		ref = ref[i+len(":job-definition/"):]
	}
	if _, _, ok := strings.Cut(ref, ":"); ok {
		return p.jobDefs[ref]
	}
	var newest *jobDef
	for _, d := range p.jobDefs {
		if d.name == ref && d.active && (newest == nil || d.revision > newest.revision) {
			newest = d
		}
	}
	return newest
}

// jobDefinitionOutput is a JobDefinition as DescribeJobDefinitions answers it.
type jobDefinitionOutput struct {
	JobDefinitionName          string            `json:"jobDefinitionName"`
	JobDefinitionArn           string            `json:"jobDefinitionArn"`
	Revision                   int               `json:"revision"`
	Status                     string            `json:"status"`
	Type                       string            `json:"type"`
	ContainerOrchestrationType string            `json:"containerOrchestrationType"`
	PlatformCapabilities       []string          `json:"platformCapabilities,omitempty"`
	EcsProperties              json.RawMessage   `json:"ecsProperties,omitempty"`
	Tags                       map[string]string `json:"tags,omitempty"`
	PropagateTags              bool              `json:"propagateTags,omitempty"`
	Parameters                 map[string]string `json:"parameters,omitempty"`
	RetryStrategy              json.RawMessage   `json:"retryStrategy,omitempty"`
	Timeout                    json.RawMessage   `json:"timeout,omitempty"`
}

func (d *jobDef) output() jobDefinitionOutput {
	status := JobDefinitionActive
	if !d.active {
		status = JobDefinitionInactive
	}
	return jobDefinitionOutput{
		JobDefinitionName: d.name, JobDefinitionArn: d.arn, Revision: d.revision, Status: status,
		Type: "container", ContainerOrchestrationType: "ECS", PlatformCapabilities: d.platform,
		EcsProperties: d.raw, Tags: maps.Clone(d.tags), PropagateTags: d.propagate,
		Parameters: d.parameters, RetryStrategy: d.retry, Timeout: d.timeout,
	}
}

// describeJobDefinitions lists job definitions: those jobDefinitions names
// (name:revision or ARN; a name alone, every revision), else those of
// jobDefinitionName, else all; filtered by status; by name and revision,
// maxResults (at most 100) a page.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_DescribeJobDefinitions.html
func (p *Proxy) describeJobDefinitions(w http.ResponseWriter, c batchOpRequest) {
	var in struct {
		JobDefinitions    []string `json:"jobDefinitions"`
		JobDefinitionName string   `json:"jobDefinitionName"`
		Status            string   `json:"status"`
		MaxResults        *int     `json:"maxResults"`
		NextToken         string   `json:"nextToken"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "DescribeJobDefinitions: "+err.Error())
		return
	}
	from, limit, err := page(in.NextToken, in.MaxResults, 100)
	if err == nil && len(in.JobDefinitions) > 100 {
		err = clientException("jobDefinitions names at most 100 job definitions")
	}
	if err == nil && in.Status != "" && in.Status != JobDefinitionActive && in.Status != JobDefinitionInactive {
		err = clientException("status must be ACTIVE or INACTIVE, not %q", in.Status)
	}
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	match := func(d *jobDef) bool {
		if in.JobDefinitionName != "" && d.name != in.JobDefinitionName {
			return false
		}
		if len(in.JobDefinitions) == 0 {
			return true
		}
		for _, ref := range in.JobDefinitions {
			if i := strings.LastIndex(ref, ":job-definition/"); i >= 0 {
				ref = ref[i+len(":job-definition/"):]
			}
			if ref == d.name || ref == d.name+":"+strconv.Itoa(d.revision) {
				return true
			}
		}
		return false
	}
	p.mu.Lock()
	var all []*jobDef
	for _, d := range p.jobDefs {
		if match(d) && (in.Status == "" || d.output().Status == in.Status) {
			all = append(all, d)
		}
	}
	slices.SortFunc(all, func(a, b *jobDef) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return a.revision - b.revision
	})
	out := map[string]any{"jobDefinitions": []jobDefinitionOutput{}}
	if from < len(all) {
		end := min(from+limit, len(all))
		defs := make([]jobDefinitionOutput, 0, end-from)
		for _, d := range all[from:end] {
			defs = append(defs, d.output())
		}
		out["jobDefinitions"] = defs
		if end < len(all) {
			out["nextToken"] = strconv.Itoa(end)
		}
	}
	p.mu.Unlock()
	writeBatchJSON(w, out)
}

// page reads a list call's nextToken and maxResults (default and most:
// max).
func page(token string, maxResults *int, max int) (from, limit int, err error) {
	limit = max
	if maxResults != nil {
		if *maxResults < 1 || *maxResults > max {
			return 0, 0, clientException("maxResults must be between 1 and %d", max)
		}
		limit = *maxResults
	}
	if token != "" {
		n, convErr := strconv.Atoi(token)
		if convErr != nil || n < 0 {
			return 0, 0, clientException("invalid nextToken")
		}
		from = n
	}
	return from, limit, nil
}

// deregisterJobDefinition makes a revision INACTIVE: no new job uses it,
// and jobs of it already submitted go on.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_DeregisterJobDefinition.html
func (p *Proxy) deregisterJobDefinition(w http.ResponseWriter, c batchOpRequest) {
	var in struct {
		JobDefinition string `json:"jobDefinition"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "DeregisterJobDefinition: "+err.Error())
		return
	}
	ref := in.JobDefinition
	if i := strings.LastIndex(ref, ":job-definition/"); i >= 0 {
		ref = ref[i+len(":job-definition/"):]
	}
	p.mu.Lock()
	d := p.jobDefs[ref]
	if d != nil {
		d.active = false
	}
	p.mu.Unlock()
	if d == nil {
		// "The name and revision (name:revision) or full Amazon Resource
		// Name (ARN) of the job definition to deregister."
		p.answerBatchError(w, c.r, clientException("JobDefinition %s does not exist", in.JobDefinition))
		return
	}
	writeBatchJSON(w, struct{}{})
}
