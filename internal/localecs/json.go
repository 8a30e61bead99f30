package localecs

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The JSON shapes of ECS answers (AWS JSON 1.1), with the fields a local
// task can fill.

type ecsTasksOutput struct {
	Tasks    []ecsTask    `json:"tasks"`
	Failures []ecsFailure `json:"failures"`
}

type ecsFailure struct {
	Arn    string `json:"arn,omitempty"`
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

type ecsTask struct {
	TaskArn           string         `json:"taskArn"`
	ClusterArn        string         `json:"clusterArn"`
	TaskDefinitionArn string         `json:"taskDefinitionArn"`
	LastStatus        string         `json:"lastStatus"`
	DesiredStatus     string         `json:"desiredStatus"`
	LaunchType        string         `json:"launchType,omitempty"`
	StartedBy         string         `json:"startedBy,omitempty"`
	Group             string         `json:"group,omitempty"`
	CPU               string         `json:"cpu,omitempty"`
	Memory            string         `json:"memory,omitempty"`
	CreatedAt         *epochTime     `json:"createdAt,omitempty"`
	StartedAt         *epochTime     `json:"startedAt,omitempty"`
	StoppedAt         *epochTime     `json:"stoppedAt,omitempty"`
	StopCode          string         `json:"stopCode,omitempty"`
	StoppedReason     string         `json:"stoppedReason,omitempty"`
	Containers        []ecsContainer `json:"containers"`
}

type ecsContainer struct {
	ContainerArn string `json:"containerArn"`
	TaskArn      string `json:"taskArn"`
	Name         string `json:"name"`
	Image        string `json:"image,omitempty"`
	LastStatus   string `json:"lastStatus"`
	ExitCode     *int   `json:"exitCode,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// epochTime is a timestamp as AWS JSON protocols send it: seconds since the
// epoch, with a fraction.
type epochTime time.Time

func (t epochTime) MarshalJSON() ([]byte, error) {
	ms := time.Time(t).UnixMilli()
	return []byte(strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)), nil
}

func epoch(t time.Time) *epochTime {
	if t.IsZero() {
		return nil
	}
	e := epochTime(t)
	return &e
}

func runTaskOutput(tasks []Task) ecsTasksOutput {
	out := ecsTasksOutput{Tasks: make([]ecsTask, 0, len(tasks)), Failures: []ecsFailure{}}
	for _, t := range tasks {
		out.Tasks = append(out.Tasks, ecsTaskOf(t))
	}
	return out
}

func ecsTaskOf(t Task) ecsTask {
	c := ecsContainer{
		// The container ARN is derived from the task's, so it stays the
		// same from one answer to the next.
		ContainerArn: containerARN(t.TaskARN, t.Container),
		TaskArn:      t.TaskARN,
		Name:         t.Container,
		Image:        t.Image,
		LastStatus:   t.LastStatus,
		ExitCode:     t.ExitCode,
	}
	if t.StopCode == StopTaskFailedToStart {
		c.Reason = t.StoppedReason
	}
	return ecsTask{
		TaskArn:           t.TaskARN,
		ClusterArn:        t.ClusterARN,
		TaskDefinitionArn: t.TaskDefinitionARN,
		LastStatus:        t.LastStatus,
		DesiredStatus:     t.DesiredStatus,
		LaunchType:        t.LaunchType,
		StartedBy:         t.StartedBy,
		Group:             t.Group,
		CPU:               t.CPU,
		Memory:            t.Memory,
		CreatedAt:         epoch(t.CreatedAt),
		StartedAt:         epoch(t.StartedAt),
		StoppedAt:         epoch(t.StoppedAt),
		StopCode:          t.StopCode,
		StoppedReason:     t.StoppedReason,
		Containers:        []ecsContainer{c},
	}
}

// containerARN builds arn:aws:ecs:REGION:ACCOUNT:container/CLUSTER/TASKID/NAME
// from a task ARN.
func containerARN(taskARN, name string) string {
	prefix, rest, ok := strings.Cut(taskARN, ":task/")
	if !ok {
		return taskARN + "/" + name
	}
	return prefix + ":container/" + rest + "/" + name
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the proxy's own types are marshalled here: a failure is a bug.
		panic("localecs: marshal answer: " + err.Error())
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_, _ = w.Write(b) // the client went away: nothing to do
}

// writeError writes an AWS JSON 1.1 error, which the SDK reads by __type.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("X-Amzn-ErrorType", code)
	writeJSON(w, status, map[string]string{"__type": code, "message": msg})
}
