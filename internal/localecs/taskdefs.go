package localecs

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
)

// taskDef is what the proxy remembers of one task-definition revision. kumo
// drops fields of a task definition and has no DescribeTaskDefinition, so
// the proxy keeps the container definitions of the request it forwarded.
type taskDef struct {
	arn        string
	family     string
	revision   int
	active     bool
	cpu        string
	memory     string
	taskRole   string // taskRoleArn: the role the task's own code acts as
	execRole   string // executionRoleArn: the role ECS acts as to start it
	containers []containerDef
}

// containerDef holds the fields of an ECS container definition a local
// task needs.
type containerDef struct {
	Name             string     `json:"name"`
	Image            string     `json:"image"`
	Essential        *bool      `json:"essential"`
	EntryPoint       []string   `json:"entryPoint"`
	Command          []string   `json:"command"`
	Environment      []keyValue `json:"environment"`
	WorkingDirectory string     `json:"workingDirectory"`
	// Secrets and LogConfiguration are what ECS reads or writes with the
	// execution role before the container starts.
	Secrets          []secretRef `json:"secrets"`
	LogConfiguration *struct {
		LogDriver string            `json:"logDriver"`
		Options   map[string]string `json:"options"`
	} `json:"logConfiguration"`
}

// secretRef is a container's secret: an environment variable whose value
// ECS reads from Secrets Manager (or SSM) at start.
type secretRef struct {
	Name      string `json:"name"`
	ValueFrom string `json:"valueFrom"`
}

type keyValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// runContainer returns the container a local task runs: the first
// essential one (ECS's default is essential). A task is one process here;
// non-essential helpers, such as cloudpipe's init container that installs
// the runner into a shared volume, have nothing to do on the host.
func (d *taskDef) runContainer() (containerDef, bool) {
	for _, c := range d.containers {
		if c.Essential == nil || *c.Essential {
			return c, true
		}
	}
	return containerDef{}, false
}

// envMap turns an ECS environment list into a map; a later entry wins.
func envMap(kvs []keyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Name] = kv.Value
	}
	return m
}

// registerTaskDefinition forwards the registration to kumo and, when kumo
// accepts it, remembers the revision's containers under the revision kumo
// assigned.
func (p *Proxy) registerTaskDefinition(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, out, err := p.callUpstream(r.Context(), r, r.Header.Get("X-Amz-Target"), body)
	if err != nil {
		p.forwardFailed(w, r, err)
		return
	}
	if resp.StatusCode == http.StatusOK {
		var in struct {
			Family               string         `json:"family"`
			TaskRoleArn          string         `json:"taskRoleArn"`
			ExecutionRoleArn     string         `json:"executionRoleArn"`
			CPU                  string         `json:"cpu"`
			Memory               string         `json:"memory"`
			ContainerDefinitions []containerDef `json:"containerDefinitions"`
		}
		var echo struct {
			TaskDefinition struct {
				TaskDefinitionArn string `json:"taskDefinitionArn"`
				Family            string `json:"family"`
				Revision          int    `json:"revision"`
			} `json:"taskDefinition"`
		}
		switch {
		case json.Unmarshal(body, &in) != nil, json.Unmarshal(out, &echo) != nil, echo.TaskDefinition.Revision == 0:
			// kumo accepted something neither side can read: pass its answer
			// on; a RunTask of that revision will say it is unknown here.
			p.log.Warn("task definition not remembered", "family", in.Family)
		default:
			td := echo.TaskDefinition
			family := td.Family
			if family == "" {
				family = in.Family
			}
			p.mu.Lock()
			p.defs[family+":"+strconv.Itoa(td.Revision)] = &taskDef{
				arn:        td.TaskDefinitionArn,
				family:     family,
				revision:   td.Revision,
				active:     true,
				cpu:        in.CPU,
				memory:     in.Memory,
				taskRole:   in.TaskRoleArn,
				execRole:   in.ExecutionRoleArn,
				containers: in.ContainerDefinitions,
			}
			p.mu.Unlock()
			p.log.Debug("task definition remembered", "arn", td.TaskDefinitionArn)
		}
	}
	copyResponse(w, resp, out)
}

// deregisterTaskDefinition forwards the call and marks the revision
// inactive: ECS runs no new task of an inactive revision, while its running
// tasks go on.
func (p *Proxy) deregisterTaskDefinition(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, out, err := p.callUpstream(r.Context(), r, r.Header.Get("X-Amz-Target"), body)
	if err != nil {
		p.forwardFailed(w, r, err)
		return
	}
	if resp.StatusCode == http.StatusOK {
		var in struct {
			TaskDefinition string `json:"taskDefinition"`
		}
		if json.Unmarshal(body, &in) == nil {
			p.mu.Lock()
			if td := p.lookupDefLocked(in.TaskDefinition); td != nil {
				td.active = false
			}
			p.mu.Unlock()
		}
	}
	copyResponse(w, resp, out)
}

// lookupDefLocked finds a task definition given as an ARN, as
// family:revision or as a family alone (its newest active revision), as
// RunTask accepts it. It returns nil when the proxy does not know it.
func (p *Proxy) lookupDefLocked(ref string) *taskDef {
	if i := strings.LastIndex(ref, ":task-definition/"); i >= 0 {
		ref = ref[i+len(":task-definition/"):]
	}
	if _, _, ok := strings.Cut(ref, ":"); ok {
		return p.defs[ref]
	}
	var newest *taskDef
	for _, td := range p.defs {
		if td.family == ref && td.active && (newest == nil || td.revision > newest.revision) {
			newest = td
		}
	}
	return newest
}

// spec builds the TaskSpec of one task of td, with RunTask's container
// overrides applied.
func (td *taskDef) spec(overrides []containerOverride) (TaskSpec, error) {
	c, ok := td.runContainer()
	if !ok {
		return TaskSpec{}, fmt.Errorf("task definition %s has no essential container", td.arn)
	}
	s := TaskSpec{
		TaskDefinitionARN: td.arn,
		Family:            td.family,
		Revision:          td.revision,
		Container:         c.Name,
		Image:             c.Image,
		EntryPoint:        c.EntryPoint,
		Command:           c.Command,
		Environment:       envMap(c.Environment),
		WorkingDirectory:  c.WorkingDirectory,
		CPU:               td.cpu,
		Memory:            td.memory,
		TaskRoleARN:       td.taskRole,
		ExecutionRoleARN:  td.execRole,
	}
	for _, o := range overrides {
		if o.Name != c.Name {
			continue
		}
		if o.Command != nil {
			s.Command = o.Command
		}
		maps.Copy(s.Environment, envMap(o.Environment))
	}
	return s, nil
}

// copyResponse writes kumo's answer to the client.
func copyResponse(w http.ResponseWriter, resp *http.Response, body []byte) {
	for k, vs := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body) // the client went away: nothing to do
}
